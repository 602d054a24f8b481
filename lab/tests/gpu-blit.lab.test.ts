// Lab tier: GpuBlitter (native/src/gpu_blit.cc) on real dma-bufs. What works in the lab VM (Mesa 22.3, no GPU):
// - EGL on the GBM platform of vgem's primary node (card0): GBM finds no vgem DRI driver ("MESA-LOADER: failed
//   to open vgem" on stderr) and falls back to kms_swrast (llvmpipe) by itself, with no environment variable.
//   vkms's card node works the same way.
// - Not vgem's render node: kms_swrast maps buffers with DRM_IOCTL_MODE_MAP_DUMB, which DRM refuses on render
//   nodes, and crashed (SIGSEGV) on the first draw there; open() refuses it, so the default order (renderD*, then
//   card*) lands on card0.
// - EGL_ANDROID_native_fence_sync is absent (llvmpipe has no native fences): blit() finishes with glFinish and
//   returns null.
// - GBM allocations are linear dumb buffers; gbm_bo_create_with_modifiers is ENOSYS there (a list that allows
//   LINEAR falls back to a linear buffer). gbm_bo_get_fd's dma-bufs are read-only (mmap for writing: EACCES);
//   allocate() exports read-write ones itself.
// Images are mapped only briefly (map, copy, unmap): the lab kernel dislikes dma-buf mappings that outlive their users.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, expectNoFdLeaksPerTest } from '../../test/native-helpers.js';
import { GpuBlitter, type DmabufDescription, type GpuImage } from '../../src/native/gpu-blit.js';
import { listDrmNodes, type DrmNode } from '../../src/native/drm.js';
import { dmabufBeginCpuAccess, dmabufEndCpuAccess, udmabufCreate } from '../../src/native/dmabuf.js';
import { addSeals, close, constants, ftruncate, listOpenFds, memfdCreate, mmap, munmap, pwrite } from '../../src/native/fds.js';
import { formatByName } from '../../src/formats.js';

const PAGE = constants.PAGE_SIZE;
const XRGB = formatByName('XRGB8888')!.fourcc;
const ARGB = formatByName('ARGB8888')!.fourcc;
const ABGR = formatByName('ABGR8888')!.fourcc;
const W = 64;
const H = 48;

expectNoFdLeaksPerTest();

/** A sealed memfd and a udmabuf over it, large enough for `bytes`. */
interface Udmabuf {
  memfd: number;
  dmabuf: number;
  size: number;
}

function makeUdmabuf(bytes: number, fill?: Uint8Array): Udmabuf {
  const size = Math.ceil(bytes / PAGE) * PAGE;
  const memfd = memfdCreate('gpu-blit-lab', true);
  ftruncate(memfd, size);
  addSeals(memfd, constants.F_SEAL_SHRINK);
  if (fill) pwrite(memfd, fill, 0);
  return { memfd, dmabuf: udmabufCreate(memfd, 0, size), size };
}

function freeUdmabuf(u: Udmabuf): void {
  close(u.dmabuf);
  close(u.memfd);
}

/** Copies [0, length) of a memfd through a short-lived mapping. */
function readMemfd(memfd: number, length: number): Buffer {
  const map = mmap(memfd, 0, length, false);
  const copy = Buffer.from(new Uint8Array(map).slice());
  munmap(map);
  return copy;
}

/** Copies [0, length) of a dma-buf through a short-lived mapping, inside a CPU-access bracket. */
function readDmabuf(fd: number, length: number): Buffer {
  dmabufBeginCpuAccess(fd, 'read');
  try {
    return readMemfd(fd, length);
  } finally {
    dmabufEndCpuAccess(fd, 'read');
  }
}

/** A width x height 32-bit image with rows `stride` apart: pseudo-random pixels, padding bytes 0xee. */
function pattern(width: number, height: number, stride: number, seed: number): Buffer {
  const bytes = Buffer.alloc(stride * height, 0xee);
  let state = seed >>> 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width * 4; x++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      bytes[y * stride + x] = state >>> 24;
    }
  }
  return bytes;
}

/** The pixel at (x, y) of a 32-bit image as its 4 bytes. */
function pixel(bytes: Uint8Array, stride: number, x: number, y: number): number[] {
  const at = y * stride + x * 4;
  return [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
}

/** Compares every pixel of a width x height area: null when equal, else the first difference, in words. */
function firstDifference(got: Uint8Array, gotStride: number, want: (x: number, y: number) => number[],
  width = W, height = H): string | null {
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const g = pixel(got, gotStride, x, y);
      const w = want(x, y);
      if (g.some((v, i) => v !== w[i])) return `pixel (${x}, ${y}): got [${g}], want [${w}]`;
    }
  }
  return null;
}

