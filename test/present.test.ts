// Host tier: the wl_shm presenter against real headless weston and sway, checked through each compositor's
// own capture (weston-screenshooter, grim).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSway, startWeston, type Compositor } from '../src/embedded/compositors.js';
import { FORMATS } from '../src/formats.js';
import { fstat } from '../src/native/fds.js';
import { decodePattern, verifyPatternExact } from '../src/source/test-pattern.js';
import { runGuest } from '../src/pipeline.js';
import { makeGuest, openPresenter, showNext, waitFor, XRGB } from './helpers.js';

const W = 640;
const H = 480;
const full = { x: 0, y: 0, width: W, height: H };

describe.each([
  ['weston', () => startWeston({ width: W, height: H })],
  ['sway', () => startSway({ width: W, height: H })],
] as const)('wl_shm presenter on %s', (_name, start) => {
  let compositor: Compositor;
  beforeAll(async () => { compositor = await start(); }, 30_000);
  afterAll(async () => { await compositor?.stop(); });

  it.each(FORMATS.map((f) => [f.name, f] as const))('shows guest frames pixel-exact in %s', async (_f, format) => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true });
    const guest = makeGuest(W, H, format);
    try {
      await runGuest(guest, presenter, 20).done;
      const image = await compositor.capture();
      const decoded = decodePattern(image, full);
      expect(decoded.ok, `checksum of the captured frame ${decoded.frame}`).toBe(true);
      expect(decoded.frame).toBe(19);
      const exact = verifyPatternExact(image, full, format);
      expect(exact.mismatches, JSON.stringify(exact.firstMismatch)).toBe(0);
      expect(presenter.buffers.stats.reuseWhileHeld).toBe(0);
      if (compositor.kind === 'weston') {
        expect(presenter.stats.framesPresented).toBeGreaterThan(10);
        expect(presenter.stats.lastPresented!.refresh).toBe(16_666_666);
        expect(presenter.stats.lastPresented!.latency).toBeGreaterThan(0n);
      } else {
        // sway 1.7 headless never answers wp_presentation feedback: we must not pile requests up.
        expect(presenter.stats.feedbackOutstanding).toBeLessThanOrEqual(16);
      }
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);

  it('shares the guest memfd with the compositor instead of copying it', async () => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true });
    const guest = makeGuest(W, H);
    try {
      const frame = await showNext(guest, presenter);
      const st = fstat(guest.memfd);
      expect([...presenter.buffers.pools.keys()]).toEqual([`${st.dev}:${st.ino}`]);
      const created = presenter.buffers.stats.buffersCreated;
      // Write straight into guest RAM under the buffer the compositor shows, then flush only that damage.
      const bytes = guest.bufferBytes(frame);
      const rect = { x: 100, y: 200, width: 50, height: 40 };
      const red = XRGB.pack(255, 0, 0, 255);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let y = rect.y; y < rect.y + rect.height; y++) {
        for (let x = rect.x; x < rect.x + rect.width; x++) view.setUint32(y * guest.stride + x * 4, red, true);
      }
      const done = new Promise((r) => presenter.once('frame-done', r));
      presenter.present({ ...frame, damage: [rect], seq: frame.seq + 1, release: () => {} });
      await done;
      const image = await compositor.capture();
      const at = (x: number, y: number) => [...image.data.subarray((y * W + x) * 4, (y * W + x) * 4 + 3)];
      expect(at(rect.x, rect.y)).toEqual([255, 0, 0]);
      expect(at(rect.x + rect.width - 1, rect.y + rect.height - 1)).toEqual([255, 0, 0]);
      expect(at(rect.x + rect.width, rect.y)).not.toEqual([255, 0, 0]);
      expect(presenter.buffers.stats.buffersCreated).toBe(created);
      expect(presenter.buffers.stats.poolsCreated).toBe(1);
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);
});

