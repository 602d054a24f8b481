// Host tier: blob resources (validation, import, the virtio-gpu model) against real headless weston. This
// kernel has no udmabuf and no sw_sync: blobs take the wl_shm fallback here, and the fence tests use a fake
// fence (a socket that becomes readable), as their names say. The dmabuf path runs for real in the lab tier.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { BlobResource, type BlobResourceDescription } from '../src/source/blob-resource.js';
import { BlobGuest } from '../src/source/blob-guest.js';
import { ImportError } from '../src/import/errors.js';
import { importBlobAsDmabuf } from '../src/import/udmabuf.js';
import { memfdCreate, ftruncate, addSeals, close, constants, listOpenFds, socketpair, sendmsg } from '../src/native/fds.js';
import { udmabufCreate } from '../src/native/dmabuf.js';
import { SwSyncTimeline, syncFileInfo } from '../src/native/sync-file.js';
import { decodePattern, verifyPatternExact } from '../src/source/test-pattern.js';
import { runGuest } from '../src/pipeline.js';
import type { BlobFrame } from '../src/source/frame.js';
import { openPresenter, sleep, waitFor, XRGB } from './helpers.js';

const PAGE = constants.PAGE_SIZE;
const W = 320;
const H = 240;

function sealedMemfd(size: number, seals = constants.F_SEAL_SHRINK | constants.F_SEAL_GROW): number {
  const fd = memfdCreate('blob-test', true);
  ftruncate(fd, size);
  if (seals) addSeals(fd, seals);
  return fd;
}

describe('blob resource validation', () => {
  const size = 16 * PAGE;
  let memfd: number;
  let unsealed: number;
  beforeAll(() => {
    memfd = sealedMemfd(size);
    unsealed = sealedMemfd(size, 0);
  });
  afterAll(() => { close(memfd); close(unsealed); });

  const base = (): BlobResourceDescription => ({
    id: 7, width: 64, height: 64, fourcc: XRGB.fourcc, planes: [{ offset: 0, stride: 256 }],
    memory: [{ memfd, offset: 0, length: 4 * PAGE }],
  });
  const cases: [string, (d: BlobResourceDescription) => void, string, RegExp][] = [
    ['an unaligned range offset', (d) => { d.memory![0].offset = 100; }, 'unaligned', /range 0: offset 100 .* multiples of the 4096-byte page/],
    ['an unaligned range length', (d) => { d.memory![0].length = 4 * PAGE + 1; }, 'unaligned', /length 16385/],
    ['overlapping ranges', (d) => { d.memory = [{ memfd, offset: 0, length: 2 * PAGE }, { memfd, offset: PAGE, length: 2 * PAGE }]; },
      'overlapping', /range 1: \[4096, 12288\) overlaps range 0 \[0, 8192\)/],
    ['a range beyond the memfd', (d) => { d.memory![0].offset = 14 * PAGE; }, 'out-of-bounds', /\[57344, 73728\) is beyond the end of memfd fd \d+ \(size 65536\)/],
    ['an unsealed memfd', (d) => { d.memory![0].memfd = unsealed; }, 'unsealed-memfd', /is not sealed with F_SEAL_SHRINK/],
    ['a stride shorter than a row', (d) => { d.planes[0].stride = 200; }, 'bad-stride', /stride 200 is smaller than width 64 × 4 bytes \(256\)/],
    ['rows beyond the blob (stride/size mismatch)', (d) => { d.planes[0].stride = 512; }, 'out-of-bounds', /64 rows of stride 512 .* beyond the blob's 16384 bytes/],
    ['an unknown format', (d) => { d.fourcc = 0x20202020; }, 'unknown-format', /unknown pixel format/],
    ['a tiled modifier on guest memory', (d) => { d.modifier = 0x0100000000000001n; }, 'unsupported-modifier', /guest memory is linear, modifier 0x100000000000001/],
    ['the invalid modifier', (d) => { d.modifier = 0xffffffffffffffn; }, 'unsupported-modifier', /not a valid DRM format modifier/],
    ['two planes for a one-plane format', (d) => { d.planes.push({ offset: 0, stride: 256 }); }, 'bad-plane', /XRGB8888 has 1 plane, the description gives 2/],
    ['both backings', (d) => { d.dmabufs = [memfd]; }, 'bad-plane', /exactly one backing/],
    ['a zero width', (d) => { d.width = 0; }, 'bad-size', /width 0 is out of range/],
    ['a closed fd', (d) => { d.memory![0].memfd = 999_999; }, 'bad-fd', /fd 999999 cannot be used: .*EBADF/],
  ];
  it.each(cases)('refuses %s with a specific error and no fd leak', (_name, mutate, code, message) => {
    const before = listOpenFds();
    const desc = base();
    mutate(desc);
    let error: unknown;
    try {
      new BlobResource(desc);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ImportError);
    expect((error as ImportError).code).toBe(code);
    expect((error as ImportError).message).toMatch(message);
    expect((error as ImportError).message).toContain('blob resource 7');
    expect(listOpenFds()).toEqual(before);
  });

  it('accepts a valid description, owns dups of its fds and closes them at the last unref', () => {
    const before = listOpenFds();
    const resource = new BlobResource(base());
    expect(resource.memory![0].memfd).not.toBe(memfd);
    expect(listOpenFds().length).toBe(before.length + 1);
    resource.ref();
    resource.unref();
    expect(resource.alive).toBe(true);
    let destroyed = false;
    resource.on('destroyed', () => { destroyed = true; });
    resource.unref();
    expect(destroyed).toBe(true);
    expect(listOpenFds()).toEqual(before);
    expect(() => resource.unref()).toThrow(/unreferenced more often than referenced/);
  });
});

describe('dmabuf and fence plumbing on a kernel without them', () => {
  it('reports a missing /dev/udmabuf as a specific import error, matching the filesystem', () => {
    expect(fs.existsSync('/dev/udmabuf')).toBe(false);
    const memfd = sealedMemfd(4 * PAGE);
    const resource = new BlobResource({ id: 1, width: 32, height: 32, fourcc: XRGB.fourcc, planes: [{ offset: 0, stride: 128 }], memory: [{ memfd, offset: 0, length: 4 * PAGE }] });
    try {
      expect(() => importBlobAsDmabuf(resource)).toThrow(/blob resource 1 .*\/dev\/udmabuf does not exist/);
      expect(() => udmabufCreate(memfd, 0, PAGE)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'open(/dev/udmabuf)' }));
    } finally {
      resource.unref();
      close(memfd);
    }
  });

  it('gives errno errors for sync_file and sw_sync calls on fds that are not fences', () => {
    const [a, b] = socketpair();
    try {
      expect(() => syncFileInfo(a)).toThrow(expect.objectContaining({ syscall: 'ioctl(SYNC_IOC_FILE_INFO)' }));
      expect(SwSyncTimeline.available()).toBe(fs.existsSync('/sys/kernel/debug/sync/sw_sync'));
    } finally {
      close(a); close(b);
    }
  });
});

