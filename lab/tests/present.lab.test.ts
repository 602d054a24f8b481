// Lab tier: blob frames imported through udmabuf and presented as linux-dmabuf buffers to weston --use-gl
// (Mesa kms_swrast on vgem), read back through weston's screenshooter; fences are real sw_sync fences.
import fs from 'node:fs';
import { encodePng } from '../../src/capture/png.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../../src/embedded/compositors.js';
import { Presenter, type PresenterOptions } from '../../src/present/presenter.js';
import { BlobGuest } from '../../src/source/blob-guest.js';
import { SwSyncTimeline } from '../../src/native/sync-file.js';
import { decodePattern, verifyPatternExact } from '../../src/source/test-pattern.js';
import { runGuest } from '../../src/pipeline.js';
import { formatByName } from '../../src/formats.js';
import type { BlobFrame } from '../../src/source/frame.js';

const W = 320;
const H = 240;
const XRGB = formatByName('XRGB8888')!;
const full = { x: 0, y: 0, width: W, height: H };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

describe('linux-dmabuf presenter on weston --use-gl', () => {
  let weston: Compositor;
  beforeAll(async () => { weston = await startWeston({ width: W, height: H, renderer: 'gl' }); });
  afterAll(async () => { await weston?.stop(); });

  async function open(options: Partial<PresenterOptions> = {}): Promise<Presenter> {
    const presenter = await Presenter.open({ display: weston.socket, title: 'lab', fullscreen: true, ...options });
    await waitFor('configure', () => presenter.window.configured);
    return presenter;
  }

  it('offers linux-dmabuf with linear XRGB8888', async () => {
    const presenter = await open();
    try {
      expect(presenter.globals.linuxDmabuf?.version).toBeGreaterThanOrEqual(3);
      expect(presenter.globals.dmabufFormats.accepts(XRGB.fourcc, 0n)).toBe(true);
    } finally {
      presenter.close();
    }
  });

  it('shows blob frames through udmabuf pixel-exact, importing each resource once', async () => {
    const presenter = await open();
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3 });
    try {
      await runGuest(guest, presenter, 30).done;
      await waitFor('frame 29 committed', () => presenter.stats.framesCommitted === 30);
      await sleep(100);
      const image = await weston.capture();
      fs.writeFileSync('/mnt/dmabuf-frame-29.png', encodePng(image));
      const exact = verifyPatternExact(image, full, XRGB);
      expect(decodePattern(image, full)).toMatchObject({ ok: true, frame: 29 });
      expect(exact.mismatches, JSON.stringify(exact.firstMismatch)).toBe(0);
      const paths = [...presenter.paths.values()];
      expect(paths.every((p) => p.path === 'dmabuf')).toBe(true);
      expect(presenter.dmabufBuffers!.stats.imports).toBe(paths.length);
      expect(presenter.buffers.stats.buffersCreated).toBe(0); // nothing went through wl_shm
    } finally {
      presenter.close();
      guest.close();
    }
  });

  for (const fenceWait of ['client', 'auto'] as const) {
    it(`does not show a frame before its sw_sync fence signals (fence wait: ${fenceWait})`, async () => {
      const presenter = await open({ fenceWait, fenceTimeoutMs: 10_000 });
      const timeline = new SwSyncTimeline();
      const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3, timeline, autoSignal: false });
      const frames: BlobFrame[] = [];
      guest.gpu.on('frame', (f) => { frames.push(f); presenter.present(f); });
      try {
        guest.flushNext();
        timeline.advance(); // frame 0's fence
        await waitFor('frame 0 committed', () => presenter.stats.framesCommitted === 1);
        await sleep(200);
        expect(decodePattern(await weston.capture(), full)).toMatchObject({ ok: true, frame: 0 });
        guest.flushNext(); // frame 1, fence held
        await sleep(500);
        expect(decodePattern(await weston.capture(), full)).toMatchObject({ ok: true, frame: 0 });
        timeline.advance();
        await waitFor('frame 1 shown', () => presenter.stats.framesCommitted === 2);
        await sleep(300);
        expect(decodePattern(await weston.capture(), full)).toMatchObject({ ok: true, frame: 1 });
        console.log(`fence wait ${fenceWait}: explicit sync ${JSON.stringify(presenter.explicitSync)}`);
        if (presenter.explicitSync.usable) {
          expect(fenceWait).toBe('auto');
          expect(presenter.stats.fencesPassed).toBe(2); // the compositor waited, not us
        } else {
          expect(presenter.stats.fencesWaited).toBe(2);
        }
      } finally {
        presenter.close();
        guest.close();
        timeline.close();
      }
    });
  }

  it('never lets the guest write a buffer the compositor holds: 1,000 frames at full speed over 3 resources, 3 imports', async () => {
    const presenter = await open();
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3 });
    let violations = 0;
    let checked = 0;
    const drawNext = guest.ram.drawNext.bind(guest.ram);
    guest.ram.drawNext = () => {
      // Before the guest draws: the slot it will use must not be a buffer the presenter saw the compositor hold.
      const frame = drawNext();
      if (frame) {
        const id = guest.resourceIds.get(frame.offset);
        for (const [resource, buffer] of presenter.dmabufBuffers!.buffers) {
          if (resource.id === id && buffer.busy) violations++;
        }
        checked++;
      }
      return frame;
    };
    try {
      await runGuest(guest, presenter, 1000).done;
      await waitFor('the last frame committed', () => presenter.stats.framesCommitted + presenter.stats.framesSkipped >= 1000);
      expect(checked).toBe(1000);
      expect(violations).toBe(0);
      expect(presenter.dmabufBuffers!.stats.reuseWhileHeld).toBe(0);
      expect(presenter.dmabufBuffers!.stats.imports).toBe(3);
      expect(guest.stats.flushes).toBe(1000);
    } finally {
      presenter.close();
      guest.close();
    }
  });
});
