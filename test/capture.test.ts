// Capture sessions on the host: lent wl_shm-style buffers filled with guest frames (the CPU copy), damage since a
// buffer's last fill, format conversion, and every kind of bad lent buffer refused with its reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureSession } from '../src/capture/session.js';
import { CaptureError } from '../src/capture/errors.js';
import { allocateShmBuffer } from '../src/capture/shm-lender.js';
import { FrameTee } from '../src/capture/frame-tee.js';
import { runGuest, runGuestHeadless } from '../src/pipeline.js';
import { renderExpected, patternBox } from '../src/source/test-pattern.js';
import { toRgba } from '../src/capture/png.js';
import { memfdCreate, ftruncate, close, listOpenFds, mmap, munmap } from '../src/native/fds.js';
import { formatByName, type PixelFormat } from '../src/formats.js';
import { startSway, type Compositor } from '../src/embedded/compositors.js';
import { BlobGuest } from '../src/source/blob-guest.js';
import { makeGuest, openPresenter, waitFor, XRGB } from './helpers.js';

const W = 320;
const H = 200;
const ABGR = formatByName('ABGR8888')!;

function rgbaOf(bytes: Uint8Array, format: PixelFormat, width = W, height = H): Uint8Array {
  return toRgba(bytes, width, height, width * 4, format);
}

/** Pixels whose R, G or B differ between two RGBA images. */
function rgbMismatches(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
  return n;
}

async function reason(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(CaptureError);
    return `${(e as CaptureError).code}: ${(e as Error).message}`;
  }
  throw new Error('expected a CaptureError');
}

