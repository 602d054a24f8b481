// Blob resource descriptions for the fuzz harness: a pool of real fds of known kinds, a generator of
// descriptions (mostly near-valid, then bent at one or more places) and an oracle that says whether a
// description is valid, written from the rules (README, BlobResourceDescription), not from validateBlob's code.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addSeals, close, constants, dup, ftruncate, listOpenFds, memfdCreate, socketpair } from '../../src/native/fds.js';
import { FORMATS, fourcc } from '../../src/formats.js';
import type { BlobResourceDescription, MemfdRange } from '../../src/source/blob-resource.js';
import { PAGE, type Rng } from './rng.js';

type FdKind = 'memfd-sealed' | 'memfd-unsealed' | 'closed' | 'socket' | 'file' | 'devnull';

interface PoolFd {
  fd: number;
  kind: FdKind;
  /** File size in bytes (memfds). */
  size: number;
  /** Same identity = same open file (dups): their ranges may not overlap. */
  identity: string;
}

export class FdPool {
  readonly fds: PoolFd[] = [];
  private readonly owned: number[] = [];
  private readonly dir: string;

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-fuzz-'));
    const memfd = (name: string, pages: number, seals: number, extra = 0): PoolFd => {
      const fd = memfdCreate(`fuzz-${name}`);
      this.owned.push(fd);
      ftruncate(fd, pages * PAGE + extra);
      if (seals) addSeals(fd, seals);
      const entry: PoolFd = {
        fd, kind: seals & constants.F_SEAL_SHRINK ? 'memfd-sealed' : 'memfd-unsealed', size: pages * PAGE + extra, identity: `memfd-${fd}`,
      };
      this.fds.push(entry);
      return entry;
    };
    const { F_SEAL_SHRINK: SHRINK, F_SEAL_GROW: GROW, F_SEAL_WRITE: WRITE, F_SEAL_SEAL: SEAL } = constants;
    memfd('empty', 0, SHRINK);
    memfd('one-page', 1, SHRINK);
    memfd('three-pages', 3, SHRINK | GROW);
    const big = memfd('16-pages', 16, SHRINK);
    memfd('256-pages', 256, SHRINK | GROW | SEAL);
    memfd('16MiB', 4096, SHRINK);
    memfd('64MiB', 16384, SHRINK | WRITE);
    memfd('unaligned-size', 4, SHRINK, 100); // 4 pages + 100 bytes
    memfd('unsealed', 16, 0);
    memfd('grow-sealed-only', 16, GROW | SEAL);
    // a second fd number for the 16-page memfd: its ranges overlap the original's
    const copy = dup(big.fd);
    this.owned.push(copy);
    this.fds.push({ ...big, fd: copy });
    const [s1, s2] = socketpair();
    this.owned.push(s1, s2);
    this.fds.push({ fd: s1, kind: 'socket', size: 0, identity: 'socket' });
    const file = fs.openSync(path.join(this.dir, 'regular'), 'w+');
    fs.ftruncateSync(file, 64 * PAGE);
    this.owned.push(file);
    this.fds.push({ fd: file, kind: 'file', size: 64 * PAGE, identity: 'file' });
    const devnull = fs.openSync('/dev/null', 'r');
    this.owned.push(devnull);
    this.fds.push({ fd: devnull, kind: 'devnull', size: 0, identity: 'devnull' });
    // fd numbers that are not open (checked): beyond every open one, and out of range
    const top = Math.max(...listOpenFds());
    for (const fd of [top + 57, top + 1000, 65535, 1 << 20, -1, 0x7fffffff, 2 ** 31, 1.5, NaN]) {
      this.fds.push({ fd, kind: 'closed', size: 0, identity: `closed-${fd}` });
    }
  }

  get memfds(): PoolFd[] {
    return this.fds.filter((f) => f.kind === 'memfd-sealed' && f.size >= PAGE);
  }

  byFd(fd: number): PoolFd | undefined {
    return this.fds.find((f) => Object.is(f.fd, fd));
  }

  close(): void {
    for (const fd of this.owned.splice(0)) close(fd);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const KNOWN_FOURCCS = FORMATS.map((f) => f.fourcc);
/** fourccs that are real DRM formats but not in our table, and garbage. */
const OTHER_FOURCCS = [fourcc('NV12'), fourcc('YUYV'), fourcc('RG24'), fourcc('BG16'), fourcc('AR30'), 0, 0xffffffff, -1, 2 ** 32 + fourcc('XR24'), NaN, 1.5];
const INVALID_MODIFIER = 0xffffffffffffffn;
const MODIFIERS: readonly unknown[] = [
  0n, 0n, 0n, INVALID_MODIFIER, 1n, 0x0100000000000001n, (1n << 64n) - 1n, 1n << 64n, -1n, -(1n << 63n), 0, 1, NaN, '0', null,
];

/** A description, near-valid by construction, then bent in zero or more places. */
export function generateDescription(rng: Rng, pool: FdPool): BlobResourceDescription {
  const format = rng.pick(FORMATS);
  const width = rng.weighted([[5, rng.int(1, 64)], [3, rng.int(1, 2048)], [1, rng.int(1, 16384)]]);
  const height = rng.weighted([[5, rng.int(1, 64)], [3, rng.int(1, 1024)], [1, rng.int(1, 16384)]]);
  const rowBytes = width * format.bytesPerPixel;
  const stride = rowBytes + rng.weighted([[6, 0], [2, rng.int(0, 64) * 4], [1, rng.int(0, PAGE)]]);
  const offset = rng.weighted([[6, 0], [2, rng.int(0, 4) * PAGE], [1, rng.int(0, 10_000)]]);
  const desc: BlobResourceDescription = {
    id: rng.weighted([[6, rng.int(0, 1000)], [2, rng.u32()], [1, rng.boundary()]]),
    width, height, fourcc: format.fourcc, planes: [{ offset, stride }],
  };
  const dmabufBacking = rng.bool(0.2);
  if (dmabufBacking) {
    desc.dmabufs = [rng.pick(pool.fds).fd];
    if (rng.bool(0.5)) desc.modifier = rng.pick([0n, 0n, 0x0100000000000001n, 0x0200000000000005n, INVALID_MODIFIER]);
  } else {
    desc.memory = coveringRanges(rng, pool, offset + stride * (height - 1) + rowBytes);
  }
  bend(rng, pool, desc);
  return desc;
}

/** Ranges of the sealed memfds (whole pages, not overlapping) that together hold `needed` bytes, when they can. */
function coveringRanges(rng: Rng, pool: FdPool, needed: number): MemfdRange[] {
  const ranges: MemfdRange[] = [];
  const used = new Map<string, number>(); // identity -> next free page offset
  let total = 0;
  const pieces = rng.weighted([[6, 1], [3, 2], [1, 4]]);
  for (let i = 0; i < pieces && (total < needed || i === 0); i++) {
    const candidates = pool.memfds.filter((m) => m.size - (used.get(m.identity) ?? 0) >= PAGE);
    if (candidates.length === 0) break;
    const m = rng.pick(candidates);
    const start = used.get(m.identity) ?? 0;
    const freePages = Math.floor((m.size - start) / PAGE);
    const wantPages = Math.ceil((needed - total) / PAGE);
    const pages = i === pieces - 1 ? Math.min(freePages, Math.max(1, wantPages)) : rng.int(1, Math.min(freePages, Math.max(1, wantPages)));
    // now and then the range is on some other fd of the pool: unsealed, a socket, a file, closed, …
    ranges.push({ memfd: rng.bool(0.06) ? rng.pick(pool.fds).fd : m.fd, offset: start, length: pages * PAGE });
    used.set(m.identity, start + pages * PAGE);
    total += pages * PAGE;
  }
  return ranges;
}

/** Changes zero or more fields to something likely wrong (or, by chance, still right). */
function bend(rng: Rng, pool: FdPool, desc: BlobResourceDescription): void {
  const bends = rng.weighted([[3, 0], [4, 1], [2, 2], [1, 4]]);
  for (let i = 0; i < bends; i++) {
    const plane = desc.planes[0] ?? { offset: 0, stride: 0 };
    switch (rng.int(0, 15)) {
      case 0: desc.id = rng.boundary(); break;
      case 1: desc.width = rng.bool() ? rng.boundary() : desc.width + rng.int(-2, 2); break;
      case 2: desc.height = rng.bool() ? rng.boundary() : desc.height + rng.int(-2, 2); break;
      case 3: desc.fourcc = rng.bool(0.3) ? rng.u32() : rng.pick([...OTHER_FOURCCS, ...KNOWN_FOURCCS]); break;
      case 4: desc.modifier = rng.pick(MODIFIERS) as bigint; break;
      case 5: desc.modifier = rng.bool() ? rng.u64() : -rng.u64(); break;
      case 6: desc.planes = rng.weighted([[2, []], [2, [plane, { ...plane }]], [1, [plane, plane, plane]], [1, [{ offset: rng.boundary(), stride: rng.boundary() }]]]); break;
      case 7: plane.stride = rng.bool() ? rng.boundary() : plane.stride + rng.int(-8, 8); break;
      case 8: plane.offset = rng.bool() ? rng.boundary() : plane.offset + rng.weighted([[1, -1], [1, 1], [1, PAGE], [1, -PAGE]]); break;
      case 9: { // both backings, or neither, or an empty one
        const which = rng.int(0, 3);
        if (which === 0) { desc.memory ??= []; desc.dmabufs ??= [pool.memfds[0].fd]; }
        if (which === 1) { delete desc.memory; delete desc.dmabufs; }
        if (which === 2) { desc.memory = []; delete desc.dmabufs; }
        if (which === 3) { delete desc.memory; desc.dmabufs = rng.weighted([[1, []], [1, [pool.memfds[0].fd, pool.memfds[1].fd]]]); }
        break;
      }
      case 10: case 11: { // a range: another fd, unaligned, beyond its memfd, overlapping another
        const ranges = desc.memory;
        if (!ranges || ranges.length === 0) { if (desc.dmabufs?.length) desc.dmabufs[0] = rng.pick(pool.fds).fd; break; }
        const r = rng.pick(ranges);
        const what = rng.int(0, 6);
        if (what === 0) r.memfd = rng.pick(pool.fds).fd;
        if (what === 1) r.offset = rng.bool() ? rng.boundary() : r.offset + rng.pick([-PAGE, PAGE, 1, -1, 512]);
        if (what === 2) r.length = rng.bool() ? rng.boundary() : r.length + rng.pick([-PAGE, PAGE, 1, -1, 512]);
        if (what === 3) ranges.push({ ...r });
        if (what === 4) ranges.push({ ...r, offset: r.offset + PAGE * rng.int(-1, 1) });
        if (what === 5) { const m = pool.byFd(r.memfd); if (m) r.offset = Math.max(0, m.size - rng.int(0, 2) * PAGE); }
        if (what === 6) ranges.splice(ranges.indexOf(r), 1);
        break;
      }
      case 12: // the dup of the 16-page memfd next to the original: overlapping ranges through two fd numbers
        desc.memory = [{ memfd: pool.fds.find((f) => f.size === 16 * PAGE && f.kind === 'memfd-sealed')!.fd, offset: 0, length: 8 * PAGE },
          { memfd: pool.fds.filter((f) => f.size === 16 * PAGE && f.kind === 'memfd-sealed')[1].fd, offset: rng.int(0, 15) * PAGE, length: PAGE }];
        delete desc.dmabufs;
        break;
      case 13: desc.width = rng.int(1, 16384); desc.height = rng.int(1, 16384); break; // big: mostly beyond the blob
      case 14: plane.stride = desc.width * rng.int(1, 4) + rng.int(-4, 4); break;
      case 15: desc.id = rng.bool() ? -rng.int(1, 10) : 2 ** 32 + rng.int(0, 10); break;
    }
  }
}

export interface Verdict {
  valid: boolean;
  /** Total bytes of guest memory when valid with memory backing. */
  size: number;
  why: string;
}

const u32 = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** The rules, independently: what a valid description is. */
export function oracle(desc: BlobResourceDescription, pool: FdPool): Verdict {
  const no = (why: string): Verdict => ({ valid: false, size: 0, why });
  if (!u32(desc.id)) return no('id not a u32');
  const format = FORMATS.find((f) => f.fourcc === desc.fourcc);
  if (!format) return no('fourcc not in the table');
  if (!isInt(desc.width) || desc.width < 1 || desc.width > 16384) return no('width');
  if (!isInt(desc.height) || desc.height < 1 || desc.height > 16384) return no('height');
  const modifier: unknown = desc.modifier ?? 0n; // absent (undefined or null): LINEAR
  if (typeof modifier !== 'bigint' || modifier < 0n || modifier > 0xffffffffffffffffn || modifier === INVALID_MODIFIER) return no('modifier');
  if (!Array.isArray(desc.planes) || desc.planes.length !== 1) return no('plane count');
  const hasMemory = desc.memory !== undefined && desc.memory !== null;
  const hasDmabufs = desc.dmabufs !== undefined && desc.dmabufs !== null;
  if (hasMemory === hasDmabufs) return no('not exactly one backing');
  const { offset, stride } = desc.planes[0];
  const rowBytes = desc.width * format.bytesPerPixel;
  if (!isInt(stride) || stride < rowBytes || stride > 0x7fffffff) return no('stride');
  if (!isInt(offset) || offset < 0) return no('plane offset');
  if (hasDmabufs) {
    if (desc.dmabufs!.length !== 1) return no('dmabuf count');
    const f = pool.byFd(desc.dmabufs![0]);
    if (!f || f.kind === 'closed') return no('dmabuf fd not open');
    return { valid: true, size: 0, why: 'dmabuf' };
  }
  if (modifier !== 0n) return no('guest memory with a non-linear modifier');
  const ranges = desc.memory!;
  if (ranges.length === 0) return no('no ranges');
  const taken: { identity: string; start: number; end: number }[] = [];
  let size = 0;
  for (const r of ranges) {
    if (!isInt(r.offset) || r.offset < 0 || !isInt(r.length) || r.length < 1) return no('range numbers');
    if (r.offset % PAGE !== 0 || r.length % PAGE !== 0) return no('range not page-aligned');
    const f = pool.byFd(r.memfd);
    if (!f || f.kind !== 'memfd-sealed') return no('range fd is not a memfd sealed against shrinking');
    if (r.offset + r.length > f.size) return no('range beyond its memfd');
    if (taken.some((t) => t.identity === f.identity && r.offset < t.end && t.start < r.offset + r.length)) return no('ranges overlap');
    taken.push({ identity: f.identity, start: r.offset, end: r.offset + r.length });
    size += r.length;
  }
  // the last row ends at offset + (height - 1) rows of stride + one row of pixels
  if (BigInt(offset) + BigInt(stride) * BigInt(desc.height - 1) + BigInt(rowBytes) > BigInt(size)) return no('rows beyond the blob');
  return { valid: true, size, why: 'memory' };
}
