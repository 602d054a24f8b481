// The built-in guest's verifiable test pattern: a static gradient background, a moving solid box, and a
// header of 64 black/white blocks at the top holding the frame number and a checksum of everything below
// the header (both 32 bits, most significant bit first). A screenshot can thus be checked on its own.
//
// Checksum: FNV-1a 32 over the 4 little-endian bytes of each row's hash, for the rows below the header
// top to bottom, where a row's hash is FNV-1a 32 over the 8-bit R, G, B of its pixels left to right.
// Hashing row hashes (rather than all bytes in one stream) lets the drawer reuse the background's row
// hashes and re-hash only the rows the box touches.

import type { PixelFormat } from '../formats.js';
import type { RgbaImage } from '../capture/png.js';

import type { Rect } from '../geometry.js';
export type { Rect } from '../geometry.js';

export interface PatternTarget {
  /** View of exactly this buffer's memory, starting at its first pixel. */
  bytes: Uint8Array;
  width: number;
  height: number;
  /** Bytes per row. */
  stride: number;
  format: PixelFormat;
}

export interface PatternGeometry {
  blockSize: number;
  headerHeight: number;
  boxWidth: number;
  boxHeight: number;
  stepX: number;
  stepY: number;
}

export interface PatternDecode {
  frame: number;
  checksum: number;
  computedChecksum: number;
  ok: boolean;
}

export interface PatternVerify {
  frame: number;
  mismatches: number;
  firstMismatch?: { x: number; y: number; expected: [number, number, number]; actual: [number, number, number] };
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const HEADER_BITS = 64;

export function patternGeometry(width: number, height: number): PatternGeometry {
  if (!Number.isInteger(width) || width < 64) throw new RangeError(`test pattern needs an integer width >= 64, got ${width}`);
  if (!Number.isInteger(height) || height < 16) throw new RangeError(`test pattern needs an integer height >= 16, got ${height}`);
  const blockSize = Math.max(1, Math.min(8, Math.floor(width / 64)));
  const boxWidth = Math.floor(width / 8);
  const areaHeight = height - blockSize;
  return {
    blockSize,
    headerHeight: blockSize,
    boxWidth,
    boxHeight: Math.min(boxWidth, areaHeight),
    stepX: Math.floor(width / 16) + 1, // not a divisor of the width, so wrapping splits the box at varying places
    stepY: Math.floor(areaHeight / 32) + 1,
  };
}

/** Where the box is in `frame`: one rect, or two when it wraps around the right edge. */
export function patternBox(width: number, height: number, frame: number): Rect[] {
  const g = patternGeometry(width, height);
  const x = (frame * g.stepX) % width;
  const y = g.headerHeight + ((frame * g.stepY) % (height - g.headerHeight - g.boxHeight + 1));
  const rects = [{ x, y, width: Math.min(g.boxWidth, width - x), height: g.boxHeight }];
  if (x + g.boxWidth > width) rects.push({ x: 0, y, width: x + g.boxWidth - width, height: g.boxHeight });
  return rects;
}

function boxColor(frame: number): [number, number, number] {
  return [(frame * 53 + 17) & 255, (frame * 101 + 93) & 255, (frame * 151 + 171) & 255];
}

function backgroundColor(x: number, y: number, width: number, height: number): [number, number, number] {
  const t = (x + 2 * y) % 512;
  return [Math.floor((x * 255) / (width - 1)), Math.floor((y * 255) / (height - 1)), t < 256 ? t : 511 - t];
}

/** The colour as a viewer sees it after storing it in `format` (RGB565 loses low bits). */
function quantize(format: PixelFormat, [r, g, b]: [number, number, number]): [number, number, number] {
  const [qr, qg, qb] = format.unpack(format.pack(r, g, b, 255));
  return [qr, qg, qb];
}

function packedBytes(format: PixelFormat, [r, g, b]: [number, number, number]): number[] {
  const v = format.pack(r, g, b, 255);
  return Array.from({ length: format.bytesPerPixel }, (_, i) => (v >>> (8 * i)) & 255);
}

function checkFrame(name: string, frame: number): void {
  if (!Number.isInteger(frame) || frame < 0 || frame > 0xffffffff) throw new RangeError(`${name} must be a 32-bit unsigned integer, got ${frame}`);
}

const fnvWord = (h: number, w: number): number => {
  for (let i = 0; i < 4; i++) h = Math.imul(h ^ ((w >>> (8 * i)) & 255), FNV_PRIME);
  return h >>> 0;
};

function fnvBytes(h: number, bytes: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i], FNV_PRIME);
  return h >>> 0;
}

function fnvRepeat(h: number, [r, g, b]: [number, number, number], count: number): number {
  for (let i = 0; i < count; i++) h = Math.imul(Math.imul(Math.imul(h ^ r, FNV_PRIME) ^ g, FNV_PRIME) ^ b, FNV_PRIME);
  return h >>> 0;
}