describe('window sizing on sway', () => {
  let sway: Compositor;
  beforeAll(async () => { sway = await startSway({ width: W, height: H }); }, 30_000);
  afterAll(async () => { await sway?.stop(); });

  /** Bounding box of the pixels that differ from the corner pixel (sway's background, or the guest's black header). */
  function litBounds(image: { width: number; height: number; data: Uint8Array }) {
    let x0 = image.width, y0 = image.height, x1 = -1, y1 = -1;
    const bg = image.data.subarray(0, 3);
    for (let y = 0; y < image.height; y++) {
      for (let x = 0; x < image.width; x++) {
        const i = (y * image.width + x) * 4;
        if ([0, 1, 2].some((c) => Math.abs(image.data[i + c] - bg[c]) > 8)) {
          x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
        }
      }
    }
    return { width: x1 - x0 + 1, height: y1 - y0 + 1 };
  }

  it('rescales through the viewport on resize, without new guest buffers', async () => {
    const presenter = await openPresenter(sway.socket);
    const guest = makeGuest(320, 240);
    try {
      // Tiled: sway configures the whole 640x480 output, the 320x240 guest is scaled 2x.
      const run = runGuest(guest, presenter);
      await waitFor('the tiled configure', () => presenter.window.configuredSize.width === W);
      await waitFor('a few frames', () => presenter.stats.framesCommitted >= 5);
      expect(litBounds(await sway.capture())).toEqual({ width: W, height: H });

      const destinations: unknown[] = [];
      presenter.on('configured', (dest) => destinations.push(dest));
      await sway.swaymsg!('[app_id=wlscanout-test]', 'floating', 'enable', ',', 'resize', 'set', '400', '300');
      await waitFor('the 400x300 configure', () => presenter.window.configuredSize.width === 400);
      expect(destinations.at(-1)).toEqual({ width: 400, height: 300 });
      const committed = presenter.stats.framesCommitted;
      await waitFor('frames after the resize', () => presenter.stats.framesCommitted >= committed + 5);
      expect(litBounds(await sway.capture())).toEqual({ width: 400, height: 300 });
      run.stop();
      // One wl_buffer per guest scan-out buffer (3), one pool on the guest memfd, whatever the window size.
      expect(presenter.buffers.stats.buffersCreated).toBeLessThanOrEqual(3);
      expect(presenter.buffers.stats.poolsCreated).toBe(1);
      expect(guest.ramSize).toBe(3 * Math.ceil((320 * 240 * 4) / 4096) * 4096);
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);

  it('toggles fullscreen and shows the guest 1:1', async () => {
    const presenter = await openPresenter(sway.socket);
    const guest = makeGuest(W, H);
    try {
      const run = runGuest(guest, presenter);
      presenter.setFullscreen(true);
      await waitFor('fullscreen', () => presenter.window.fullscreen);
      const seen = presenter.stats.framesCommitted;
      await waitFor('frames in fullscreen', () => presenter.stats.framesCommitted >= seen + 3);
      run.stop();
      await waitFor('the last frame', () => guest.heldBuffers <= 2);
      const image = await sway.capture();
      expect(verifyPatternExact(image, full, XRGB).mismatches).toBe(0);
      presenter.setFullscreen(false);
      await waitFor('leaving fullscreen', () => !presenter.window.fullscreen);
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);

  it('keeps guest pixels 1:1 on a scale-2 output', async () => {
    await sway.swaymsg!('output', 'HEADLESS-1', 'scale', '2');
    const presenter = await openPresenter(sway.socket, { fullscreen: true });
    const guest = makeGuest(W, H);
    try {
      const run = runGuest(guest, presenter);
      await waitFor('the output scale', () => presenter.window.preferredScale120 === 240);
      const committed = presenter.stats.framesCommitted;
      await waitFor('frames at scale 2', () => presenter.stats.framesCommitted >= committed + 3);
      run.stop();
      expect(presenter.window.configuredSize).toEqual({ width: W / 2, height: H / 2 }); // logical size
      expect(verifyPatternExact(await sway.capture(), full, XRGB).mismatches).toBe(0);
    } finally {
      presenter.close();
      guest.close();
      await sway.swaymsg!('output', 'HEADLESS-1', 'scale', '1');
    }
  }, 30_000);
});
