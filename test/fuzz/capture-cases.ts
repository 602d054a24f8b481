// Lent capture buffers for the fuzz harness: a pool of real fds of known kinds (memfds sealed or not, sealed
// against writes, opened read-only or O_PATH, regular files, O_APPEND, a socket, /dev/null, a directory, closed
// numbers), a generator of lent buffer descriptions (mostly the guest's size, then bent), an oracle written from
// the rules (README "capture", LentShm/LentDmabuf), not from LentBuffer's code, and the case runner: each case
// lends a few buffers to a CaptureSession fed by a small built-in guest (memfd frames, blob frames upright or
// bottom-up, some behind fake fences, or the headless pipeline), then captures, truncates, takes back and checks
// every outcome and every captured pixel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  addSeals, close, constants, dup, fstat, ftruncate, listOpenFds, memfdCreate, pread, socketpair,
} from '../../src/native/fds.js';
import { CaptureSession, type CaptureResult } from '../../src/capture/session.js';
import { CaptureError, type CaptureErrorCode } from '../../src/capture/errors.js';
import type { LentBuffer, LentBufferDescription } from '../../src/capture/lent-buffer.js';
import { runGuestHeadless, type GuestRun } from '../../src/pipeline.js';
import { BuiltinGuest } from '../../src/source/builtin-guest.js';
import { BlobResource } from '../../src/source/blob-resource.js';
import type { BlobFrame, MemfdFrame, ScanoutFrame } from '../../src/source/frame.js';
import { renderExpected } from '../../src/source/test-pattern.js';
import { formatByFourcc, formatByName, fourcc, type PixelFormat } from '../../src/formats.js';
import type { Rect } from '../../src/geometry.js';
import { PAGE, Rng, reproduce, show } from './rng.js';

/** Every CaptureErrorCode (a Record, so the compiler says when errors.ts gains or loses one). */
const DECLARED: Record<CaptureErrorCode, true> = {
  'buffer-constraints': true, 'bad-size': true, 'bad-stride': true, 'too-small': true, 'unsupported-format': true,
  'unsupported-modifier': true, 'bad-fd': true, 'read-only': true, 'truncated': true, 'not-dmabuf': true,
  'import-failed': true, 'fence-failed': true, 'taken-back': true, 'stopped': true,
};
export const CAPTURE_ERROR_CODES = Object.keys(DECLARED) as CaptureErrorCode[];

/** A case (lends, captures, frames, waits) must end within this; a capture that can go ahead within CAPTURE_MS. */
const CASE_MS = 5000;
const CAPTURE_MS = 1000;
/** Acquire-fence deadline of the sessions whose frames carry fences that never signal. */
const FENCE_MS = 15;

const RGB32 = ['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888'].map((n) => formatByName(n)!);
const RGB565 = formatByName('RGB565')!;
const OTHER_FOURCCS = [fourcc('NV12'), fourcc('RG24'), fourcc('AR30'), fourcc('BG16'), 0, 0xffffffff, -1, NaN, 1.5, 2 ** 32 + fourcc('XR24')];
const INVALID_MODIFIER = 0xffffffffffffffn;
const O_PATH = 0o10000000;

type FdKind = 'memfd-sealed' | 'memfd-unsealed' | 'memfd-write-sealed' | 'memfd-readonly' | 'memfd-writeonly' | 'memfd-opath' | 'file' |
  'file-readonly' | 'file-append' | 'socket' | 'devnull' | 'directory' | 'closed';

interface PoolFd {
  fd: number;
  kind: FdKind;
  name: string;
  /** Same identity = the same memory (dups, /proc reopenings): lent ranges on it alias. */
  identity: string;
  /** A regular file (memfds are): something a wl_shm-style buffer can be. */
  regular: boolean;
  /** Opened for writing (O_RDWR, O_WRONLY). */
  writable: boolean;
  /** Opened for reading (O_RDONLY, O_RDWR): with writing, what a shared writable mapping needs. */
  readable: boolean;
  sealedShrink: boolean;
  sealedWrite: boolean;
}

interface Memory {
  identity: string;
  /** An fd to read back pixels, truncate and restore through (ours, read-write). */
  owner: number;
  size: number;
  /** Size when the pool was made (restored after each case). */
  initialSize: number;
  truncatable: boolean;
}