/** The checksum of an RGBA image region (alpha ignored), exactly as defined at the top of this file. */
function checksumRgba(data: Uint8Array, imageWidth: number, x0: number, y0: number, width: number, height: number): number {
  let h = FNV_OFFSET;
  for (let y = y0; y < y0 + height; y++) {
    let rh = FNV_OFFSET;
    for (let p = (y * imageWidth + x0) * 4, end = p + width * 4; p < end; p += 4) {
      rh = Math.imul(Math.imul(Math.imul(rh ^ data[p], FNV_PRIME) ^ data[p + 1], FNV_PRIME) ^ data[p + 2], FNV_PRIME);
    }
    h = fnvWord(h, rh >>> 0);
  }
  return h;
}

interface Background {
  rgb: Uint8Array; // quantized 8-bit R,G,B, width*3 bytes per row
  packed: Uint8Array; // in the buffer's format, width*bytesPerPixel bytes per row
  rowHash: Uint32Array;
}

// Backgrounds are costly to build (~1M pixels) and the same for every frame, so keep the last few.
const backgrounds = new Map<string, Background>();

function background(width: number, height: number, format: PixelFormat): Background {
  const key = `${width}x${height}:${format.name}`;
  let bg = backgrounds.get(key);
  if (bg) return bg;
  const bpp = format.bytesPerPixel;
  bg = { rgb: new Uint8Array(width * height * 3), packed: new Uint8Array(width * height * bpp), rowHash: new Uint32Array(height) };
  for (let y = 0, i = 0, p = 0; y < height; y++) {
    const gy = Math.floor((y * 255) / (height - 1));
    for (let x = 0; x < width; x++) {
      const t = (x + 2 * y) % 512; // inlined backgroundColor(): this loop runs for every pixel
      const v = format.pack(Math.floor((x * 255) / (width - 1)), gy, t < 256 ? t : 511 - t, 255);
      const q = format.unpack(v);
      bg.rgb[i++] = q[0];
      bg.rgb[i++] = q[1];
      bg.rgb[i++] = q[2];
      for (let k = 0; k < bpp; k++) bg.packed[p++] = (v >>> (8 * k)) & 255;
    }
    bg.rowHash[y] = fnvBytes(FNV_OFFSET, bg.rgb, y * width * 3, (y + 1) * width * 3);
  }
  if (backgrounds.size >= 4) backgrounds.delete(backgrounds.keys().next().value!);
  backgrounds.set(key, bg);
  return bg;
}

function headerBit(i: number, frame: number, checksum: number): number {
  return i < 32 ? (frame >>> (31 - i)) & 1 : (checksum >>> (63 - i)) & 1;
}

/**
 * Draws `frame` into a buffer that last held `previous` (null: never drawn), touching only what changed
 * there. Returns the damage relative to frame `frame - 1`, which is what the compositor needs.
 */
export function drawPattern(target: PatternTarget, frame: number, previous: number | null): Rect[] {
  const { bytes, width, height, stride, format } = target;
  const g = patternGeometry(width, height);
  checkFrame('frame', frame);
  if (previous !== null) checkFrame('previous', previous);
  const bpp = format.bytesPerPixel;
  const rowBytes = width * bpp;
  if (stride < rowBytes) throw new RangeError(`stride ${stride} is less than width ${width} x ${bpp} bytes`);
  if (bytes.length < stride * (height - 1) + rowBytes) {
    throw new RangeError(`buffer of ${bytes.length} bytes is too small for ${width}x${height} with stride ${stride}`);
  }
  const bg = background(width, height, format);
  const H = g.headerHeight;

  const restore = (r: Rect): void => {
    for (let y = r.y; y < r.y + r.height; y++) {
      bytes.set(bg.packed.subarray(y * rowBytes + r.x * bpp, y * rowBytes + (r.x + r.width) * bpp), y * stride + r.x * bpp);
    }
  };
  if (previous === null) restore({ x: 0, y: H, width, height: height - H });
  else for (const r of patternBox(width, height, previous)) restore(r);

  const box = patternBox(width, height, frame);
  const color = boxColor(frame);
  const span = new Uint8Array(g.boxWidth * bpp);
  const px = packedBytes(format, color);
  for (let i = 0; i < span.length; i++) span[i] = px[i % bpp];
  for (const r of box) {
    for (let y = r.y; y < r.y + r.height; y++) bytes.set(span.subarray(0, r.width * bpp), y * stride + r.x * bpp);
  }

  // Checksum from what we know we drew: background row hashes, re-hashing only the rows the box covers.
  const seen = quantize(format, color);
  const spans = [...box].sort((a, b) => a.x - b.x);
  const top = box[0].y;
  let checksum = FNV_OFFSET;
  for (let y = H; y < height; y++) {
    let rh = bg.rowHash[y];
    if (y >= top && y < top + g.boxHeight) {
      rh = FNV_OFFSET;
      let x = 0;
      for (const s of spans) {
        rh = fnvBytes(rh, bg.rgb, (y * width + x) * 3, (y * width + s.x) * 3);
        rh = fnvRepeat(rh, seen, s.width);
        x = s.x + s.width;
      }
      rh = fnvBytes(rh, bg.rgb, (y * width + x) * 3, (y + 1) * width * 3);
    }
    checksum = fnvWord(checksum, rh);
  }

  const header = new Uint8Array(rowBytes);
  const white = packedBytes(format, [255, 255, 255]);
  const black = packedBytes(format, [0, 0, 0]);
  for (let x = 0; x < width; x++) {
    const i = Math.floor(x / g.blockSize);
    header.set(i < HEADER_BITS && headerBit(i, frame, checksum) ? white : black, x * bpp);
  }
  for (let y = 0; y < H; y++) bytes.set(header, y * stride);

  if (previous === null || frame === 0) return [{ x: 0, y: 0, width, height }];
  return [{ x: 0, y: 0, width: HEADER_BITS * g.blockSize, height: H }, ...patternBox(width, height, frame - 1), ...box];
}

