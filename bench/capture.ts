// Capture scenario: the built-in guest at 1920x1080 captured into a lent memfd with no window — alone, with a PNG
// encoded per frame, and recorded through ffmpeg (lossless RGB H.264) — with fps, CPU per frame and bytes copied per frame,
// beside the physical floor of one 1080p memcpy.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaptureSession } from '../src/capture/session.js';
import { allocateShmBuffer } from '../src/capture/shm-lender.js';
import { encodePng, toRgba } from '../src/capture/png.js';
import { recordFrames } from '../src/capture/recorder.js';
import { VideoWriter } from '../src/capture/video-writer.js';
import { BuiltinGuest } from '../src/source/builtin-guest.js';
import { runGuestHeadless } from '../src/pipeline.js';
import { formatByFourcc, formatByName } from '../src/formats.js';
import { memcpyMs } from './proc.js';

export interface CaptureRow {
  consumer: string;
  frames: number;
  fps: number;
  dropped: number;
  cpuMsPerFrame: number;
  /** ffmpeg's own CPU per frame (record only). */
  encoderCpuMsPerFrame: number | null;
  bytesCopiedPerFrame: number;
  /** CPU per frame over one 1080p memcpy. */
  memcpyMultiple: number;
}

const W = 1920;
const H = 1080;
const XRGB = formatByName('XRGB8888')!;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function captureLoop(frames: number, png: boolean, floorMs: number): Promise<CaptureRow> {
  const guest = new BuiltinGuest({ width: W, height: H, format: XRGB, buffers: 3 });
  const session = new CaptureSession();
  const run = runGuestHeadless(guest, session, { fps: 10_000 });
  const owned = allocateShmBuffer(W, H, XRGB);
  try {
    const buffer = session.lend(owned.description);
    let last = (await session.capture(buffer)).seq;
    let dropped = 0;
    const cpu0 = cpuMs();
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) {
      const r = await session.capture(buffer, 'next');
      dropped += r.seq - last - 1;
      last = r.seq;
      if (png) encodePng({ width: W, height: H, data: toRgba(owned.bytes, W, H, W * 4, XRGB) });
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpuPerFrame = (cpuMs() - cpu0) / frames;
    return {
      consumer: png ? 'capture + PNG' : 'capture', frames, fps: frames / seconds, dropped, cpuMsPerFrame: cpuPerFrame,
      encoderCpuMsPerFrame: null, bytesCopiedPerFrame: session.stats.bytesCopied / (frames + 1), memcpyMultiple: cpuPerFrame / floorMs,
    };
  } finally {
    run.stop();
    session.stop();
    owned.close();
    guest.close();
  }
}

async function recordLoop(frames: number, floorMs: number): Promise<CaptureRow> {
  const dir = mkdtempSync(join(tmpdir(), 'wlscanout-bench-record-'));
  const guest = new BuiltinGuest({ width: W, height: H, format: XRGB, buffers: 3 });
  const session = new CaptureSession();
  const run = runGuestHeadless(guest, session, { fps: 10_000 });
  let writer: VideoWriter | null = null;
  let encoderMs = 0;
  try {
    const cpu0 = cpuMs();
    const stats = await recordFrames(session, {
      mode: 'every-frame', fps: 60, frames,
      openWriter: (width, height, fourcc) => {
        writer = new VideoWriter({ file: join(dir, 'bench.mkv'), width, height, format: formatByFourcc(fourcc)!, fps: 60 });
        return writer;
      },
      // ffmpeg's CPU is read just before its input ends (once it exits, /proc no longer has it).
      onProgress: (s) => { if (s.recorded === frames && writer) encoderMs = writer.cpuMs(); },
    });
    const cpuPerFrame = (cpuMs() - cpu0) / stats.recorded;
    return {
      consumer: 'record (ffmpeg, lossless H.264)', frames: stats.recorded, fps: stats.recorded / (stats.elapsedMs / 1000), dropped: stats.dropped,
      cpuMsPerFrame: cpuPerFrame, encoderCpuMsPerFrame: encoderMs / stats.recorded,
      bytesCopiedPerFrame: session.stats.bytesCopied / stats.recorded, memcpyMultiple: cpuPerFrame / floorMs,
    };
  } finally {
    run.stop();
    session.stop();
    guest.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function captureBench(frames: number): Promise<{ memcpyMs: number; rows: CaptureRow[] }> {
  const floor = memcpyMs(W * H * 4);
  return {
    memcpyMs: floor,
    rows: [await captureLoop(frames, false, floor), await captureLoop(Math.min(frames, 120), true, floor), await recordLoop(frames, floor)],
  };
}
