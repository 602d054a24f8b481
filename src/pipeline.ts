// Drives a built-in guest into a presenter: the guest draws when the compositor asks for a frame
// (frame callback) and a buffer is free, so it never renders faster than the display.
import { BuiltinGuest } from './source/builtin-guest.js';
import type { BlobGuest } from './source/blob-guest.js';
import type { BlobFrame } from './source/frame.js';
import type { Presenter } from './present/presenter.js';
import type { CaptureSession } from './capture/session.js';
import { shareFrame } from './source/frame-share.js';
import type { ScanoutFrame } from './source/frame.js';

export interface GuestRun {
  /** Resolves after `frames` frames were committed (or never, when frames is Infinity, until stop()). */
  done: Promise<void>;
  stop(): void;
}

/**
 * Runs a memfd-frame guest (BuiltinGuest) or a virtio-gpu blob guest (BlobGuest) for `frames` frames, paced by
 * the presenter; with `capture`, each frame is also handed to that capture session (a tap).
 */
export function runGuest(guest: BuiltinGuest | BlobGuest, presenter: Presenter, frames = Infinity,
  capture?: CaptureSession): GuestRun {
  const show = (frame: ScanoutFrame): void => {
    if (!capture) return presenter.present(frame);
    const [shown, captured] = shareFrame(frame, 2);
    capture.present(captured);
    presenter.present(shown);
  };
  let wanted = true; // the compositor is ready for a frame
  let stopped = false;
  let produced = 0;
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  const onBlobFrame = (frame: BlobFrame): void => {
    try {
      show(frame);
    } catch (e) {
      finish(e as Error);
    }
  };
  const produce = (): boolean => {
    if (!(guest instanceof BuiltinGuest)) return guest.flushNext();
    const frame = guest.drawNext();
    if (!frame) return false;
    show(frame);
    return true;
  };
  const step = (): void => {
    if (stopped || !wanted) return;
    if (produced >= frames) {
      finish();
      return;
    }
    try {
      if (!produce()) return; // every buffer held: 'released' will call us again
    } catch (e) {
      finish(e as Error);
      return;
    }
    produced++;
    wanted = false;
  };
  const onFrameDone = (): void => { wanted = true; step(); };
  const onError = (e: Error): void => finish(e);
  const finish = (error?: Error): void => {
    if (stopped) return;
    stopped = true;
    presenter.off('frame-done', onFrameDone);
    presenter.off('error', onError);
    guest.off('released', step);
    if (!(guest instanceof BuiltinGuest)) guest.gpu.off('frame', onBlobFrame);
    if (error) reject(error);
    else resolve();
  };
  presenter.on('frame-done', onFrameDone);
  presenter.on('error', onError);
  guest.on('released', step);
  if (!(guest instanceof BuiltinGuest)) guest.gpu.on('frame', onBlobFrame);
  step();
  return { done, stop: () => finish() };
}

export interface HeadlessRunOptions {
  /** Guest frames per second at most (default 60). */
  fps?: number;
  /** Stop after this many frames (default: never, until stop()). */
  frames?: number;
}

/**
 * Runs the built-in guest with no window, into a capture session: like a guest waiting on its flush, it draws
 * the next frame only once the previous one was captured (or superseded), and at most `fps` times a second.
 */
export function runGuestHeadless(guest: BuiltinGuest, capture: CaptureSession, options: HeadlessRunOptions = {}): GuestRun {
  const frames = options.frames ?? Infinity;
  const interval = 1000 / (options.fps ?? 60);
  let produced = 0;
  let waiting = false; // the previous frame is not captured yet
  let stopped = false;
  let resolve!: () => void;
  const done = new Promise<void>((res) => { resolve = res; });
  let next = performance.now();
  let timer: NodeJS.Timeout | null = null;
  const tick = (): void => {
    timer = null;
    if (stopped || waiting) return;
    if (produced >= frames) return finish();
    const frame = guest.drawNext();
    if (!frame) return; // every buffer held: 'released' calls again
    produced++;
    waiting = true;
    capture.present(frame);
  };
  const schedule = (): void => {
    if (stopped || timer) return;
    next = Math.max(next + interval, performance.now());
    timer = setTimeout(tick, Math.max(0, next - performance.now()));
  };
  const onCommitted = (): void => { waiting = false; schedule(); };
  const onReleased = (): void => { if (!waiting) schedule(); };
  const finish = (): void => {
    if (stopped) return;
    stopped = true;
    if (timer) clearTimeout(timer);
    capture.off('committed', onCommitted);
    guest.off('released', onReleased);
    resolve();
  };
  capture.on('committed', onCommitted);
  guest.on('released', onReleased);
  tick();
  return { done, stop: finish };
}
