// Drives a built-in guest into a presenter: the guest draws when the compositor asks for a frame
// (frame callback) and a buffer is free, so it never renders faster than the display.
import type { BuiltinGuest } from './source/builtin-guest.js';
import type { Presenter } from './present/presenter.js';

export interface GuestRun {
  /** Resolves after `frames` frames were committed (or never, when frames is Infinity, until stop()). */
  done: Promise<void>;
  stop(): void;
}

export function runGuest(guest: BuiltinGuest, presenter: Presenter, frames = Infinity): GuestRun {
  let wanted = true; // the compositor is ready for a frame
  let stopped = false;
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  const step = (): void => {
    if (stopped || !wanted) return;
    if (guest.stats.framesDrawn >= frames) {
      finish();
      return;
    }
    const frame = guest.drawNext();
    if (!frame) return; // every buffer held: 'released' will call us again
    wanted = false;
    try {
      presenter.present(frame);
    } catch (e) {
      finish(e as Error);
    }
  };
  const onFrameDone = (): void => { wanted = true; step(); };
  const onError = (e: Error): void => finish(e);
  const finish = (error?: Error): void => {
    if (stopped) return;
    stopped = true;
    presenter.off('frame-done', onFrameDone);
    presenter.off('error', onError);
    guest.off('released', step);
    if (error) reject(error);
    else resolve();
  };
  presenter.on('frame-done', onFrameDone);
  presenter.on('error', onError);
  guest.on('released', step);
  step();
  return { done, stop: () => finish() };
}