function udmabufDescription(u: Udmabuf, fourcc: number, stride: number, width = W, height = H): DmabufDescription {
  return { width, height, fourcc, modifier: 0n, planes: [{ fd: u.dmabuf, offset: 0, stride }] };
}

describe('GpuBlitter in the lab', () => {
  let vgem: DrmNode;
  let blitter: GpuBlitter;
  const images: GpuImage[] = [];
  const keep = <T extends GpuImage>(image: T): T => {
    images.push(image);
    return image;
  };

  beforeAll(() => {
    vgem = listDrmNodes().find((n) => n.driver === 'vgem' && n.kind === 'primary')!;
    expect(vgem, 'the lab has a vgem card node').toBeDefined();
    blitter = GpuBlitter.open();
  });
  afterAll(() => blitter?.close());
  // Each test's images go before the fd check (kms_swrast keeps its own references to imported dma-bufs).
  const destroyImages = () => images.splice(0).forEach((image) => blitter.destroyImage(image));

  it('opens on the vgem card node (GBM platform, kms_swrast) by default, refusing the render node', () => {
    expect(blitter.info).toEqual({
      device: vgem.path, driver: 'kms_swrast', platform: 'gbm', gbm: true, importModifiers: true, nativeFenceSync: false,
    });
    const render = listDrmNodes().find((n) => n.driver === 'vgem' && n.kind === 'render')!;
    expect(errorOf(() => GpuBlitter.open({ device: render.path })).message).toBe(`GpuBlitter on ${render.path}: ` +
      'kms_swrast (software rendering) cannot map buffers through a render node (DRM refuses DRM_IOCTL_MODE_MAP_DUMB ' +
      'there): use the card node of the same device');
    const second = GpuBlitter.open({ device: vgem.path }); // a second blitter, closed again, leaves the first working
    second.close();
    second.close();
  });

  it('blits a udmabuf onto another udmabuf pixel-exact (strides differ, X bytes ignored)', () => {
    const srcStride = W * 4 + 64;
    const dstStride = W * 4;
    const srcPixels = pattern(W, H, srcStride, 1);
    const src = makeUdmabuf(srcStride * H, srcPixels);
    const dst = makeUdmabuf(dstStride * H + PAGE, Buffer.alloc(dstStride * H, 0x55)); // a page more than needed
    try {
      const s = keep(blitter.importDmabuf(udmabufDescription(src, XRGB, srcStride)));
      const d = keep(blitter.importDmabuf(udmabufDescription(dst, ARGB, dstStride)));
      expect([s.width, s.height, s.fourcc]).toEqual([W, H, XRGB]);
      expect(blitter.blit(s, d, { yFlip: false, rects: null })).toBeNull(); // no native fences: done on return
      const out = readMemfd(dst.memfd, dstStride * H);
      // XRGB8888 into ARGB8888: the same B, G, R bytes, and alpha 0xff whatever the source's X byte was.
      expect(firstDifference(out, dstStride, (x, y) => [...pixel(srcPixels, srcStride, x, y).slice(0, 3), 0xff])).toBeNull();
      // The source's padding is not read, the destination's bytes beyond the image are not written.
      expect(readMemfd(dst.memfd, dst.size).subarray(dstStride * H).every((b) => b === 0)).toBe(true);
    } finally {
      destroyImages();
      freeUdmabuf(src);
      freeUdmabuf(dst);
    }
  });

  it('allocates a linear read-write buffer with GBM on vgem: drawn into and read back, CPU-filled and blitted from, pixel-exact', () => {
    const srcPixels = pattern(W, H, W * 4, 2);
    let buffer: DmabufDescription | undefined;
    try {
      buffer = blitter.allocate(W, H, ARGB);
      expect(buffer).toMatchObject({ width: W, height: H, fourcc: ARGB, modifier: 0n });
      expect(buffer.planes).toHaveLength(1);
      const { fd, offset, stride } = buffer.planes[0];
      expect(offset).toBe(0);
      expect(stride).toBeGreaterThanOrEqual(W * 4);
      expect(listOpenFds()).toContain(fd);
      const s = keep(blitter.upload(srcPixels, W, H, W * 4, ARGB));
      const d = keep(blitter.importDmabuf(buffer));
      expect(blitter.blit(s, d, { yFlip: false, rects: null })).toBeNull();
      const out = readDmabuf(fd, stride * H);
      expect(firstDifference(out, stride, (x, y) => pixel(srcPixels, W * 4, x, y))).toBeNull(); // alpha kept too
      // The other way: the plane fd is read-write, so the CPU can fill the buffer, which is then a blit source.
      const cpuPixels = pattern(W, H, stride, 7);
      dmabufBeginCpuAccess(fd, 'write');
      const map = mmap(fd, 0, stride * H, true);
      new Uint8Array(map).set(cpuPixels);
      munmap(map);
      dmabufEndCpuAccess(fd, 'write');
      const back = makeUdmabuf(W * 4 * H);
      try {
        const b = keep(blitter.importDmabuf(udmabufDescription(back, ARGB, W * 4)));
        blitter.blit(d, b, { yFlip: false, rects: null });
        expect(firstDifference(readMemfd(back.memfd, W * 4 * H), W * 4, (x, y) => pixel(cpuPixels, stride, x, y))).toBeNull();
      } finally {
        destroyImages();
        freeUdmabuf(back);
      }
      // A modifier list that allows LINEAR gets a linear buffer (kms_swrast has no gbm_bo_create_with_modifiers).
      const listed = blitter.allocate(16, 16, XRGB, [0n]);
      expect(listed.modifier).toBe(0n);
      listed.planes.forEach((p) => close(p.fd));
      expect(() => blitter.allocate(16, 16, XRGB, [0x0100000000000001n])).toThrow(
        `gbm_bo_create_with_modifiers failed for 16x16 XR24 modifiers [0x100000000000001] on ${vgem.path}: Function not implemented`);
    } finally {
      destroyImages();
      buffer?.planes.forEach((p) => close(p.fd));
    }
  });

  it('turns a bottom-up source upright with yFlip', () => {
    const upright = pattern(W, H, W * 4, 3);
    const bottomUp = Buffer.alloc(W * 4 * H);
    for (let y = 0; y < H; y++) upright.copy(bottomUp, (H - 1 - y) * W * 4, y * W * 4, (y + 1) * W * 4);
    const src = makeUdmabuf(W * 4 * H, bottomUp);
    const dst = makeUdmabuf(W * 4 * H);
    try {
      const s = keep(blitter.importDmabuf(udmabufDescription(src, ARGB, W * 4)));
      const d = keep(blitter.importDmabuf(udmabufDescription(dst, ARGB, W * 4)));
      blitter.blit(s, d, { yFlip: true, rects: null });
      expect(firstDifference(readMemfd(dst.memfd, W * 4 * H), W * 4, (x, y) => pixel(upright, W * 4, x, y))).toBeNull();
      blitter.blit(s, d, { yFlip: false, rects: null }); // and without: bottom-up stays bottom-up
      expect(firstDifference(readMemfd(dst.memfd, W * 4 * H), W * 4, (x, y) => pixel(bottomUp, W * 4, x, y))).toBeNull();
    } finally {
      destroyImages();
      freeUdmabuf(src);
      freeUdmabuf(dst);
    }
  });

  it('converts XRGB8888 to ABGR8888 byte for byte', () => {
    const srcPixels = pattern(W, H, W * 4, 4);
    const src = makeUdmabuf(W * 4 * H, srcPixels);
    const dst = makeUdmabuf(W * 4 * H);
    try {
      const s = keep(blitter.importDmabuf(udmabufDescription(src, XRGB, W * 4)));
      const d = keep(blitter.importDmabuf(udmabufDescription(dst, ABGR, W * 4)));
      blitter.blit(s, d, { yFlip: false, rects: null });
      // XRGB8888 is B, G, R, X in memory; ABGR8888 is R, G, B, A.
      expect(firstDifference(readMemfd(dst.memfd, W * 4 * H), W * 4, (x, y) => {
        const [b, g, r] = pixel(srcPixels, W * 4, x, y);
        return [r, g, b, 0xff];
      })).toBeNull();
    } finally {
      destroyImages();
      freeUdmabuf(src);
      freeUdmabuf(dst);
    }
  });

  it('draws only inside the rects (source coordinates; with yFlip a rect at y lands at height - y - h)', () => {
    const srcPixels = pattern(W, H, W * 4, 5);
    const src = makeUdmabuf(W * 4 * H, srcPixels);
    const dst = makeUdmabuf(W * 4 * H);
    const rects = [{ x: 3, y: 5, width: 10, height: 7 }, { x: 40, y: 30, width: 30, height: 30 }]; // the 2nd is clipped
    const inside = (x: number, y: number) => rects.some((r) => x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height);
    const untouched = [0x55, 0x55, 0x55, 0x55];
    try {
      const s = keep(blitter.importDmabuf(udmabufDescription(src, ARGB, W * 4)));
      const d = keep(blitter.importDmabuf(udmabufDescription(dst, ARGB, W * 4)));
      pwrite(dst.memfd, Buffer.alloc(W * 4 * H, 0x55), 0);
      blitter.blit(s, d, { yFlip: false, rects });
      expect(firstDifference(readMemfd(dst.memfd, W * 4 * H), W * 4,
        (x, y) => (inside(x, y) ? pixel(srcPixels, W * 4, x, y) : untouched))).toBeNull();

      pwrite(dst.memfd, Buffer.alloc(W * 4 * H, 0x55), 0);
      blitter.blit(s, d, { yFlip: true, rects });
      expect(firstDifference(readMemfd(dst.memfd, W * 4 * H), W * 4,
        (x, y) => (inside(x, H - 1 - y) ? pixel(srcPixels, W * 4, x, H - 1 - y) : untouched))).toBeNull();

      pwrite(dst.memfd, Buffer.alloc(W * 4 * H, 0x55), 0);
      blitter.blit(s, d, { yFlip: false, rects: [] }); // no rects: nothing drawn
      expect(readMemfd(dst.memfd, W * 4 * H).every((b) => b === 0x55)).toBe(true);
    } finally {
      destroyImages();
      freeUdmabuf(src);
      freeUdmabuf(dst);
    }
  });

  it('refuses bad imports and bad blits with specific errors, leaking no fds', () => {
    const before = listOpenFds();
    const buffer = makeUdmabuf(W * 4 * H); // exactly 3 pages
    const memfd = memfdCreate('plain-memory', true);
    ftruncate(memfd, W * 4 * H);
    try {
      const small = errorOf(() => blitter.importDmabuf(udmabufDescription(buffer, XRGB, 16)));
      expect(small).toBeInstanceOf(RangeError);
      expect(small.message).toBe('cannot import 64x48 XR24 modifier 0x0: stride 16 is less than a row (256 bytes)');
      expect(errorOf(() => blitter.importDmabuf(udmabufDescription(buffer, XRGB, W * 4, W, H + 1))).message).toBe(
        `cannot import 64x49 XR24 modifier 0x0: offset 0 and stride 256 need 12544 bytes, fd ${buffer.dmabuf} has 12288`);
      const notDmabuf = { width: W, height: H, fourcc: XRGB, modifier: 0n, planes: [{ fd: memfd, offset: 0, stride: W * 4 }] };
      expect(errorOf(() => blitter.importDmabuf(notDmabuf)).message).toBe('eglCreateImageKHR failed: EGL_BAD_ALLOC for ' +
        `64x48 XR24 modifier 0x0 (fd ${memfd} is not a dma-buf: /memfd:plain-memory (deleted))`);
      expect(() => blitter.importDmabuf({ ...udmabufDescription(buffer, XRGB, W * 4), modifier: -1n })).toThrow(
        'modifier must fit in 64 bits (got -1)');

      const a = keep(blitter.importDmabuf(udmabufDescription(buffer, XRGB, W * 4)));
      const b = keep(blitter.upload(Buffer.alloc(32 * 32 * 4), 32, 32, 128, XRGB));
      expect(() => blitter.blit(a, b, { yFlip: false, rects: null })).toThrow(
        'blit needs images of the same size: src is 64x48 XR24, dst is 32x32 XR24');
      blitter.destroyImage(b);
      blitter.destroyImage(b); // idempotent
      expect(() => blitter.blit(a, b, { yFlip: false, rects: null })).toThrow('dst (32x32 XR24) was destroyed');
      expect(() => blitter.upload(Buffer.alloc(100), 32, 32, 128, XRGB)).toThrow(
        'bytes holds 100 bytes, 32x32 XR24 with stride 128 needs 4096');
    } finally {
      destroyImages();
      freeUdmabuf(buffer);
      close(memfd);
    }
    expect(listOpenFds()).toEqual(before);
  });

  it('leaks no fds over open, import, blit, allocate and close, and refuses work once closed', () => {
    const src = makeUdmabuf(W * 4 * H, pattern(W, H, W * 4, 6));
    const before = listOpenFds();
    for (let i = 0; i < 2; i++) {
      const other = GpuBlitter.open({ device: vgem.path });
      const s = other.importDmabuf(udmabufDescription(src, XRGB, W * 4));
      const buffer = other.allocate(W, H, XRGB);
      const d = other.importDmabuf(buffer);
      other.blit(s, d, { yFlip: false, rects: null });
      buffer.planes.forEach((p) => close(p.fd));
      other.close(); // destroys s and d, which still hold their dma-bufs until now
      expect(() => other.blit(s, d, { yFlip: false, rects: null })).toThrow(`GpuBlitter on ${vgem.path} is closed`);
      expect(() => other.importDmabuf(udmabufDescription(src, XRGB, W * 4))).toThrow(`GpuBlitter on ${vgem.path} is closed`);
      other.destroyImage(s); // idempotent after close too
    }
    expect(listOpenFds()).toEqual(before);
    freeUdmabuf(src);
  });
});
