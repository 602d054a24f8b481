// PNG encoding/decoding and conversion of guest buffers (any format in the table) to tight RGBA.

import pngjs from 'pngjs';
import type { PixelFormat } from '../formats.js';

const { PNG } = pngjs; // pngjs is CommonJS: only its default export is reliable under ESM

/** A tightly packed RGBA image, 4 bytes per pixel, row-major. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export function encodePng(image: RgbaImage): Buffer {
  const { width, height, data } = image;
  if (data.length !== width * height * 4) {
    throw new RangeError(`RGBA data is ${data.length} bytes, expected ${width * height * 4} for ${width}x${height}`);
  }
  const png = new PNG({ width, height });
  png.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  // One filter (Sub) for every row instead of pngjs trying all five per row: 8× faster, files ~25% larger.
  return PNG.sync.write(png, { filterType: 1, deflateLevel: 6 });
}

export function decodePng(buf: Uint8Array): RgbaImage {
  const png = PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  return { width: png.width, height: png.height, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length) };
}

/** Converts a buffer of `format` pixels (little-endian, `stride` bytes per row) to tight RGBA. */
export function toRgba(bytes: Uint8Array, width: number, height: number, stride: number, format: PixelFormat): Uint8Array {
  const bpp = format.bytesPerPixel;
  if (stride < width * bpp) throw new RangeError(`stride ${stride} is less than width ${width} x ${bpp} bytes`);
  if (height > 0 && bytes.length < stride * (height - 1) + width * bpp) {
    throw new RangeError(`buffer of ${bytes.length} bytes is too small for ${width}x${height} with stride ${stride}`);
  }
  const out = new Uint8Array(width * height * 4);
  let o = 0;
  for (let y = 0; y < height; y++) {
    let p = y * stride;
    for (let x = 0; x < width; x++, p += bpp) {
      let v = 0;
      for (let i = 0; i < bpp; i++) v |= bytes[p + i] << (8 * i);
      const [r, g, b, a] = format.unpack(v >>> 0);
      out[o++] = r;
      out[o++] = g;
      out[o++] = b;
      out[o++] = a;
    }
  }
  return out;
}
