import { Presenter, type PresenterOptions } from '../src/present/presenter.js';
import { BuiltinGuest } from '../src/source/builtin-guest.js';
import type { MemfdFrame } from '../src/source/frame.js';
import { formatByName, type PixelFormat } from '../src/formats.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export const XRGB = formatByName('XRGB8888')!;

export async function openPresenter(socket: string, options: Partial<PresenterOptions> = {}): Promise<Presenter> {
  const presenter = await Presenter.open({ display: socket, title: 'wlscanout test', appId: 'wlscanout-test', ...options });
  await waitFor('the first configure', () => presenter.window.configured);
  return presenter;
}

/** Presents one new guest frame and resolves once the compositor has shown it (its frame callback). */
export async function showNext(guest: BuiltinGuest, presenter: Presenter): Promise<MemfdFrame> {
  await waitFor('a free guest buffer', () => guest.heldBuffers < guest.options.buffers!);
  const frame = guest.drawNext()!;
  const done = new Promise<void>((resolve) => presenter.once('frame-done', () => resolve()));
  presenter.present(frame);
  await done;
  return frame;
}

export function makeGuest(width: number, height: number, format: PixelFormat = XRGB): BuiltinGuest {
  return new BuiltinGuest({ width, height, format, buffers: 3 });
}
