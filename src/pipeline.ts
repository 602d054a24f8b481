// Drives a built-in guest into a presenter: the guest draws when the compositor asks for a frame
// (frame callback) and a buffer is free, so it never renders faster than the display.
import { BuiltinGuest } from './source/builtin-guest.js';
import type { BlobGuest } from './source/blob-guest.js';
import type { BlobFrame } from './source/frame.js';
import type { Presenter } from './present/presenter.js';

export interface GuestRun {
  /** Resolves after `frames` frames were committed (or never, when frames is Infinity, until stop()). */
  done: Promise<void>;
  stop(): void;
}

/** Runs a memfd-frame guest (BuiltinGuest) or a virtio-gpu blob guest (BlobGuest) for `frames` frames. */
export function runGuest(guest: BuiltinGuest | BlobGuest, presenter: Presenter, frames = Infinity): GuestRun {
  let wanted = true; // the compositor is ready for a frame
  let stopped = false;
  let produced = 0;
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  const onBlobFrame = (frame: BlobFrame): void => {
    try {
      presenter.present(frame);
    } catch (e) {
      finish(e as Error);
    }
  };
  const produce = (): boolean => {
    if (!(guest instanceof BuiltinGuest)) return guest.flushNext();
    const frame = guest.drawNext();
    if (!frame) return false;
    presenter.present(frame);
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