describe('capture session (CPU copy into lent wl_shm buffers)', () => {
  let baseline: number[];
  beforeAll(() => { baseline = listOpenFds(); });
  afterAll(() => { expect(listOpenFds()).toEqual(baseline); });

  it('fills a lent buffer with the newest built-in guest frame, pixel for pixel, then only the damage', async () => {
    const guest = makeGuest(W, H);
    const session = new CaptureSession();
    const run = runGuestHeadless(guest, session, { fps: 1000 });
    const owned = allocateShmBuffer(W, H, XRGB);
    try {
      const constraints = await session.waitForConstraints();
      expect(constraints).toMatchObject({ width: W, height: H });
      expect(constraints.formats[0]).toBe(XRGB.fourcc);
      const buffer = session.lend(owned.description);
      expect(buffer.access).toBe('shm-mapped');
      const first = await session.capture(buffer);
      expect(first.damage).toEqual([{ x: 0, y: 0, width: W, height: H }]);
      expect(first.yInverted).toBe(false);
      expect(first.bytesCopied).toBe(W * H * 4);
      expect(first.capturedAt).toBeGreaterThanOrEqual(first.flushedAt);
      expect(Buffer.from(rgbaOf(owned.bytes, XRGB)).equals(Buffer.from(renderExpected(W, H, XRGB, first.seq)))).toBe(true);

      let second = await session.capture(buffer, 'next');
      expect(second.seq).toBeGreaterThan(first.seq);
      // The guest damages everything in each of its 3 buffers' first frames; after those, only what moved.
      while (second.seq < 4) second = await session.capture(buffer, 'next');
      // Only what changed since this buffer's last fill was copied: header row and the box's old and new places.
      expect(second.bytesCopied).toBeLessThan(W * H * 4 / 4);
      const moved = new Set(second.damage.map((r) => JSON.stringify(r)));
      for (const r of patternBox(W, H, second.seq)) expect(moved.has(JSON.stringify(r))).toBe(true);
      expect(Buffer.from(rgbaOf(owned.bytes, XRGB)).equals(Buffer.from(renderExpected(W, H, XRGB, second.seq)))).toBe(true);
      expect(session.stats).toMatchObject({ captures: second.seq - first.seq + 1, failures: 0 });
    } finally {
      run.stop();
      session.stop();
      owned.close();
      guest.close();
    }
  });

  it('converts XRGB8888 guest frames into an ABGR8888 lent buffer', async () => {
    const guest = makeGuest(W, H);
    const session = new CaptureSession({ formats: [ABGR.fourcc] });
    const run = runGuestHeadless(guest, session, { fps: 1000 });
    const owned = allocateShmBuffer(W, H, ABGR);
    try {
      expect((await session.waitForConstraints()).formats).toEqual([ABGR.fourcc]);
      const result = await session.capture(session.lend(owned.description));
      expect(result.fourcc).toBe(ABGR.fourcc);
      const expected = renderExpected(W, H, XRGB, result.seq);
      expect(Buffer.from(owned.bytes).equals(Buffer.from(expected))).toBe(true); // ABGR8888 is R, G, B, A in memory
    } finally {
      run.stop();
      session.stop();
      owned.close();
      guest.close();
    }
  });

  it('captures virtio-gpu blob frames, waiting for each frame\'s flush to be released to the guest in turn', async () => {
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3 });
    const session = new CaptureSession();
    const owned = allocateShmBuffer(W, H, XRGB);
    const onFrame = (f: Parameters<CaptureSession['present']>[0]): void => session.present(f);
    guest.gpu.on('frame', onFrame);
    try {
      const buffer = session.lend(owned.description);
      for (let i = 0; i < 5; i++) {
        expect(guest.flushNext()).toBe(true);
        const result = await session.capture(buffer, 'next');
        expect(rgbMismatches(rgbaOf(owned.bytes, XRGB), renderExpected(W, H, XRGB, result.seq))).toBe(0);
      }
    } finally {
      guest.gpu.off('frame', onFrame);
      session.stop();
      owned.close();
      guest.close();
    }
  });

  it('refuses bad lent buffers, each with its reason, and leaks nothing', async () => {
    const session = new CaptureSession();
    const fd = memfdCreate('lender', true);
    ftruncate(fd, W * H * 4);
    try {
      const shm = { kind: 'shm' as const, fd, offset: 0, width: W, height: H, stride: W * 4, fourcc: XRGB.fourcc };
      expect(await reason(() => session.lend({ ...shm, height: H + 1 }))).toMatch(/^too-small: .*needs 257280 bytes, the file has 256000/);
      expect(await reason(() => session.lend({ ...shm, stride: W * 4 - 4 }))).toMatch(/^bad-stride: .*stride 1276 is less than 320 × 4 = 1280/);
      expect(await reason(() => session.lend({ ...shm, fourcc: formatByName('RGB565')!.fourcc }))).toMatch(/^unsupported-format: .*RGB565|RG16/);
      expect(await reason(() => session.lend({ ...shm, width: 0 }))).toMatch(/^bad-size: .*0x200/);
      expect(await reason(() => session.lend({ ...shm, fd: 999 }))).toMatch(/^bad-fd: .*fd 999 cannot be used: .*EBADF/);
      const dmabuf = { kind: 'dmabuf' as const, width: W, height: H, fourcc: XRGB.fourcc, modifier: 0n, planes: [{ fd, offset: 0, stride: W * 4 }] };
      expect(await reason(() => session.lend(dmabuf))).toMatch(/^not-dmabuf: .*fd \d+ is not a dmabuf/);
      expect(await reason(() => session.lend({ ...dmabuf, planes: [] }))).toMatch(/^unsupported-format: .*0 planes/);
    } finally {
      close(fd);
      session.stop();
    }
  });

  it('survives a lender that truncates its unsealed memfd after lending it: a truncated error, no SIGBUS', async () => {
    const guest = makeGuest(W, H);
    const session = new CaptureSession();
    const run = runGuestHeadless(guest, session, { fps: 1000 });
    const fd = memfdCreate('lender', true); // not sealed: the lender may shrink it
    ftruncate(fd, W * H * 4);
    try {
      await session.waitForConstraints();
      const buffer = session.lend({ kind: 'shm', fd, offset: 0, width: W, height: H, stride: W * 4, fourcc: XRGB.fourcc });
      expect(buffer.access).toBe('shm-pwrite');
      const ok = await session.capture(buffer);
      const map = mmap(fd, 0, W * H * 4, false);
      expect(Buffer.from(rgbaOf(new Uint8Array(map), XRGB)).equals(Buffer.from(renderExpected(W, H, XRGB, ok.seq)))).toBe(true);
      munmap(map);
      ftruncate(fd, 4096); // the lender shrinks it
      expect(await reason(session.capture(buffer, 'next'))).toMatch(/^truncated: .*truncated it to 4096 bytes/);
      ftruncate(fd, W * H * 4); // and grows it back: the buffer works again, filled whole
      const again = await session.capture(buffer, 'next');
      expect(again.damage).toEqual([{ x: 0, y: 0, width: W, height: H }]);
    } finally {
      run.stop();
      session.stop();
      close(fd);
      guest.close();
    }
  });

  it('fails captures into a buffer of the wrong size with buffer-constraints, and one taken back with taken-back', async () => {
    const guest = makeGuest(W, H);
    const session = new CaptureSession();
    const run = runGuestHeadless(guest, session, { fps: 1000 });
    const small = allocateShmBuffer(W / 2, H, XRGB);
    const other = allocateShmBuffer(W, H, XRGB);
    try {
      await session.waitForConstraints();
      expect(await reason(session.capture(session.lend(small.description)))).toMatch(/^buffer-constraints: lent buffer \d+ is 160x200 XRGB8888; frames are now 320x200/);
      const buffer = session.lend(other.description);
      await session.capture(buffer);
      const waiting = session.capture(buffer, 'next');
      session.takeBack(buffer);
      // Either filled before the take-back or refused by it; never left hanging.
      await waiting.then(() => {}, (e: CaptureError) => expect(e.code).toBe('taken-back'));
      expect(await reason(session.capture(buffer))).toMatch(/^taken-back: /);
    } finally {
      run.stop();
      session.stop();
      small.close();
      other.close();
      guest.close();
    }
  });
});