export class CapturePool {
  readonly fds: PoolFd[] = [];
  readonly memory = new Map<string, Memory>();
  private readonly owned: number[] = [];
  private readonly dir: string;

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-fuzz-capture-'));
    const { F_SEAL_SHRINK: SHRINK, F_SEAL_GROW: GROW, F_SEAL_WRITE: WRITE, F_SEAL_SEAL: SEAL, F_SEAL_FUTURE_WRITE: FUTURE } = constants;
    const add = (entry: Omit<PoolFd, 'identity'> & { identity?: string }, memory?: Omit<Memory, 'identity' | 'initialSize'>): PoolFd => {
      const full: PoolFd = { ...entry, identity: entry.identity ?? `${entry.kind}-${entry.name}` };
      this.fds.push(full);
      if (memory && !this.memory.has(full.identity)) this.memory.set(full.identity, { ...memory, identity: full.identity, initialSize: memory.size });
      return full;
    };
    const memfd = (name: string, size: number, seals: number): PoolFd => {
      const fd = memfdCreate(`fuzz-cap-${name}`);
      this.owned.push(fd);
      ftruncate(fd, size);
      if (seals) addSeals(fd, seals);
      const sealedWrite = (seals & (WRITE | FUTURE)) !== 0;
      const kind: FdKind = sealedWrite ? 'memfd-write-sealed' : seals & SHRINK ? 'memfd-sealed' : 'memfd-unsealed';
      return add({ fd, kind, name, regular: true, writable: true, readable: true, sealedShrink: (seals & SHRINK) !== 0, sealedWrite },
        { owner: fd, size, truncatable: (seals & (SHRINK | GROW | WRITE | FUTURE)) === 0 });
    };
    const reopen = (of: PoolFd, flags: number, kind: FdKind): PoolFd => {
      const fd = fs.openSync(`/proc/self/fd/${of.fd}`, flags);
      this.owned.push(fd);
      return add({ ...of, fd, kind, name: `${of.name}-${kind}`, writable: kind === 'memfd-writeonly', readable: kind === 'memfd-readonly' });
    };
    memfd('empty', 0, SHRINK);
    memfd('one-page', PAGE, SHRINK); // exactly 64x16 XRGB8888
    memfd('two-pages', 2 * PAGE, SHRINK);
    memfd('unaligned', 3 * PAGE + 100, SHRINK);
    const sixteen = memfd('16-pages', 16 * PAGE, SHRINK);
    memfd('sealed-all', 4 * PAGE, SHRINK | GROW | SEAL);
    memfd('16MiB', 4096 * PAGE, SHRINK); // room for huge strides
    memfd('write-sealed', 4 * PAGE, SHRINK | WRITE);
    memfd('write-sealed-only', 4 * PAGE, WRITE);
    memfd('future-write-sealed', 4 * PAGE, FUTURE);
    memfd('grow-sealed-only', 4 * PAGE, GROW); // not sealed against shrinking, and cannot be truncated and regrown here
    const unsealed = memfd('unsealed', 16 * PAGE, 0);
    memfd('unsealed-small', 2 * PAGE, 0);
    reopen(sixteen, fs.constants.O_RDONLY, 'memfd-readonly');
    reopen(unsealed, fs.constants.O_RDONLY, 'memfd-readonly');
    reopen(sixteen, fs.constants.O_WRONLY, 'memfd-writeonly');
    reopen(unsealed, fs.constants.O_WRONLY, 'memfd-writeonly');
    reopen(sixteen, O_PATH, 'memfd-opath');
    reopen(unsealed, O_PATH, 'memfd-opath');
    const regular = (name: string, size: number, flags: string, kind: FdKind): PoolFd => {
      const file = path.join(this.dir, name);
      const fd = fs.openSync(file, flags);
      this.owned.push(fd);
      fs.ftruncateSync(fd, size);
      return add({ fd, kind, name, regular: true, writable: true, readable: true, sealedShrink: false, sealedWrite: false },
        { owner: fd, size, truncatable: true });
    };
    const file = regular('regular', 16 * PAGE, 'w+', 'file');
    const readonly = fs.openSync(path.join(this.dir, 'regular'), 'r');
    this.owned.push(readonly);
    add({ ...file, fd: readonly, kind: 'file-readonly', name: 'regular-readonly', writable: false, readable: true });
    regular('append', 16 * PAGE, 'a+', 'file-append');
    const [s1, s2] = socketpair();
    this.owned.push(s1, s2);
    const other = { regular: false, writable: true, readable: true, sealedShrink: false, sealedWrite: false };
    add({ fd: s1, kind: 'socket', name: 'socket', ...other });
    const devnull = fs.openSync('/dev/null', 'r+');
    this.owned.push(devnull);
    add({ fd: devnull, kind: 'devnull', name: 'devnull', ...other });
    const dirFd = fs.openSync(this.dir, 'r');
    this.owned.push(dirFd);
    add({ fd: dirFd, kind: 'directory', name: 'directory', ...other, writable: false });
    const top = Math.max(...listOpenFds());
    for (const fd of [top + 57, top + 1000, 65535, -1, 0x7fffffff, 2 ** 31, 1.5, NaN]) {
      add({ fd, kind: 'closed', name: `closed-${fd}`, ...other, writable: false });
    }
  }

  /** Memory an fd of the pool refers to (none for sockets, /dev/null, directories, closed numbers). */
  memoryOf(entry: PoolFd): Memory | undefined {
    return this.memory.get(entry.identity);
  }

  /** Back to the sizes the pool was made with (a case truncated some). */
  restore(): void {
    for (const m of this.memory.values()) {
      if (m.size !== m.initialSize || fstat(m.owner).size !== m.initialSize) {
        ftruncate(m.owner, m.initialSize);
        m.size = m.initialSize;
      }
    }
  }

  close(): void {
    for (const fd of this.owned.splice(0)) close(fd);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Generation

interface GuestSpec {
  width: number;
  height: number;
  format: PixelFormat;
  /** 'memfd': MemfdFrames presented here; 'blob': BlobFrames (upright or bottom-up), some fenced; 'headless': runGuestHeadless. */
  source: 'memfd' | 'blob' | 'headless';
  bottomUp: boolean;
  fences: 'none' | 'signalled' | 'some-never';
  /** Formats the session accepts (undefined: the default four). */
  sessionFormats: number[] | undefined;
  /** A second guest of another size the source switches to and back (a resize: full damage after each switch). */
  resize: { width: number; height: number } | null;
}

const SIZES: readonly (readonly [number, number])[] = [[64, 16], [67, 19], [128, 32], [100, 17]];

function generateGuest(rng: Rng): GuestSpec {
  const [width, height] = rng.weighted([[8, SIZES[0]], [2, SIZES[1]], [1, SIZES[2]], [1, SIZES[3]]]);
  const format = rng.weighted([[12, RGB32[0]], [1, RGB32[1]], [1, RGB32[2]], [1, RGB32[3]], [0.3, RGB565]]);
  const source = rng.weighted([[5, 'memfd'], [4, 'blob'], [1.5, 'headless']] as const);
  const fences = source === 'blob' ? rng.weighted([[10, 'none'], [1.5, 'signalled'], [1, 'some-never']] as const) : 'none';
  let sessionFormats: number[] | undefined;
  if (rng.bool(0.25)) {
    sessionFormats = RGB32.filter(() => rng.bool(0.6)).map((f) => f.fourcc);
    if (sessionFormats.length === 0) sessionFormats = [rng.pick(RGB32).fourcc];
    if (rng.bool(0.3)) sessionFormats.reverse();
  }
  const others = SIZES.filter(([w, h]) => w !== width || h !== height);
  const resize = source !== 'headless' && rng.bool(0.15) ? rng.pick(others) : null;
  return {
    width, height, format, source, bottomUp: source === 'blob' && rng.bool(0.65), fences, sessionFormats,
    resize: resize ? { width: resize[0], height: resize[1] } : null,
  };
}

const DIMENSIONS = [0, 1, -1, 2, 16384, 16385, 1e9, 2 ** 31, 2 ** 32, 1.5, 0.5, -0.5, NaN, Infinity, -Infinity, -0];

function dimension(rng: Rng, typical: number): number {
  return rng.weighted([[6, typical], [2, typical + rng.pick([-2, -1, 1, 2])], [3, rng.int(1, 300)], [2, rng.pick(DIMENSIONS)], [1, rng.boundary()]]);
}

function stride(rng: Rng, width: number): number {
  const row = Number.isFinite(width) && Math.abs(width) < 1e6 ? width * 4 : 256;
  return rng.weighted([
    [10, row], [3, row + 4 * rng.int(1, 64)], [1, row + rng.int(1, PAGE)], [1, row - rng.int(1, 4)],
    [1, rng.pick([0x7fffffff, 0x80000000, 2 ** 32, 2 ** 53, 1e6, 262144])], [1, row + rng.pick([0.5, 0.25])],
    [1, rng.pick([NaN, Infinity, -row, 0, -0])], [1, rng.boundary()],
  ]);
}

function offset(rng: Rng): number {
  return rng.weighted([
    [10, 0], [3, PAGE * rng.int(1, 4)], [2, rng.int(1, 8192)], [1, 4 * rng.int(1, 1024)],
    [1, rng.pick([-1, -PAGE, NaN, 1.5, 2 ** 53, 1e300, Infinity, 2 ** 32, 2 ** 31])],
  ]);
}

function fourccFor(rng: Rng): number {
  return rng.weighted([[16, rng.pick(RGB32).fourcc], [1, RGB565.fourcc], [1, rng.weighted([[3, rng.pick(OTHER_FOURCCS)], [1, rng.u32()]])]]);
}

/** Bytes from the first pixel to the end of the last row, when the numbers make sense. */
function extent(width: number, height: number, stride: number): number {
  return stride * (height - 1) + width * 4;
}

/** An fd for a buffer of `needed` bytes from `at`: mostly memory that holds it, sometimes anything in the pool. */
function pickFd(rng: Rng, pool: CapturePool, needed: number): PoolFd {
  if (rng.bool(0.7) && Number.isFinite(needed)) {
    const fits = pool.fds.filter((f) => { const m = pool.memoryOf(f); return m !== undefined && m.size >= needed; });
    // sealed memfds most of the time: the mapped path; then the pwrite path and the refusals
    const sealed = fits.filter((f) => f.kind === 'memfd-sealed');
    const truncatable = fits.filter((f) => f.writable && pool.memoryOf(f)!.truncatable);
    const which = rng.float();
    if (sealed.length && which < 0.45) return rng.pick(sealed);
    if (truncatable.length && which < 0.7) return rng.pick(truncatable);
    if (fits.length) return rng.pick(fits);
  }
  return rng.pick(pool.fds);
}

export function generateDescription(rng: Rng, pool: CapturePool, guest: { width: number; height: number }): LentBufferDescription {
  const desc = generateTyped(rng, pool, guest);
  if (rng.bool(0.04)) confuse(rng, desc as unknown as Record<string, unknown>);
  return desc;
}

/** What a JavaScript caller (no compiler to stop it) might pass: a field of the wrong type, or missing. */
function confuse(rng: Rng, desc: Record<string, unknown>): void {
  const planes = desc.planes as unknown[] | undefined;
  switch (rng.int(0, 6)) {
    case 0: desc.kind = rng.pick([undefined, 'wl_shm', 'DMABUF', 'memfd', '']); break;
    case 1: desc[rng.pick(['width', 'height'])] = rng.pick(['64', 64n, undefined, null, {}, [64]]); break;
    case 2: desc[rng.pick(['stride', 'offset', 'fourcc'])] = rng.pick(['256', 256n, undefined, null, true]); break;
    case 3: desc.fd = rng.pick(['5', undefined, null, 5n, {}]); break;
    case 4: desc.planes = rng.pick([undefined, null, 'planes', {}, [null], [{}], [undefined], [{ fd: '3', offset: '0', stride: '256' }]]); break;
    case 5: if (planes?.[0]) (planes[0] as Record<string, unknown>)[rng.pick(['fd', 'offset', 'stride'])] = rng.pick(['1', undefined, null, 1n]); break;
    case 6: desc.modifier = rng.pick([0, '0', null, undefined, -1n, 1n << 64n, NaN]); break;
  }
}

function generateTyped(rng: Rng, pool: CapturePool, guest: { width: number; height: number }): LentBufferDescription {
  const match = rng.bool(0.6);
  const width = match ? guest.width : dimension(rng, guest.width);
  const height = match ? guest.height : dimension(rng, guest.height);
  const code = fourccFor(rng);
  if (rng.bool(0.85)) {
    const s = stride(rng, width);
    const o = offset(rng);
    return { kind: 'shm', fd: pickFd(rng, pool, o + extent(width, height, s)).fd, offset: o, width, height, stride: s, fourcc: code };
  }
  const planes = Array.from({ length: rng.weighted([[1, 0], [8, 1], [1, 2], [1, 3]]) }, () => {
    const s = stride(rng, width);
    const o = offset(rng);
    return { fd: pickFd(rng, pool, o + extent(width, height, s)).fd, offset: o, stride: s };
  });
  const modifier = rng.pick([0n, 0n, INVALID_MODIFIER, 1n, 0x0100000000000001n, (1n << 64n) - 1n, rng.u64()]);
  return { kind: 'dmabuf', width, height, fourcc: code, modifier, planes };
}

// ---------------------------------------------------------------------------------------------------------
// The oracle

export interface LendVerdict {
  /** What is wrong with the description: the refusal's code must be one of these; empty: it must be lent. */
  faults: CaptureErrorCode[];
  access?: 'shm-mapped' | 'shm-pwrite';
  why: string;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** The rules, independently: a lent buffer is an RGB32 image of 1..16384 square pixels, rows of stride bytes. */
export function lendOracle(desc: LentBufferDescription, pool: CapturePool): LendVerdict {
  const faults = new Set<CaptureErrorCode>();
  const why: string[] = [];
  const fault = (code: CaptureErrorCode, reason: string): void => { faults.add(code); why.push(reason); };
  const kind: unknown = desc.kind;
  if (kind !== 'shm' && kind !== 'dmabuf') return { faults: ['unsupported-format'], why: `kind ${show(kind)}` };
  const isPlane = (p: unknown): boolean => typeof p === 'object' && p !== null;
  if (desc.kind === 'dmabuf' && (!Array.isArray(desc.planes) || !desc.planes.every(isPlane))) {
    // a malformed planes list: refused as such, or for any other fault found first
    fault('unsupported-format', `planes ${show(desc.planes)}`);
  }
  const { width, height } = desc;
  if (!isInt(width) || !isInt(height) || width < 1 || height < 1 || width > 16384 || height > 16384) fault('bad-size', 'size');
  if (!RGB32.some((f) => f.fourcc === desc.fourcc)) fault('unsupported-format', 'not one of the four 32-bit RGB formats');
  if (desc.kind === 'dmabuf' && desc.planes?.length !== 1) fault('unsupported-format', `${desc.planes?.length} planes`);
  const plane = desc.kind === 'shm' ? desc : Array.isArray(desc.planes) ? desc.planes[0] : undefined;
  let access: LendVerdict['access'];
  if (desc.kind === 'dmabuf' && (typeof desc.modifier !== 'bigint' || desc.modifier < 0n || desc.modifier >= 1n << 64n)) {
    fault('unsupported-modifier', `modifier ${show(desc.modifier)}`);
  }
  if (plane) {
    if (!isInt(plane.stride) || plane.stride > 0x7fffffff || (isInt(width) && plane.stride < width * 4)) fault('bad-stride', 'stride');
    if (!isInt(plane.offset) || plane.offset < 0) fault('bad-size', 'offset');
    const entry = pool.fds.find((f) => Object.is(f.fd, plane.fd));
    if (!entry || entry.kind === 'closed') fault('bad-fd', `fd ${show(plane.fd)} not open`);
    else if (desc.kind === 'dmabuf') fault('not-dmabuf', `a ${entry.kind} is not a dmabuf (this kernel has none)`);
    else if (!entry.regular) fault('bad-fd', `a ${entry.kind} is not shared memory`);
    else {
      const memory = pool.memoryOf(entry)!;
      const numbers = [width, height, plane.stride, plane.offset].every(isInt);
      if (numbers && memory.size < plane.offset + extent(width, height, plane.stride)) fault('too-small', `${memory.size} bytes`);
      if (entry.sealedWrite) fault('read-only', 'sealed against writes');
      // an fd not opened for writing (O_RDONLY, O_PATH) can never be written: refused when lent
      if (!entry.writable) { fault('read-only', `${entry.kind} not opened for writing`); faults.add('bad-fd'); }
      if (entry.kind === 'file-append') fault('bad-fd', 'O_APPEND: pwrite would write at the end, not at the offset');
      // mapped when it cannot shrink and a shared writable mapping is possible; else written with pwrite
      access = entry.sealedShrink && entry.readable ? 'shm-mapped' : 'shm-pwrite';
    }
  }
  return { faults: [...faults], access: faults.size ? undefined : access, why: why.join('; ') || `valid (${access})` };
}

// ---------------------------------------------------------------------------------------------------------
// A case

interface Lent {
  n: number;
  desc: LentBufferDescription & { kind: 'shm' };
  buffer: LentBuffer;
  entry: PoolFd;
  memory: Memory;
  start: number;
  end: number;
  format: PixelFormat;
  takenBack: boolean;
  /** The lender's memory holds exactly the frame of the buffer's last fill (nothing else wrote over it). */
  trusted: boolean;
  /** The next fill must copy everything (first fill, or the contents became unknown). */
  mustBeWhole: boolean;
  /** Seq of the last fill; undefined when the session may have forgotten it (after a failed write). */
  lastSeq: number | null | undefined;
}

interface Request {
  label: string;
  lent: Lent;
  wait: 'newest' | 'next';
  /** Settles when a frame with seq >= minSeq is there; undefined: may wait for one (the model does not know). */
  minSeq: number | undefined;
  newestAtIssue: number | null;
  afterTakeBack: boolean;
  afterStop: boolean;
  /** Taken back (or the session stopped) while the capture was in flight: taken-back or a fill are both right. */
  raced: boolean;
  outcome: null | { ok: CaptureResult } | { error: unknown };
  /** The model's state when it settled (settle order is fill order). */
  settled: { order: number; takenBack: boolean; stopped: boolean; size: number; guests: number[] } | null;
  checked: boolean;
}

interface Frame {
  seq: number;
  /** Which guest drew it (0, or 1 after a switch) and its own frame number there. */
  guest: number;
  drawn: number;
  fence: 'none' | 'signalled' | 'never';
}

export class CaseFailure extends Error {}

/** Counts by outcome, shared by every case of a run. */
export type Counter = (key: string) => void;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new CaseFailure(`${what()}: not within ${ms} ms (a hang)`)), ms); });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runCaptureCase(index: number, pool: CapturePool, count: Counter): Promise<void> {
  const rng = Rng.forCase('capture', index);
  const spec = generateGuest(rng);
  const log: string[] = [];
  const note = (s: string): void => void log.push(s);
  const fail = (what: string): never => {
    throw new CaseFailure(`${reproduce('capture', index)}\n  guest ${show({ ...spec, format: spec.format.name })}\n` +
      `  steps:\n    ${log.join('\n    ')}\n  ${what}`);
  };
  const started = Date.now();
  note(`guest ${spec.width}x${spec.height} ${spec.format.name} ${spec.source}${spec.bottomUp ? ' bottom-up' : ''} fences ${spec.fences}` +
    `${spec.resize ? `, resized to ${spec.resize.width}x${spec.resize.height} and back` : ''}`);

  const guests = [{ width: spec.width, height: spec.height }, ...(spec.resize ? [spec.resize] : [])].map(({ width, height }) => ({
    width, height, ram: new BuiltinGuest({ width, height, format: spec.format, buffers: 3 }), resources: new Map<number, BlobResource>(),
  }));
  let active = 0;
  let switched = false;
  let nextSeq = 0;
  const session = new CaptureSession({ formats: spec.sessionFormats, fenceTimeoutMs: spec.fences === 'some-never' ? FENCE_MS : 1000 });
  const accepted = (spec.format.bytesPerPixel === 4 ? RGB32.map((f) => f.fourcc) : [spec.format.fourcc])
    .filter((f) => (spec.sessionFormats ?? RGB32.map((g) => g.fourcc)).includes(f));
  const fencePeers: number[] = [];
  const frames: Frame[] = [];
  const lents: Lent[] = [];
  const requests: Request[] = [];
  const expectedCache = new Map<number, Uint8Array>();
  let run: GuestRun | null = null;
  let stopped = false;
  let settledCount = 0;

  const newest = (): number | null => (frames.length ? frames[frames.length - 1].seq : null);
  /** The guest and its frame number of a frame (the headless pipeline's frames are guest 0's own). */
  const frameOf = (seq: number): Frame => frames.find((f) => f.seq === seq) ?? { seq, guest: 0, drawn: seq, fence: 'none' };
  const fits = (lent: Lent, g: number): boolean =>
    lent.desc.width === guests[g].width && lent.desc.height === guests[g].height && accepted.includes(lent.desc.fourcc);

  // --- frames -------------------------------------------------------------------------------------------
  /** The source's frame: numbered in one sequence over both guests, everything damaged after a switch. */
  const wrap = (frame: MemfdFrame, seq: number, damage: Rect[] | null, fence: Frame['fence']): ScanoutFrame => {
    if (spec.source !== 'blob') return { ...frame, seq, damage };
    const g = guests[active];
    let resource = g.resources.get(frame.offset);
    if (!resource) {
      const length = g.ram.ramSize / 3;
      resource = new BlobResource({
        id: active * 10 + g.resources.size + 1, width: g.width, height: g.height, fourcc: spec.format.fourcc, bottomUp: spec.bottomUp,
        planes: [{ offset: 0, stride: g.ram.stride }], memory: [{ memfd: g.ram.memfd, offset: frame.offset, length }],
      });
      g.resources.set(frame.offset, resource);
    }
    let acquireFence: number | null = null;
    if (fence !== 'none') {
      const [a, b] = socketpair();
      acquireFence = a;
      if (fence === 'signalled') close(b); // the peer gone: readable at once
      else fencePeers.push(b); // never readable: the deadline fails it
    }
    const blob: BlobFrame = { resource, damage, seq, flushedAt: frame.flushedAt, acquireFence, release: () => frame.release() };
    return blob;
  };
  const present = async (): Promise<void> => {
    const ram = guests[active].ram;
    let frame = ram.drawNext();
    for (let waited = 0; !frame; waited++) {
      // the session holds the newest frame only; a superseded one goes back once its copies (and fence wait) end
      if (waited > 200) fail(`the guest got no buffer back: it holds ${ram.heldBuffers} of 3 (the session keeps them)`);
      await (waited < 20 ? tick() : sleep(2));
      frame = ram.drawNext();
    }
    const fence: Frame['fence'] = spec.fences === 'none' ? 'none'
      : spec.fences === 'signalled' ? 'signalled' : rng.weighted([[3, 'none'], [1, 'signalled'], [1, 'never']] as const);
    const seq = nextSeq++;
    const damage = switched ? null : frame.damage;
    switched = false;
    frames.push({ seq, guest: active, drawn: frame.seq, fence });
    note(`frame ${seq}${active ? ` (guest 1's ${frame.seq})` : ''}${fence === 'none' ? '' : ` (fence ${fence})`}${damage ? '' : ' (damage: all)'}`);
    session.present(wrap(frame, seq, damage, fence));
  };

  // --- expectations -----------------------------------------------------------------------------------------
  const expected = (seq: number): Uint8Array => {
    let e = expectedCache.get(seq);
    if (!e) {
      const f = frameOf(seq);
      expectedCache.set(seq, (e = renderExpected(guests[f.guest].width, guests[f.guest].height, spec.format, f.drawn)));
    }
    return e;
  };
  const overlaps = (a: Lent, b: Lent): boolean => a.memory === b.memory && a.start < b.end && b.start < a.end;

  /** Checks the captured pixels in `rects` (buffer coordinates; null: all) against the guest's frame `seq`. */
  const checkPixels = (lent: Lent, seq: number, rects: readonly Rect[] | null, req: Request): void => {
    const exp = expected(seq);
    const { stride, width, height } = lent.desc;
    const rows = new Map<number, Buffer>();
    const row = (y: number): Buffer => {
      let data = rows.get(y);
      if (!data) {
        data = pread(lent.memory.owner, width * 4, lent.start + y * stride);
        if (data.length < width * 4) fail(`${req.label}: the lender's memory ends in row ${y} after a successful capture`);
        rows.set(y, data);
      }
      return data;
    };
    let mismatches = 0;
    let first = '';
    for (const r of rects ?? [{ x: 0, y: 0, width, height }]) {
      for (let y = r.y; y < r.y + r.height; y++) {
        const data = row(y);
        const srcY = spec.bottomUp ? height - 1 - y : y;
        for (let x = r.x; x < r.x + r.width; x++) {
          const [cr, cg, cb, ca] = lent.format.unpack(data.readUInt32LE(x * 4));
          const i = (srcY * width + x) * 4;
          const ok = cr === exp[i] && cg === exp[i + 1] && cb === exp[i + 2] && (!lent.format.hasAlpha || ca === 255);
          if (!ok && mismatches++ === 0) first = `(${x},${y}) is ${show([cr, cg, cb, ca])}, frame ${seq} has ${show([...exp.subarray(i, i + 4)])}`;
        }
      }
    }
    if (mismatches) fail(`${req.label}: ${mismatches} captured pixels differ from guest frame ${seq}${rects ? ` in the damage ${show(rects)}` : ''}; first ${first}`);
  };

  /** Every pixel (buffer coordinates) that differs between frames `from` and `to` lies in `damage`. */
  const checkDamage = (from: number, to: number, damage: readonly Rect[], what: string): void => {
    if (frameOf(from).guest !== frameOf(to).guest) fail(`${what}: frames ${from} and ${to} differ in size, yet the damage is ${show(damage)}`);
    const a = expected(from);
    const b = expected(to);
    const { width, height } = guests[frameOf(to).guest];
    for (let y = 0; y < height; y++) {
      const srcY = spec.bottomUp ? height - 1 - y : y;
      for (let x = 0; x < width; x++) {
        const i = (srcY * width + x) * 4;
        if (a[i] === b[i] && a[i + 1] === b[i + 1] && a[i + 2] === b[i + 2]) continue;
        if (!damage.some((d) => x >= d.x && x < d.x + d.width && y >= d.y && y < d.y + d.height)) {
          fail(`${what}: (${x},${y}) changed from frame ${from} to ${to}, outside the damage ${show(damage)}`);
        }
      }
    }
  };

  /** Checks a settled capture against the model as it was when it settled; `overwritten`: a later fill wrote there. */
  const check = (req: Request, overwritten: boolean): void => {
    if (!req.outcome || !req.settled || req.checked) return;
    req.checked = true;
    const { lent } = req;
    const at = req.settled;
    const truncated = at.size < lent.end;
    const allowed = new Set<CaptureErrorCode>();
    if (at.stopped) allowed.add('stopped').add('taken-back');
    if (at.takenBack) allowed.add('taken-back');
    if (at.guests.some((g) => !fits(lent, g))) allowed.add('buffer-constraints');
    if (truncated && !lent.entry.sealedShrink) allowed.add('truncated');
    if (frames.some((f) => f.fence === 'never')) allowed.add('fence-failed');
    const fillable = at.guests.some((g) => fits(lent, g)) && !truncated && !req.afterTakeBack && !req.afterStop && (req.raced || !at.takenBack);
    const what = `${req.label} (buffer ${lent.buffer.id} ${lent.desc.width}x${lent.desc.height} ${lent.format.name} on ${lent.entry.name}` +
      ` [${lent.start}, ${lent.end}) of ${at.size} bytes, ${lent.buffer.access})`;
    if ('error' in req.outcome) {
      const e = req.outcome.error;
      if (!(e instanceof CaptureError)) fail(`${what} failed with ${(e as Error)?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack}`);
      const err = e as CaptureError;
      if (!CAPTURE_ERROR_CODES.includes(err.code)) fail(`${what}: undeclared CaptureError code '${err.code}'`);
      if (!allowed.has(err.code)) fail(`${what}: failed with ${err.code} (${err.message}); expected ${fillable ? 'a fill' : ''}${fillable && allowed.size ? ' or ' : ''}${[...allowed].join(', ')}`);
      const names = err.code === 'stopped' ? /session/ : err.code === 'fence-failed' ? /frame \d+/ : new RegExp(`buffer ${lent.buffer.id}\\b`);
      if (!names.test(err.message)) fail(`${what}: the ${err.code} message does not name ${names.source}: ${err.message}`);
      count(`capture ${err.code}`);
      if (err.code === 'truncated' || err.code === 'read-only') {
        lent.lastSeq = undefined;
        lent.mustBeWhole = true;
      }
      return;
    }
    const r = req.outcome.ok;
    if (!fillable) fail(`${what}: filled with frame ${r.seq}; expected ${[...allowed].join(', ') || 'nothing'}`);
    const g = guests[frameOf(r.seq).guest];
    if (!fits(lent, frameOf(r.seq).guest)) fail(`${what}: filled with frame ${r.seq}, which is ${g.width}x${g.height}`);
    if (r.bufferId !== lent.buffer.id || r.width !== g.width || r.height !== g.height || r.fourcc !== lent.format.fourcc || r.yInverted) {
      fail(`${what}: result does not describe the buffer and frame: ${show(r)}`);
    }
    if (!frames.some((f) => f.seq === r.seq) && spec.source !== 'headless') fail(`${what}: frame ${r.seq} was never presented`);
    if (req.wait === 'newest' && req.newestAtIssue !== null && spec.source !== 'headless' && r.seq !== req.newestAtIssue) {
      fail(`${what}: 'newest' filled frame ${r.seq}, the newest was ${req.newestAtIssue}`);
    }
    if (req.minSeq !== undefined && r.seq < req.minSeq) fail(`${what}: filled frame ${r.seq}, waiting for >= ${req.minSeq}`);
    const nothing = r.damage.length === 0;
    const whole = r.damage.length === 1 && r.damage[0].x === 0 && r.damage[0].y === 0 && r.damage[0].width === g.width && r.damage[0].height === g.height;
    if (lent.mustBeWhole && !whole) fail(`${what}: first fill (or after a failed write) copied only ${show(r.damage)}`);
    for (const d of r.damage) {
      if (!isInt(d.x) || !isInt(d.y) || d.width < 1 || d.height < 1 || d.x < 0 || d.y < 0 || d.x + d.width > g.width || d.y + d.height > g.height) {
        fail(`${what}: damage ${show(d)} outside the ${g.width}x${g.height} frame`);
      }
    }
    // the damage covers every pixel that differs from the buffer's last fill
    if (!whole && typeof lent.lastSeq === 'number') checkDamage(lent.lastSeq, r.seq, r.damage, what);
    // everything when nothing else wrote there since the last fill; else what this fill copied (unless a later fill
    // of this or an overlapping buffer, in the same step, wrote over it: that one is checked)
    if (!overwritten) checkPixels(lent, r.seq, lent.trusted || whole ? null : r.damage, req);
    else count('fill overwritten in the same step (the later one checked)');
    lent.trusted = lent.trusted || whole;
    lent.mustBeWhole = false;
    lent.lastSeq = r.seq;
    if (r.damage.length) for (const other of lents) if (other !== lent && overlaps(lent, other)) other.trusted = false;
    count(`capture filled (${lent.buffer.access}${whole ? ', whole' : nothing ? ', nothing new' : ', damage'}${spec.bottomUp ? ', flipped' : ''})`);
    if (spec.resize) count('fill from a resizing source');
  };

  const mustSettle = (req: Request): boolean => {
    if (req.outcome) return false;
    if (stopped || req.lent.takenBack || req.afterTakeBack || req.afterStop || spec.source === 'headless') return true;
    const n = newest();
    return req.minSeq !== undefined && n !== null && n >= req.minSeq;
  };
  /** Lets every capture that can go ahead finish (bounded), then checks all that have settled. */
  const drain = async (): Promise<void> => {
    const deadline = Date.now() + CAPTURE_MS;
    for (let turn = 0; ; turn++) {
      await (turn < 10 ? tick() : sleep(1));
      const waiting = requests.filter(mustSettle);
      if (waiting.length === 0) break;
      if (Date.now() > deadline) fail(`${waiting.map((r) => r.label).join(', ')}: not settled within ${CAPTURE_MS} ms (a hang)`);
    }
    const settled = requests.filter((r) => r.settled && !r.checked).sort((a, b) => a.settled!.order - b.settled!.order);
    settled.forEach((req, i) => {
      const overwritten = settled.slice(i + 1).some((later) => later.outcome && 'ok' in later.outcome &&
        (later.lent === req.lent || overlaps(later.lent, req.lent)));
      check(req, overwritten);
    });
  };

  const capture = (lent: Lent, wait: 'newest' | 'next'): Request => {
    const known = lent.lastSeq;
    const minSeq = wait === 'newest' || known === null ? -Infinity : known === undefined ? undefined : known + 1;
    const req: Request = {
      label: `capture #${requests.length} (${wait}) into lent #${lent.n}`, lent, wait, minSeq, newestAtIssue: newest(),
      afterTakeBack: lent.takenBack, afterStop: stopped, raced: false, outcome: null, settled: null, checked: false,
    };
    note(req.label);
    requests.push(req);
    const settle = (outcome: Request['outcome']): void => {
      req.outcome = outcome;
      // the frames it may have been filled from: the newest when it was asked for, and every one since
      const since = frames.filter((f) => req.newestAtIssue === null || f.seq >= req.newestAtIssue).map((f) => f.guest);
      req.settled = { order: settledCount++, takenBack: lent.takenBack, stopped, size: lent.memory.size, guests: since.length ? [...new Set(since)] : [0] };
    };
    session.capture(lent.buffer, wait).then((ok) => settle({ ok }), (error: unknown) => settle({ error }));
    return req;
  };

  const takeBack = (lent: Lent): void => {
    note(`take back lent #${lent.n}`);
    for (const req of requests) if (req.lent === lent && !req.outcome) req.raced = true;
    lent.takenBack = true;
    session.takeBack(lent.buffer);
  };

  const lend = (): void => {
    const desc = generateDescription(rng, pool, rng.pick(guests));
    const verdict = lendOracle(desc, pool);
    const what = `lend ${show(desc)} (oracle: ${verdict.why})`;
    note(what);
    let buffer: LentBuffer;
    // now and then the lender lends a dup and closes it at once: the buffer keeps its own
    const transient = desc.kind === 'shm' && pool.fds.find((f) => Object.is(f.fd, desc.fd) && f.kind !== 'closed') && rng.bool(0.1) ? dup(desc.fd) : null;
    if (transient !== null) note(`  (through a dup, fd ${transient}, closed right after)`);
    try {
      buffer = session.lend(transient === null || desc.kind !== 'shm' ? desc : { ...desc, fd: transient });
    } catch (e) {
      if (transient !== null) close(transient);
      if (!(e instanceof CaptureError)) return fail(`${what}\n  threw ${(e as Error)?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack}`);
      if (stopped) {
        if (e.code !== 'stopped') fail(`${what}: lent after stop, refused with ${e.code} instead of stopped`);
        count('lend stopped');
        return;
      }
      if (!CAPTURE_ERROR_CODES.includes(e.code)) fail(`${what}: undeclared CaptureError code '${e.code}'`);
      const kind: unknown = desc.kind;
      const named = kind === 'shm' || kind === 'dmabuf' ? `lent ${kind} buffer` : 'lent buffer';
      if (!e.message.includes(named)) fail(`${what}: the message does not name the ${named}: ${e.message}`);
      if (verdict.faults.length === 0) fail(`${what}: the oracle says valid, refused with ${e.code}: ${e.message}`);
      if (!verdict.faults.includes(e.code)) fail(`${what}: refused with ${e.code} (${e.message}), the faults are ${verdict.faults.join(', ')}`);
      count(`lend ${e.code}`);
      return;
    }
    if (transient !== null) close(transient);
    if (stopped) fail(`${what}: lent to a stopped session`);
    if (verdict.faults.length) {
      session.takeBack(buffer);
      fail(`${what}: lent as buffer ${buffer.id} (${buffer.access}), the oracle says ${verdict.faults.join(', ')}`);
    }
    if (desc.kind !== 'shm') return fail(`${what}: a dmabuf was lent on a kernel without dmabufs`);
    const entry = pool.fds.find((f) => Object.is(f.fd, desc.fd))!;
    const memory = pool.memoryOf(entry)!;
    const format = formatByFourcc(desc.fourcc)!;
    if (buffer.access !== verdict.access || buffer.width !== desc.width || buffer.height !== desc.height || buffer.format !== format || buffer.stride !== desc.stride) {
      session.takeBack(buffer);
      fail(`${what}: lent as ${buffer.access} ${buffer.width}x${buffer.height} ${buffer.format.name} stride ${buffer.stride}, expected ${verdict.access}`);
    }
    const lent: Lent = {
      n: lents.length, desc, buffer, entry, memory, start: desc.offset, end: desc.offset + extent(desc.width, desc.height, desc.stride), format,
      takenBack: false, trusted: false, mustBeWhole: true, lastSeq: null,
    };
    note(`  = lent #${lents.length}: buffer ${buffer.id} (${buffer.access}${guests.some((_, g) => fits(lent, g)) ? ', fits the frames' : ''})`);
    lents.push(lent);
    count(`lent (${buffer.access})`);
  };

  try {
    if (spec.source === 'headless') {
      run = runGuestHeadless(guests[0].ram, session, { fps: 1000 });
      await within(session.waitForConstraints(), CAPTURE_MS, () => `${reproduce('capture', index)}: the headless guest's first frame`);
    } else {
      for (let i = rng.weighted([[1, 0], [6, 1], [2, 2]]); i > 0; i--) await present();
    }
    for (let i = rng.weighted([[5, 1], [3, 2], [2, 3]]); i > 0; i--) lend();
    await drain();

    const live = (): Lent[] => lents.filter((l) => !l.takenBack);
    const anyLent = (): Lent | undefined => (lents.length ? (rng.bool(0.9) && live().length ? rng.pick(live()) : rng.pick(lents)) : undefined);
    const manual = spec.source !== 'headless';
    for (let step = rng.int(1, 8); step > 0; step--) {
      const truncatable = live().some((l) => l.memory.truncatable);
      const op = rng.weighted([
        [manual ? 3 : 0, 'frame'], [4, 'newest'], [3, 'next'], [manual ? 4 : 0, 'loop'], [1, 'burst'], [truncatable ? 3 : 0, 'truncate'], [1, 'regrow'],
        [1, 'take-back'], [1.5, 'race'], [0.7, 'lend'], [guests.length > 1 ? 2 : 0, 'switch'], [manual ? 0.3 : 0, 'frames'], [stopped ? 0 : 0.15, 'stop'],
      ] as const);
      const lent = anyLent();
      switch (op) {
        case 'frame': await present(); break;
        case 'frames': for (let i = rng.pick([2, 5, 33, 40]); i > 0; i--) await present(); break;
        case 'newest': case 'next': if (lent) capture(lent, op); break;
        case 'loop': { // a consumer's loop: wait for the next frame into a buffer that fits, 1 to 4 times
          const fitting = live().filter((l) => fits(l, active));
          const target = fitting.length && rng.bool(0.9) ? rng.pick(fitting) : lent;
          if (!target) break;
          for (let i = rng.int(1, 4); i > 0; i--) {
            capture(target, 'next');
            if (rng.bool(0.8)) await present();
            if (i > 1) await drain();
          }
          break;
        }
        case 'burst': // several captures at once, into the same buffer or others, before any settles
          for (let i = rng.int(2, 4); i > 0 && lents.length; i--) capture(anyLent()!, rng.pick(['newest', 'next'] as const));
          if (manual && rng.bool(0.5)) await present();
          break;
        case 'truncate': { // the lender shrinks (or grows) memory it lent unsealed
          const candidates = live().filter((l) => l.memory.truncatable && (fits(l, active) || rng.bool(0.2)));
          const target = candidates.length ? rng.pick(candidates) : lent;
          if (!target || !target.memory.truncatable) break;
          const m = target.memory;
          const size = rng.pick([0, PAGE, target.end - 1, target.end, target.end + 1, target.start, rng.int(0, m.initialSize)].filter((s) => s >= 0));
          note(`truncate ${target.entry.name} from ${m.size} to ${size} bytes`);
          ftruncate(m.owner, size);
          for (const l of lents) if (l.memory === m && l.end > size) l.trusted = false;
          m.size = size;
          if (rng.bool(0.7)) capture(target, rng.pick(['newest', 'next'] as const));
          break;
        }
        case 'regrow': { // only once a failed capture showed the lender's buffer has lost its contents
          const target = lents.find((l) => l.memory.size < l.memory.initialSize && requests.some((q) => q.lent.memory === l.memory && q.outcome && 'error' in q.outcome && (q.outcome.error as CaptureError).code === 'truncated'));
          if (!target) break;
          const m = target.memory;
          if (lents.some((l) => l.memory === m && l.end > m.size && !l.mustBeWhole && !l.takenBack)) break; // it would keep stale rows
          note(`regrow ${target.entry.name} to ${m.initialSize} bytes`);
          ftruncate(m.owner, m.initialSize);
          m.size = m.initialSize;
          break;
        }
        case 'take-back': if (lent) takeBack(lent); break;
        case 'race': { // the consumer takes the buffer back while its capture waits or copies
          if (!lent) break;
          capture(lent, rng.pick(['newest', 'next'] as const));
          const how = rng.int(0, manual ? 4 : 2);
          note(`race ${['at once', 'after a microtask', 'after a tick', 'after a frame', 'after a frame and a tick'][how]}`);
          if (how === 1) await Promise.resolve();
          if (how === 2) await tick();
          if (how >= 3) await present();
          if (how === 4) await tick();
          takeBack(lent);
          break;
        }
        case 'lend': lend(); break;
        case 'switch': // the source's scan-out changes size: the other guest's frames from now on
          active = 1 - active;
          switched = true;
          note(`switch to guest ${active} (${guests[active].width}x${guests[active].height})`);
          await present();
          break;
        case 'stop':
          note('stop the session');
          for (const req of requests) if (!req.outcome) req.raced = true;
          stopped = true;
          session.stop();
          break;
      }
      await drain();
    }
    // the end: a few more captures after a stop, then every buffer back, the session stopped
    if (stopped && lents.length) capture(rng.pick(lents), 'newest');
    for (const lent of lents) if (!lent.takenBack && rng.bool(0.7)) takeBack(lent);
    await drain();
    note('stop');
    for (const req of requests) if (!req.outcome) req.raced = true;
    stopped = true;
    session.stop();
    await drain();
    const unsettled = requests.filter((r) => !r.outcome);
    if (unsettled.length) fail(`${unsettled.map((r) => r.label).join(', ')}: never settled`);
    run?.stop();
    for (const [i, g] of guests.entries()) {
      for (let waited = 0; g.ram.heldBuffers > 0; waited++) {
        if (waited > 300) fail(`guest ${i} never got ${g.ram.heldBuffers} buffers back after the session stopped`);
        await sleep(2);
      }
    }
    if (Date.now() - started > CASE_MS) fail(`the case took ${Date.now() - started} ms (bound ${CASE_MS})`);
    count(`case (${spec.source})`);
  } finally {
    run?.stop();
    session.stop();
    for (const fd of fencePeers) close(fd);
    await tick(); // the session's reader lets go of its mappings a microtask after stop()
    for (const g of guests) {
      for (const r of g.resources.values()) r.unref();
      g.ram.close();
    }
    pool.restore();
  }
}

/** Mappings of memfds in this process (lent buffers, frames): back to the baseline between cases. */
export function memfdMappings(): number {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:')).length;
}

/** Runs the given capture case indices; throws with the seed and case on a violation. Returns a summary. */
export async function runCaptureFuzz(indices: number[]): Promise<{ ran: number; summary: string; counts: Map<string, number> }> {
  const baseline = listOpenFds();
  const pool = new CapturePool();
  const poolFds = listOpenFds();
  const maps = memfdMappings();
  const counts = new Map<string, number>();
  const count = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
  let ran = 0;
  let slowest = 0;
  const checkLeaks = (index: number): void => {
    const fds = listOpenFds();
    if (show(fds) !== show(poolFds)) throw new Error(`${reproduce('capture', index)}: open fds after the case ${show(fds)}, before ${show(poolFds)}`);
    const m = memfdMappings();
    if (m !== maps) throw new Error(`${reproduce('capture', index)}: ${m} memfd mappings after the case, ${maps} before`);
  };
  try {
    for (const index of indices) {
      const t0 = Date.now();
      await within(runCaptureCase(index, pool, count), CASE_MS + 2000, () => `${reproduce('capture', index)}: the case`);
      slowest = Math.max(slowest, Date.now() - t0);
      ran++;
      if (index % 250 === 0) checkLeaks(index);
    }
    await tick();
    checkLeaks(indices[indices.length - 1] ?? 0);
  } finally {
    pool.close();
  }
  const fds = listOpenFds();
  if (show(fds) !== show(baseline)) throw new Error(`fuzz capture: open fds ${show(fds)} after the pool closed, ${show(baseline)} before`);
  const summary = `${ran} cases, slowest ${slowest} ms: ${[...counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`;
  return { ran, summary, counts };
}
