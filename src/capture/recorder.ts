// The recording loop: captures guest frames into two lent buffers in turn and hands each to a video writer and/or
// the pattern verifier. 'every-frame' records each new guest frame once (a guest paced by the recorder);
// 'sample' captures the newest frame at a fixed rate, as a screen recorder does (frames the guest drew in between
// are counted as dropped, frames it did not change are repeated).
import { formatByFourcc } from '../formats.js';
import { toRgba } from './png.js';
import { allocateShmBuffer, type OwnedShmBuffer } from './shm-lender.js';
import { CaptureError } from './errors.js';
import type { CaptureResult, CaptureSession } from './session.js';
import type { LentBuffer } from './lent-buffer.js';
import type { VideoWriter } from './video-writer.js';
import type { PatternVerifier } from './pattern-verifier.js';

export interface RecordOptions {
  mode: 'every-frame' | 'sample';
  /** Sampling rate for 'sample' (frames per second). */
  fps: number;
  /** Stop after this many recorded frames (Infinity: until the signal aborts). */
  frames: number;
  /** Creates the writer once the frame size is known (null: verify only). */
  openWriter?: (width: number, height: number, fourcc: number) => VideoWriter;
  verifier?: PatternVerifier;
  /** Fault injection for checking the verifier: indices of recorded frames to discard, and to corrupt. */
  inject?: { drop: Set<number>; corrupt: Set<number> };
  signal?: AbortSignal;
  onProgress?: (stats: RecordStats) => void;
}

export interface RecordStats {
  /** Frames written (and/or verified). */
  recorded: number;
  /** Guest frames that were never recorded. */
  dropped: number;
  /** Samples that found no new guest frame and repeated the previous one. */
  repeated: number;
  elapsedMs: number;
  /** Why recording stopped. */
  ended: string;
}

export async function recordFrames(session: CaptureSession, options: RecordOptions): Promise<RecordStats> {
  const started = performance.now();
  const stats: RecordStats = { recorded: 0, dropped: 0, repeated: 0, elapsedMs: 0, ended: '' };
  const aborted = new Promise<'aborted'>((resolve) => {
    if (options.signal?.aborted) resolve('aborted');
    options.signal?.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
  const constraints = await Promise.race([session.waitForConstraints(), aborted]);
  if (constraints === 'aborted') return { ...stats, ended: 'interrupted before the first frame' };
  const { width, height } = constraints;
  const fourcc = constraints.formats[0];
  const format = fourcc === undefined ? undefined : formatByFourcc(fourcc);
  if (!format) throw new CaptureError('unsupported-format', 'the guest\'s frames cannot be converted to a format the recorder takes');
  const owned: OwnedShmBuffer[] = [allocateShmBuffer(width, height, format), allocateShmBuffer(width, height, format)];
  const lent: LentBuffer[] = [];
  const writer = options.openWriter?.(width, height, fourcc) ?? null;
  let lastSeq: number | null = null;
  let index = 0;
  let nextSample = performance.now();
  try {
    for (const o of owned) lent.push(session.lend(o.description));
    while (stats.recorded < options.frames) {
      if (options.mode === 'sample') {
        const wait = nextSample - performance.now();
        nextSample = Math.max(nextSample + 1000 / options.fps, performance.now());
        if (wait > 0 && await Promise.race([sleep(wait), aborted]) === 'aborted') break;
      }
      const slot = index++ % 2;
      // Every frame: the first newer than the last one recorded (the other buffer's), not than this buffer's.
      const filled: Promise<CaptureResult> = options.mode === 'every-frame' ? session.capture(lent[slot], 'next', lastSeq ?? undefined)
        : session.capture(lent[slot], 'newest');
      let result: CaptureResult | 'aborted';
      try {
        result = await Promise.race([filled, aborted]);
      } catch (e) {
        if (e instanceof CaptureError && e.code === 'buffer-constraints') {
          stats.ended = `the guest changed its size or format (${e.message})`;
          break;
        }
        throw e;
      }
      if (result === 'aborted') {
        filled.catch(() => {}); // fails with 'stopped' when the session ends
        break;
      }
      if (lastSeq !== null) {
        if (result.seq === lastSeq) stats.repeated++;
        else stats.dropped += Math.max(0, result.seq - lastSeq - 1);
      }
      lastSeq = result.seq;
      let bytes = owned[slot].bytes;
      const n = stats.recorded++;
      if (options.inject?.drop.has(n)) continue;
      if (options.inject?.corrupt.has(n)) {
        bytes = Uint8Array.from(bytes); // the lent buffer is mapped read-only here
        bytes[(height >> 1) * width * 4 + (width >> 1) * 4] ^= 0xff;
      }
      options.verifier?.check({ width, height, data: toRgba(bytes, width, height, width * 4, format) },
        result.capturedAt - result.flushedAt);
      if (writer) await writer.write(bytes);
      stats.elapsedMs = performance.now() - started;
      options.onProgress?.(stats);
    }
    stats.ended ||= stats.recorded >= options.frames ? `${options.frames} frames recorded` : 'interrupted';
    await writer?.finish();
  } catch (e) {
    writer?.abort();
    throw e;
  } finally {
    for (const b of lent) session.takeBack(b);
    for (const o of owned) o.close();
  }
  stats.elapsedMs = performance.now() - started;
  return stats;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
