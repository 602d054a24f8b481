// Lab tier: captures into lent dmabufs — udmabuf-backed and GBM-allocated on vgem — by the CPU (mmap +
// DMA_BUF_IOCTL_SYNC) and by the GPU blit (EGL on vgem's card node, kms_swrast); bottom-up (y0_top = false) guest
// frames come out upright; XRGB8888 → ABGR8888 conversion; a dmabuf EGL refuses; a fenced guest frame.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureSession } from '../../src/capture/session.js';
import { CaptureError } from '../../src/capture/errors.js';
import { GpuCapture } from '../../src/capture/gpu-target.js';
import { runGuestHeadless } from '../../src/pipeline.js';
import { BuiltinGuest } from '../../src/source/builtin-guest.js';
import { BlobGuest } from '../../src/source/blob-guest.js';
import { BlobResource } from '../../src/source/blob-resource.js';
import type { BlobFrame } from '../../src/source/frame.js';
import { renderExpected } from '../../src/source/test-pattern.js';
import { toRgba } from '../../src/capture/png.js';
import { SwSyncTimeline } from '../../src/native/sync-file.js';
import { dmabufBeginCpuAccess, dmabufEndCpuAccess, udmabufCreate } from '../../src/native/dmabuf.js';
import { addSeals, close, constants, ftruncate, listOpenFds, memfdCreate, mmap, munmap, pwrite } from '../../src/native/fds.js';
import { formatByName, type PixelFormat } from '../../src/formats.js';
import type { LentDmabuf } from '../../src/capture/lent-buffer.js';

const W = 256;
const H = 160;
const XRGB = formatByName('XRGB8888')!;
const ABGR = formatByName('ABGR8888')!;
const SIZE = W * H * 4;

/** A lent dmabuf over a sealed memfd (udmabuf); the memfd is read back to check what the capture wrote. */
function udmabufTarget(format: PixelFormat): { desc: LentDmabuf; read(): Uint8Array; close(): void } {
  const memfd = memfdCreate('lent', true);
  ftruncate(memfd, SIZE);
  addSeals(memfd, constants.F_SEAL_SHRINK);
  const dmabuf = udmabufCreate(memfd, 0, SIZE);
  return {
    desc: { kind: 'dmabuf', width: W, height: H, fourcc: format.fourcc, modifier: 0n, planes: [{ fd: dmabuf, offset: 0, stride: W * 4 }] },
    read: () => {
      const map = mmap(memfd, 0, SIZE, false);
      const copy = new Uint8Array(map).slice();
      munmap(map);
      return copy;
    },
    close: () => { close(dmabuf); close(memfd); },
  };
}

/** A lent dmabuf GBM allocated on vgem; read back through the dmabuf itself. */
function gbmTarget(gpu: GpuCapture, format: PixelFormat): { desc: LentDmabuf; read(): Uint8Array; close(): void } {
  const bo = gpu.blitter.allocate(W, H, format.fourcc);
  const plane = bo.planes[0];
  return {
    desc: { kind: 'dmabuf', width: W, height: H, fourcc: format.fourcc, modifier: bo.modifier, planes: [plane] },
    read: () => {
      dmabufBeginCpuAccess(plane.fd, 'read');
      const map = mmap(plane.fd, 0, plane.offset + plane.stride * H, false);
      const out = new Uint8Array(SIZE);
      for (let y = 0; y < H; y++) out.set(new Uint8Array(map, plane.offset + y * plane.stride, W * 4), y * W * 4);
      munmap(map);
      dmabufEndCpuAccess(plane.fd, 'read');
      return out;
    },
    close: () => bo.planes.forEach((p) => close(p.fd)),
  };
}

function expectPattern(bytes: Uint8Array, format: PixelFormat, frame: number): void {
  const rgba = toRgba(bytes, W, H, W * 4, format);
  expect(Buffer.from(rgba).equals(Buffer.from(renderExpected(W, H, XRGB, frame))), `frame ${frame} pixel-exact`).toBe(true);
}