/** Reference renderer, written independently of drawPattern's incremental path: the whole frame as RGBA. */
export function renderExpected(width: number, height: number, format: PixelFormat, frame: number): Uint8Array {
  const g = patternGeometry(width, height);
  checkFrame('frame', frame);
  const out = new Uint8Array(width * height * 4);
  const box = patternBox(width, height, frame);
  const inBox = (x: number, y: number): boolean => box.some((r) => x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height);
  const boxRgb = quantize(format, boxColor(frame));
  for (let y = g.headerHeight; y < height; y++) {
    for (let x = 0; x < width; x++) {
      out.set(inBox(x, y) ? boxRgb : quantize(format, backgroundColor(x, y, width, height)), (y * width + x) * 4);
      out[(y * width + x) * 4 + 3] = 255;
    }
  }
  const checksum = checksumRgba(out, width, 0, g.headerHeight, width, height - g.headerHeight);
  for (let y = 0; y < g.headerHeight; y++) {
    for (let x = 0; x < width; x++) {
      const i = Math.floor(x / g.blockSize);
      const v = i < HEADER_BITS && headerBit(i, frame, checksum) ? 255 : 0;
      out.set([v, v, v, 255], (y * width + x) * 4);
    }
  }
  return out;
}

function checkRegion(image: RgbaImage, at: Rect): PatternGeometry {
  const g = patternGeometry(at.width, at.height);
  if (at.x < 0 || at.y < 0 || at.x + at.width > image.width || at.y + at.height > image.height) {
    throw new RangeError(`pattern region ${at.width}x${at.height}+${at.x}+${at.y} lies outside the ${image.width}x${image.height} image`);
  }
  return g;
}

/** Reads the header of a pattern shown 1:1 at `at` in a screenshot and recomputes the checksum below it. */
export function decodePattern(image: RgbaImage, at: Rect): PatternDecode {
  const g = checkRegion(image, at);
  const cy = at.y + Math.floor(g.blockSize / 2);
  let frame = 0;
  let checksum = 0;
  for (let i = 0; i < HEADER_BITS; i++) {
    const p = (cy * image.width + at.x + i * g.blockSize + Math.floor(g.blockSize / 2)) * 4;
    const luma = 0.299 * image.data[p] + 0.587 * image.data[p + 1] + 0.114 * image.data[p + 2];
    const bit = luma > 127 ? 1 : 0;
    if (i < 32) frame = ((frame << 1) | bit) >>> 0;
    else checksum = ((checksum << 1) | bit) >>> 0;
  }
  const computedChecksum = checksumRgba(image.data, image.width, at.x, at.y + g.headerHeight, at.width, at.height - g.headerHeight);
  return { frame, checksum, computedChecksum, ok: checksum === computedChecksum };
}

/** Decodes the frame number, then compares every pixel's RGB with renderExpected; x, y are relative to `at`. */
export function verifyPatternExact(image: RgbaImage, at: Rect, format: PixelFormat): PatternVerify {
  const { frame } = decodePattern(image, at);
  const expected = renderExpected(at.width, at.height, format, frame);
  const result: PatternVerify = { frame, mismatches: 0 };
  for (let y = 0; y < at.height; y++) {
    for (let x = 0; x < at.width; x++) {
      const e = (y * at.width + x) * 4;
      const a = ((at.y + y) * image.width + at.x + x) * 4;
      const d = image.data;
      if (expected[e] === d[a] && expected[e + 1] === d[a + 1] && expected[e + 2] === d[a + 2]) continue;
      if (result.mismatches++ === 0) {
        result.firstMismatch = { x, y, expected: [expected[e], expected[e + 1], expected[e + 2]], actual: [d[a], d[a + 1], d[a + 2]] };
      }
    }
  }
  return result;
}
