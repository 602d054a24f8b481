// Typed access to native/src/gpu_blit.cc: a GLES2 blitter on a DRM node (EGL on GBM or on an EGL device) that
// imports dma-bufs, uploads CPU pixels, draws one image onto another (format conversion, y-flip, rects) and
// allocates dma-bufs with GBM. libEGL/libGLESv2/libgbm are loaded on the first open(), not with the addon.
import fs from 'node:fs';
import path from 'node:path';
import { addon } from './addon.js';
import type { DmabufDescription, GpuBlitterInfo, NativeGpuBlitter } from './addon-types.js';

export type { DmabufDescription, DmabufPlane, GpuBlitterInfo } from './addon-types.js';

/** An image the blitter can draw from or into. Only the blitter that made it can use it. */
export interface GpuImage {
  readonly width: number;
  readonly height: number;
  readonly fourcc: number;
}

export interface BlitRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface BlitOptions {
  /** Draw the source upside down: a source rect at y lands at dst height - y - h. */
  yFlip: boolean;
  /** Source coordinates (clipped to the image); null = everything. */
  rects: readonly BlitRect[] | null;
}

export const DRI_DIR = '/dev/dri';

/** The DRM nodes open() tries by default, in order: renderD* then card*, each by number. */
export function drmNodeCandidates(dir = DRI_DIR): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const pick = (prefix: string) => names
    .filter((n) => new RegExp(`^${prefix}\\d+$`).test(n))
    .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)))
    .map((n) => path.join(dir, n));
  return [...pick('renderD'), ...pick('card')];
}

function fourccName(fourcc: number): string {
  return String.fromCharCode(...[0, 8, 16, 24].map((s) => (fourcc >>> s) & 0xff));
}

function describe(image: GpuImage): string {
  return `${image.width}x${image.height} ${fourccName(image.fourcc)}`;
}

interface Handle {
  owner: GpuBlitter;
  id: number;
  destroyed: boolean;
}

const handles = new WeakMap<GpuImage, Handle>();

export class GpuBlitter {
  readonly info: GpuBlitterInfo;
  readonly #native: NativeGpuBlitter;
  readonly #live = new Set<Handle>();
  #closed = false;

  private constructor(native: NativeGpuBlitter) {
    this.#native = native;
    this.info = Object.freeze({ ...native.info });
  }

  /**
   * Opens EGL and a GLES2 context on a DRM node: options.device, or by default the first of /dev/dri/renderD*
   * then card* that works. Each node is tried with the GBM platform, then the EGL device platform. Throws an Error
   * with the reason when impossible: "no DRM render or card node in /dev/dri", libEGL missing, no
   * EGL_EXT_image_dma_buf_import, context creation failed, ... (one reason per node tried).
   */
  static open(options: { device?: string } = {}): GpuBlitter {
    if (options.device !== undefined) return new GpuBlitter(new addon.GpuBlitter(options.device));
    const candidates = drmNodeCandidates();
    if (candidates.length === 0) {
      const why = fs.existsSync(DRI_DIR) ? 'it has none' : `${DRI_DIR} does not exist`;
      throw new Error(`GpuBlitter.open: no DRM render or card node in ${DRI_DIR} (${why})`);
    }
    const failures: string[] = [];
    for (const device of candidates) {
      try {
        return new GpuBlitter(new addon.GpuBlitter(device));
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
    throw new Error(`GpuBlitter.open: no DRM node in ${DRI_DIR} works: ${failures.join('; ')}`);
  }

  /**
   * Imports a dmabuf as an EGLImage (EGL_EXT_image_dma_buf_import[_modifiers]); the fds are only borrowed (EGL
   * takes its own references). Throws with the EGL error name on failure, e.g.
   * "eglCreateImageKHR failed: EGL_BAD_MATCH for 64x64 XR24 modifier 0x0".
   */
  importDmabuf(desc: DmabufDescription): GpuImage {
    const planes = desc.planes.map(({ fd, offset, stride }) => ({ fd, offset, stride }));
    const id = this.#native.importDmabuf(desc.width, desc.height, desc.fourcc, desc.modifier, planes);
    return this.#track(id, desc.width, desc.height, desc.fourcc);
  }

  /** A texture filled from CPU memory: bytes starts at the first pixel; XRGB8888/ARGB8888/XBGR8888/ABGR8888. */
  upload(bytes: Uint8Array, width: number, height: number, stride: number, fourcc: number): GpuImage {
    const id = this.#native.upload(bytes, width, height, stride, fourcc);
    return this.#track(id, width, height, fourcc);
  }

  /**
   * Draws src onto dst 1:1 (same size, else a RangeError), converting the format (GL samples src and renders into
   * dst's format; a source without alpha draws opaque), flipping vertically with yFlip, limited to rects. Returns
   * a sync_file fd that signals when the drawing is done (the caller owns it) when EGL_ANDROID_native_fence_sync
   * works; otherwise waits for the GPU (glFinish) and returns null.
   */
  blit(src: GpuImage, dst: GpuImage, options: BlitOptions): number | null {
    const s = this.#handle(src, 'src');
    const d = this.#handle(dst, 'dst');
    const rects = options.rects === null ? null : options.rects.flatMap((r) => [r.x, r.y, r.width, r.height]);
    const fd = this.#native.blit(s.id, d.id, options.yFlip, rects);
    return fd >= 0 ? fd : null;
  }

  /**
   * Allocates a buffer with GBM (gbm_bo_create_with_modifiers when modifiers are given, else a linear
   * GBM_BO_USE_RENDERING buffer) and exports it read-write (it can be mmapped for writing); the planes' fds belong
   * to the caller. A driver without modifier support (ENOSYS) gets a linear buffer when LINEAR (0n) is listed.
   * GBM allocations on kms_swrast are dumb buffers, which DRM refuses on render nodes: use the card node there.
   */
  allocate(width: number, height: number, fourcc: number, modifiers?: bigint[]): DmabufDescription {
    const { modifier, planes } = this.#native.allocate(width, height, fourcc, modifiers ?? null);
    return { width, height, fourcc, modifier, planes };
  }

  /** Frees the image (its EGLImage, texture, framebuffer). Idempotent. */
  destroyImage(image: GpuImage): void {
    const handle = handles.get(image);
    if (!handle || handle.owner !== this || handle.destroyed) return;
    handle.destroyed = true;
    this.#live.delete(handle);
    this.#native.destroyImage(handle.id);
  }

  /** Destroys every image, the context and the display, and closes the node. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const handle of this.#live) handle.destroyed = true;
    this.#live.clear();
    this.#native.close();
  }

  #track(id: number, width: number, height: number, fourcc: number): GpuImage {
    const image: GpuImage = Object.freeze({ width, height, fourcc });
    const handle = { owner: this, id, destroyed: false };
    handles.set(image, handle);
    this.#live.add(handle);
    return image;
  }

  #handle(image: GpuImage, name: string): Handle {
    if (this.#closed) throw new Error(`GpuBlitter on ${this.info.device} is closed`);
    const handle = handles.get(image);
    if (!handle || handle.owner !== this) {
      throw new Error(`${name} (${describe(image)}) is not an image of this GpuBlitter (${this.info.device})`);
    }
    if (handle.destroyed) throw new Error(`${name} (${describe(image)}) was destroyed`);
    return handle;
  }
}