describe('capture into lent dmabufs (lab)', () => {
  let gpu: GpuCapture;
  let baseline: number[];
  beforeAll(() => {
    gpu = GpuCapture.tryOpen()!;
    expect(gpu, 'the lab opens a GPU blitter (vgem card node, kms_swrast)').not.toBeNull();
    baseline = listOpenFds();
  });
  afterAll(() => {
    expect(listOpenFds()).toEqual(baseline);
    gpu?.close();
  });

  const paths = [
    ['CPU (mmap + DMA_BUF_IOCTL_SYNC)', false, 'dmabuf-mapped'],
    ['GPU blit (EGLImage)', true, 'dmabuf-gpu'],
  ] as const;

  describe.each(paths)('%s', (_name, useGpu, access) => {
    const session = (formats?: number[]): CaptureSession =>
      new CaptureSession({ formats, gpuImport: useGpu ? gpu.importTarget : undefined });

    it.each([
      ['udmabuf-backed', XRGB],
      ['udmabuf-backed, XRGB8888 → ABGR8888', ABGR],
      ['GBM-allocated on vgem', XRGB],
      ['GBM-allocated on vgem, XRGB8888 → ABGR8888', ABGR],
    ] as const)('%s: pixel-exact', async (kind, format) => {
      const guest = new BuiltinGuest({ width: W, height: H, format: XRGB, buffers: 3 });
      const s = session([format.fourcc]);
      const run = runGuestHeadless(guest, s, { fps: 1000 });
      const target = kind.startsWith('GBM') ? gbmTarget(gpu, format) : udmabufTarget(format);
      try {
        const buffer = s.lend(target.desc);
        expect(buffer.access).toBe(access);
        let result = await s.capture(buffer);
        expectPattern(target.read(), format, result.seq);
        for (let i = 0; i < 4; i++) result = await s.capture(buffer, 'next'); // partial updates (damage) too
        expectPattern(target.read(), format, result.seq);
        expect(result.bytesCopied).toBe(useGpu ? 0 : result.damage.reduce((n, r) => n + r.width * r.height * 4, 0));
      } finally {
        run.stop();
        s.stop();
        target.close();
        guest.close();
      }
    });

    it('a bottom-up (y0_top = false) guest frame comes out upright', async () => {
      // Guest memory holding the pattern's rows bottom to top, scanned out as a blob resource marked bottomUp.
      const memfd = memfdCreate('bottom-up guest', true);
      ftruncate(memfd, SIZE);
      addSeals(memfd, constants.F_SEAL_SHRINK);
      const rgba = renderExpected(W, H, XRGB, 7);
      const rows = Buffer.alloc(SIZE);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const i = (y * W + x) * 4;
          rows.set([rgba[i + 2], rgba[i + 1], rgba[i], 255], ((H - 1 - y) * W + x) * 4); // XRGB8888: B, G, R, X
        }
      }
      pwrite(memfd, rows, 0);
      const resource = new BlobResource({
        id: 1, width: W, height: H, fourcc: XRGB.fourcc, planes: [{ offset: 0, stride: W * 4 }],
        memory: [{ memfd, offset: 0, length: SIZE }], bottomUp: true,
      });
      let released = 0;
      const frame: BlobFrame = { resource, damage: null, seq: 7, flushedAt: process.hrtime.bigint(), acquireFence: null, release: () => { released++; } };
      const s = session();
      const target = udmabufTarget(XRGB);
      try {
        s.present(frame);
        const result = await s.capture(s.lend(target.desc));
        expect(result.yInverted).toBe(false);
        expectPattern(target.read(), XRGB, 7);
      } finally {
        s.stop();
        await new Promise((r) => setImmediate(r));
        expect(released).toBe(1);
        resource.unref();
        target.close();
        close(memfd);
      }
    });
  });

  it('a lent dmabuf EGL refuses (a tiled modifier on a linear buffer) is refused with EGL\'s reason', () => {
    const s = new CaptureSession({ gpuImport: gpu.importTarget });
    const target = udmabufTarget(XRGB);
    try {
      const X_TILED = 0x0100000000000001n;
      let error: CaptureError | null = null;
      try {
        s.lend({ ...target.desc, modifier: X_TILED });
      } catch (e) {
        error = e as CaptureError;
      }
      expect(error).toBeInstanceOf(CaptureError);
      expect(error!.code).toBe('import-failed');
      expect(error!.message).toMatch(/modifier 0x100000000000001 is not linear, so only the GPU blit could write it, and it failed: .*eglCreateImage/);
    } finally {
      s.stop();
      target.close();
    }
  });

  it('waits for a guest frame\'s sw_sync acquire fence before copying it', async () => {
    const timeline = new SwSyncTimeline();
    const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3, timeline, autoSignal: false });
    const s = new CaptureSession({ gpuImport: gpu.importTarget });
    const target = udmabufTarget(XRGB);
    guest.gpu.on('frame', (f) => s.present(f));
    try {
      const buffer = s.lend(target.desc);
      expect(guest.flushNext()).toBe(true);
      let done = false;
      const captured = s.capture(buffer).then((r) => { done = true; return r; });
      await new Promise((r) => setTimeout(r, 100));
      expect(done, 'not copied while the fence is unsignalled').toBe(false);
      timeline.advance();
      const result = await captured;
      expectPattern(target.read(), XRGB, result.seq);
    } finally {
      s.stop();
      target.close();
      guest.close();
      timeline.close();
    }
  });
});