describe('blob guest on weston (wl_shm fallback: no linux-dmabuf here)', () => {
  let compositor: Compositor;
  beforeAll(async () => { compositor = await startWeston({ width: W, height: H }); }, 30_000);
  afterAll(async () => { await compositor?.stop(); });

  it('presents virtio-gpu blob flushes pixel-exact, one wl_buffer per resource, with the fallback reason', async () => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true });
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3 });
    try {
      await runGuest(guest, presenter, 60).done;
      await waitFor('the last frame on screen', () => presenter.stats.framesCommitted === 60);
      const image = await compositor.capture();
      const full = { x: 0, y: 0, width: W, height: H };
      expect(decodePattern(image, full)).toMatchObject({ ok: true, frame: 59 });
      expect(verifyPatternExact(image, full, XRGB).mismatches).toBe(0);
      // weston releases at once, so the guest may only ever need two of its three resources.
      const paths = [...presenter.paths.values()];
      expect(paths.length).toBeGreaterThanOrEqual(2);
      for (const p of paths) expect(p).toEqual({ path: 'shm', reason: 'the compositor offers no zwp_linux_dmabuf_v1' });
      expect(presenter.buffers.stats.poolsCreated).toBe(1);
      expect(presenter.buffers.stats.buffersCreated).toBe(paths.length);
      expect(guest.stats.flushes).toBe(60);
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);

  it('keeps presenting through guest churn beyond the idle-buffer limit: old buffers and emptied pools are destroyed', async () => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true });
    try {
      for (let i = 0; i < 15; i++) { // 15 guests × 3 buffers: beyond the 32 idle wl_buffers kept
        const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3, firstResourceId: i * 3 + 1 });
        await runGuest(guest, presenter, 4).done;
        guest.close();
      }
      const s = presenter.buffers.stats;
      expect(presenter.connection.failure).toBe(null);
      expect(s.buffersCreated).toBe(45);
      expect(s.buffersCreated - s.buffersDestroyed).toBeLessThanOrEqual(32 + 3); // idle ones kept + those the compositor holds
      expect(s.poolsDestroyed).toBeGreaterThan(0);
      expect(presenter.buffers.pools.size).toBe(s.poolsCreated - s.poolsDestroyed);
      await sleep(100);
      expect(decodePattern(await compositor.capture(), { x: 0, y: 0, width: W, height: H })).toMatchObject({ ok: true, frame: 3 });
    } finally {
      presenter.close();
    }
  }, 60_000);

  it('refuses a multi-range blob for wl_shm (it cannot be shown without a copy) and releases it', async () => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true });
    const memfd = sealedMemfd(64 * PAGE);
    const resource = new BlobResource({ id: 9, width: 64, height: 64, fourcc: XRGB.fourcc, planes: [{ offset: 0, stride: 256 }],
      memory: [{ memfd, offset: 0, length: 2 * PAGE }, { memfd, offset: 8 * PAGE, length: 2 * PAGE }] });
    let released = 0;
    try {
      const frame: BlobFrame = { resource, damage: null, seq: 0, flushedAt: 0n, acquireFence: null, release: () => { released++; } };
      expect(() => presenter.present(frame)).toThrow(/blob resource 9 .* cannot go to wl_shm without a copy: it is 2 memory ranges/);
      expect(released).toBe(1);
    } finally {
      presenter.close();
      resource.unref();
      close(memfd);
    }
  }, 30_000);

  it('fake fence (a socket, no sw_sync on this kernel): a frame is shown only once its fence is readable, without blocking the loop', async () => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true, fenceTimeoutMs: 5000 });
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3 });
    const frames: BlobFrame[] = [];
    guest.gpu.on('frame', (f) => frames.push(f));
    const full = { x: 0, y: 0, width: W, height: H };
    try {
      guest.flushNext();
      presenter.present(frames[0]);
      await waitFor('frame 0 committed', () => presenter.stats.framesCommitted === 1);
      await sleep(50);
      guest.flushNext();
      const [signal, fence] = socketpair();
      frames[1].acquireFence = fence;
      presenter.present(frames[1]);
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      await sleep(300);
      clearInterval(ticker);
      expect(ticks).toBeGreaterThan(15); // the event loop kept running while the fence was pending
      expect(presenter.stats.framesCommitted).toBe(1);
      expect(decodePattern(await compositor.capture(), full).frame).toBe(0);
      sendmsg(signal, new Uint8Array([1]));
      await waitFor('frame 1 committed', () => presenter.stats.framesCommitted === 2);
      await sleep(50);
      expect(decodePattern(await compositor.capture(), full).frame).toBe(1);
      expect(presenter.stats.fencesWaited).toBe(1);
      close(signal);
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);

  it('fake fence that never signals: the frame is dropped and released at the deadline, the last good frame stays', async () => {
    const presenter = await openPresenter(compositor.socket, { fullscreen: true, fenceTimeoutMs: 200 });
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3 });
    const frames: BlobFrame[] = [];
    guest.gpu.on('frame', (f) => frames.push(f));
    const full = { x: 0, y: 0, width: W, height: H };
    const [signal, fence] = socketpair();
    const before = listOpenFds().length;
    try {
      guest.flushNext();
      presenter.present(frames[0]);
      await waitFor('frame 0 committed', () => presenter.stats.framesCommitted === 1);
      guest.flushNext();
      frames[1].acquireFence = fence;
      presenter.present(frames[1]);
      expect(guest.heldBuffers).toBe(2);
      await waitFor('the fence deadline', () => presenter.stats.fencesTimedOut === 1, 2000);
      await waitFor('frame 1 released to the guest', () => guest.heldBuffers === 1);
      expect(listOpenFds().length).toBe(before - 1); // the host closed the fence it owned
      expect(presenter.stats.framesCommitted).toBe(1);
      expect(decodePattern(await compositor.capture(), full).frame).toBe(0);
    } finally {
      close(signal);
      presenter.close();
      guest.close();
    }
  }, 30_000);
});
