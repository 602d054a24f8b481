// Typed access to native/src/pixel_copy.cc: the CPU blit between mapped buffers.
import { addon } from './addon.js';
import type { Rect } from '../geometry.js';

export interface PixelImage {
  /** Starts at the image's first pixel. */
  bytes: Uint8Array;
  stride: number;
  fourcc: number;
}

/**
 * Copies `rects` (source coordinates; null: everything) of a width×height image from `src` to `dst`, converting
 * between XRGB8888/ARGB8888/XBGR8888/ABGR8888 (X becomes opaque alpha) and flipping rows when `yFlip`. Returns the
 * bytes written. Throws a RangeError naming the short buffer, the small stride or the unconvertible format.
 */
export function copyPixels(src: PixelImage, dst: PixelImage, width: number, height: number, rects: readonly Rect[] | null,
  yFlip = false): number {
  const quads = rects ? Int32Array.from(rects.flatMap((r) => [r.x, r.y, r.width, r.height])) : null;
  return addon.copyPixels(src.bytes, src.stride, src.fourcc, dst.bytes, dst.stride, dst.fourcc, width, height, quads, yFlip);
}