describe('capture beside the window (sway headless)', () => {
  let sway: Compositor;
  beforeAll(async () => { sway = await startSway({ width: W, height: H }); }, 30_000);
  afterAll(async () => { await sway?.stop(); });

  it('captures the guest frame the window shows: equal to the source frame and to grim\'s capture at 1:1', async () => {
    const presenter = await openPresenter(sway.socket, { fullscreen: true });
    const guest = makeGuest(W, H);
    const session = new CaptureSession();
    const owned = allocateShmBuffer(W, H, XRGB);
    try {
      const buffer = session.lend(owned.description);
      await runGuest(guest, presenter, 12, session).done;
      const result = await session.capture(buffer);
      expect(result.seq).toBe(11);
      const captured = rgbaOf(owned.bytes, XRGB);
      expect(Buffer.from(captured).equals(Buffer.from(renderExpected(W, H, XRGB, 11)))).toBe(true);
      const grim = await sway.capture();
      expect([grim.width, grim.height]).toEqual([W, H]);
      expect(rgbMismatches(grim.data, captured)).toBe(0);
    } finally {
      session.stop();
      presenter.close();
      owned.close();
      guest.close();
    }
  }, 30_000);

  it('a FrameTee gives a QEMU-style source both sinks, committed following the presenter', async () => {
    const presenter = await openPresenter(sway.socket, { fullscreen: true });
    const session = new CaptureSession();
    const tee = new FrameTee(presenter, session);
    const guest = makeGuest(W, H);
    const committed: number[] = [];
    tee.on('committed', (f) => committed.push(f.seq));
    try {
      const frame = guest.drawNext()!;
      tee.present(frame);
      const owned = allocateShmBuffer(W, H, XRGB);
      const result = await session.capture(session.lend(owned.description));
      owned.close();
      expect(result.seq).toBe(frame.seq);
      await waitFor('the commit', () => committed.length > 0);
      expect(committed).toEqual([frame.seq]);
    } finally {
      tee.close();
      session.stop();
      presenter.close();
      guest.close();
    }
  }, 30_000);
});
