// A capture session: the consumer states the formats it takes, learns the buffer constraints, lends buffers, and
// asks for captures; each capture fills one lent buffer with the newest guest frame (or the next one) and says
// what changed since that buffer's last fill. The session is a frame sink (a tap beside the presenter): it holds
// the newest frame only, so the guest is never kept from its other buffers.
import { EventEmitter } from 'node:events';
import { close as closeFd } from '../native/fds.js';
import { waitFence } from '../sync/fence.js';
import { formatByFourcc, fourccToString, formatByName } from '../formats.js';
import { clipRect, type Rect } from '../geometry.js';
import { isBlobFrame, type FrameSink, type ScanoutFrame } from '../source/frame.js';
import { DRM_FORMAT_MOD_LINEAR } from '../import/blob.js';
import { log } from '../log.js';
import { countCopy } from '../copy-stats.js';
import { CaptureError } from './errors.js';
import { FrameReader } from './frame-reader.js';
import { LentBuffer, type GpuTarget, type LentBufferDescription, type LentDmabuf } from './lent-buffer.js';

export interface BufferConstraints {
  width: number;
  height: number;
  /** Formats lent buffers may have, the consumer's preference first. */
  formats: number[];
  /** Formats and modifiers for lent dmabufs. */
  dmabuf: { fourcc: number; modifiers: bigint[] }[];
}

export type CaptureWait = 'newest' | 'next';

export interface CaptureResult {
  bufferId: number;
  /** The guest's sequence number of the captured frame. */
  seq: number;
  /** When the guest flushed the frame (its presentation time; CLOCK_MONOTONIC ns). */
  flushedAt: bigint;
  /** When the copy into the buffer finished (CLOCK_MONOTONIC ns). */
  capturedAt: bigint;
  /** What changed in the buffer with this capture (buffer coordinates): everything on its first fill. */
  damage: Rect[];
  /** Always false: bottom-up frames are flipped upright by the copy. */
  yInverted: boolean;
  width: number;
  height: number;
  fourcc: number;
  /** Bytes the CPU wrote into the buffer (0 for the GPU blit). */
  bytesCopied: number;
}

export interface CaptureSessionOptions {
  /** DRM fourccs the consumer accepts, preferred first (default: XRGB8888, ARGB8888, XBGR8888, ABGR8888). */
  formats?: number[];
  /** How long to wait for a guest frame's acquire fence (default 1000 ms). */
  fenceTimeoutMs?: number;
  /** Imports lent dmabufs for the GPU blit (see gpu-target.ts); without it lent dmabufs are written by the CPU. */
  gpuImport?: (desc: LentDmabuf) => GpuTarget;
}

const RGB32 = ['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888'].map((n) => formatByName(n)!.fourcc);
const HISTORY = 32;

interface Held {
  frame: ScanoutFrame;
  /** Resolves when the acquire fence has signalled (false: it failed or timed out). */
  ready: Promise<boolean>;
  users: number;
  superseded: boolean;
  committed: boolean;
  released: boolean;
}

interface Pending {
  buffer: LentBuffer;
  minSeq: number;
  resolve(result: CaptureResult): void;
  reject(error: Error): void;
}

