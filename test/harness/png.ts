import { readFileSync, writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';

/** Tightly packed 8-bit RGBA image (stride = width * 4). */
export interface RgbaImage {
  width: number;
  height: number;
  data: Buffer;
}

/** Decode a PNG (path or bytes) into RGBA8; pngjs expands grey/RGB/palette/16-bit. */
export function readPng(src: string | Buffer): RgbaImage {
  const png = PNG.sync.read(typeof src === 'string' ? readFileSync(src) : src);
  return { width: png.width, height: png.height, data: png.data };
}

export function writePng(file: string, img: RgbaImage): void {
  const png = new PNG({ width: img.width, height: img.height });
  img.data.copy(png.data, 0, 0, img.width * img.height * 4);
  writeFileSync(file, PNG.sync.write(png));
}