export class CaptureSession extends EventEmitter<{ constraints: [BufferConstraints]; committed: [ScanoutFrame] }>
  implements FrameSink {
  readonly stats = { framesReceived: 0, framesCaptured: 0, captures: 0, failures: 0, bytesCopied: 0 };
  private readonly formats: number[];
  private readonly reader = new FrameReader();
  private readonly buffers = new Set<LentBuffer>();
  private readonly pending: Pending[] = [];
  /** Damage of recent frames by seq (null: everything changed). */
  private readonly history = new Map<number, Rect[] | null>();
  private held: Held | null = null;
  private current: BufferConstraints | null = null;
  private stopped = false;

  constructor(private readonly options: CaptureSessionOptions = {}) {
    super();
    this.formats = options.formats ?? RGB32;
    for (const f of this.formats) {
      if (!formatByFourcc(f)) throw new CaptureError('unsupported-format', `capture format ${fourccToString(f)} is unknown`);
    }
  }

  /** The buffer constraints of the newest frame; null before the first frame. */
  get constraints(): BufferConstraints | null {
    return this.current;
  }

  /** Resolves with the constraints once a frame has arrived. */
  async waitForConstraints(): Promise<BufferConstraints> {
    if (this.current) return this.current;
    return new Promise((resolve) => this.once('constraints', resolve));
  }

  /** Imports a lent buffer once; throws CaptureError with the reason it cannot be used. */
  lend(desc: LentBufferDescription): LentBuffer {
    if (this.stopped) throw new CaptureError('stopped', 'the capture session has stopped');
    const buffer = new LentBuffer(desc, desc.kind === 'dmabuf' ? this.options.gpuImport : undefined);
    this.buffers.add(buffer);
    log.debug({ buffer: buffer.id, access: buffer.access, size: `${buffer.width}x${buffer.height}`, format: buffer.format.name }, 'capture: buffer lent');
    return buffer;
  }

  /** The consumer takes `buffer` back: a capture waiting to fill it fails with 'taken-back'. */
  takeBack(buffer: LentBuffer): void {
    if (!this.buffers.delete(buffer)) return;
    for (const p of this.pending.filter((q) => q.buffer === buffer)) {
      this.pending.splice(this.pending.indexOf(p), 1);
      p.reject(new CaptureError('taken-back', `lent buffer ${buffer.id} was taken back before it was filled`));
    }
    buffer.release();
  }

  /**
   * Fills `buffer` with the newest frame ('newest', the default: at once when one has arrived), or with the first
   * frame newer than the buffer's last fill ('next', like copy_with_damage), or newer than `after` when given (a
   * consumer rotating buffers). Rejects with a CaptureError.
   */
  capture(buffer: LentBuffer, wait: CaptureWait = 'newest', after?: number): Promise<CaptureResult> {
    if (this.stopped) return Promise.reject(new CaptureError('stopped', 'the capture session has stopped'));
    if (!this.buffers.has(buffer)) {
      return Promise.reject(new CaptureError('taken-back', `lent buffer ${buffer.id} is not lent to this session`));
    }
    this.stats.captures++;
    const since = after ?? buffer.lastSeq;
    const minSeq = wait === 'next' && since !== null ? since + 1 : -Infinity;
    return new Promise((resolve, reject) => {
      const request: Pending = { buffer, minSeq, resolve, reject };
      const held = this.held;
      if (held && held.frame.seq >= minSeq) void this.fulfil(request, held);
      else this.pending.push(request);
    });
  }

  /** Takes a frame from the source (FrameSink): it becomes the newest, the previous one goes back to the guest. */
  present(frame: ScanoutFrame): void {
    if (this.stopped) {
      dropFrame(frame);
      return;
    }
    this.stats.framesReceived++;
    this.history.set(frame.seq, frame.damage);
    if (this.history.size > HISTORY) this.history.delete(this.history.keys().next().value!);
    const { width, height } = isBlobFrame(frame) ? frame.resource : frame;
    if (!this.current || this.current.width !== width || this.current.height !== height) {
      this.current = this.constraintsFor(width, height, frame);
      this.emit('constraints', this.current);
    }
    const previous = this.held;
    const held: Held = { frame, ready: this.acquire(frame), users: 0, superseded: false, committed: false, released: false };
    this.held = held;
    if (previous) {
      previous.superseded = true;
      this.releaseIfUnused(previous);
    }
    const ready = this.pending.filter((p) => frame.seq >= p.minSeq);
    for (const p of ready) {
      this.pending.splice(this.pending.indexOf(p), 1);
      void this.fulfil(p, held);
    }
  }

  private constraintsFor(width: number, height: number, frame: ScanoutFrame): BufferConstraints {
    const fourcc = isBlobFrame(frame) ? frame.resource.format.fourcc : frame.fourcc;
    const convertible = RGB32.includes(fourcc) ? RGB32 : [fourcc];
    const formats = this.formats.filter((f) => convertible.includes(f));
    return { width, height, formats, dmabuf: formats.map((f) => ({ fourcc: f, modifiers: [DRM_FORMAT_MOD_LINEAR] })) };
  }

  private acquire(frame: ScanoutFrame): Promise<boolean> {
    if (!isBlobFrame(frame) || frame.acquireFence === null) return Promise.resolve(true);
    const fence = frame.acquireFence;
    frame.acquireFence = null;
    return waitFence(fence, this.options.fenceTimeoutMs ?? 1000).result.then((outcome) => {
      closeFd(fence);
      if (outcome !== 'signalled') log.warn({ seq: frame.seq, outcome }, 'capture: the frame\'s acquire fence did not signal');
      return outcome === 'signalled';
    });
  }

  private async fulfil(request: Pending, held: Held): Promise<void> {
    const { buffer } = request;
    held.users++;
    try {
      const fenced = await held.ready;
      if (!fenced) throw new CaptureError('fence-failed', `frame ${held.frame.seq}: its acquire fence did not signal`);
      if (buffer.takenBack) throw new CaptureError('taken-back', `lent buffer ${buffer.id} was taken back`);
      const c = this.current!;
      const { width, height } = isBlobFrame(held.frame) ? held.frame.resource : held.frame;
      if (buffer.width !== width || buffer.height !== height || !c.formats.includes(buffer.format.fourcc)) {
        throw new CaptureError('buffer-constraints', `lent buffer ${buffer.id} is ${buffer.width}x${buffer.height} ` +
          `${buffer.format.name}; frames are now ${width}x${height} in ${c.formats.map(fourccToString).join(', ') || 'no format you accept'}`);
      }
      const rects = this.damageSince(buffer.lastSeq, held.frame.seq, width, height);
      const bytes = await buffer.fill(held.frame, this.reader, rects);
      buffer.lastSeq = held.frame.seq;
      this.stats.bytesCopied += bytes;
      countCopy('capture', bytes);
      if (!held.committed) {
        held.committed = true;
        this.stats.framesCaptured++;
        this.emit('committed', held.frame);
      }
      const bottomUp = isBlobFrame(held.frame) && held.frame.resource.bottomUp;
      const full = [{ x: 0, y: 0, width, height }];
      request.resolve({
        bufferId: buffer.id, seq: held.frame.seq, flushedAt: held.frame.flushedAt, capturedAt: process.hrtime.bigint(),
        damage: (rects ?? full).map((r) => (bottomUp ? { ...r, y: height - r.y - r.height } : r)),
        yInverted: false, width, height, fourcc: buffer.format.fourcc, bytesCopied: bytes,
      });
    } catch (e) {
      this.stats.failures++;
      const error = e instanceof CaptureError ? e
        : new CaptureError('import-failed', `lent buffer ${buffer.id}: the copy failed: ${(e as Error).message}`);
      if (error.code === 'truncated' || error.code === 'read-only') buffer.lastSeq = null; // its contents are unknown
      log.warn({ buffer: buffer.id, code: error.code, err: error.message }, 'capture failed');
      request.reject(error);
    } finally {
      held.users--;
      this.releaseIfUnused(held);
    }
  }

  /** Damage of the frames after `since` up to `seq`, clipped; null when everything must be copied. */
  private damageSince(since: number | null, seq: number, width: number, height: number): Rect[] | null {
    if (since === null || since > seq) return null;
    const rects: Rect[] = [];
    for (let s = since + 1; s <= seq; s++) {
      if (!this.history.has(s)) return null;
      const damage = this.history.get(s);
      if (!damage) return null;
      for (const r of damage) {
        const clipped = clipRect(r, width, height);
        if (clipped) rects.push(clipped);
      }
    }
    return rects;
  }

  private releaseIfUnused(held: Held): void {
    if (held.superseded && held.users === 0 && !held.released) {
      held.released = true;
      void held.ready.then(() => held.frame.release());
    }
  }

  /** Ends the session: waiting captures fail with 'stopped', lent buffers are dropped, the held frame released. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const p of this.pending.splice(0)) p.reject(new CaptureError('stopped', 'the capture session has stopped'));
    for (const buffer of this.buffers) buffer.release();
    this.buffers.clear();
    if (this.held) {
      this.held.superseded = true;
      this.releaseIfUnused(this.held);
      this.held = null;
    }
    // The reader's mappings go once every copy in flight has let go of its frame.
    void Promise.resolve().then(() => this.reader.close());
  }
}

function dropFrame(frame: ScanoutFrame): void {
  if (isBlobFrame(frame) && frame.acquireFence !== null) closeFd(frame.acquireFence);
  frame.release();
}
