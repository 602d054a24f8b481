import { describe, expect, it } from 'vitest';
import { FORMATS, formatByName, type PixelFormat } from '../src/formats.js';
import { decodePng, encodePng, toRgba, type RgbaImage } from '../src/capture/png.js';
import {
  decodePattern, drawPattern, patternBox, patternGeometry, renderExpected, verifyPatternExact, type PatternTarget, type Rect,
} from '../src/source/test-pattern.js';

const XRGB = formatByName('XRGB8888')!;

/** A buffer with padded stride, placed at an odd offset inside a larger allocation. */
function makeTarget(width: number, height: number, format: PixelFormat): PatternTarget {
  const stride = width * format.bytesPerPixel + 12;
  const backing = new Uint8Array(stride * height + 64).fill(0xa5);
  return { bytes: backing.subarray(20, 20 + stride * height), width, height, stride, format };
}

const snapshot = (t: PatternTarget): RgbaImage => ({ width: t.width, height: t.height, data: toRgba(t.bytes, t.width, t.height, t.stride, t.format) });
const whole = (t: { width: number; height: number }): Rect => ({ x: 0, y: 0, width: t.width, height: t.height });

/** Places an image inside a bigger grey screenshot, as a compositor capture would show it. */
function embed(image: RgbaImage, at: Rect, width: number, height: number): RgbaImage {
  const data = new Uint8Array(width * height * 4).fill(128);
  for (let y = 0; y < image.height; y++) {
    data.set(image.data.subarray(y * image.width * 4, (y + 1) * image.width * 4), ((at.y + y) * width + at.x) * 4);
  }
  return { width, height, data };
}

describe('test pattern', () => {
  for (const format of FORMATS) {
    it(`draws frames incrementally into two buffers exactly (${format.name})`, () => {
      for (const [w, h] of [[64, 16], [203, 97]]) {
        const buffers = [makeTarget(w, h, format), makeTarget(w, h, format)];
        for (let frame = 0; frame <= 5; frame++) {
          const damage = drawPattern(buffers[frame % 2], frame, frame >= 2 ? frame - 2 : null);
          if (frame < 2) expect(damage).toEqual([whole(buffers[0])]);
          const image = snapshot(buffers[frame % 2]);
          expect(verifyPatternExact(image, whole(image), format)).toEqual({ frame, mismatches: 0 });
          const decoded = decodePattern(image, whole(image));
          expect(decoded.ok).toBe(true);
          expect(decoded.frame).toBe(frame);
          const at = { x: 7, y: 5, width: w, height: h };
          const shot = embed(image, at, w + 20, h + 11);
          expect(decodePattern(shot, at)).toEqual(decoded);
          expect(verifyPatternExact(shot, at, format).mismatches).toBe(0);
        }
      }
    });
  }

  for (const name of ['XRGB8888', 'RGB565']) {
    it(`damage covers every pixel that changed since the previous frame (${name})`, () => {
      const format = formatByName(name)!;
      const [w, h] = [100, 40];
      const buffers = [makeTarget(w, h, format), makeTarget(w, h, format)];
      drawPattern(buffers[0], 0, null);
      drawPattern(buffers[1], 1, null);
      let before = renderExpected(w, h, format, 1);
      let wrapped = 0;
      for (let frame = 2; frame <= 40; frame++) {
        const damage = drawPattern(buffers[frame % 2], frame, frame - 2);
        if (patternBox(w, h, frame).length === 2) wrapped++;
        const after = renderExpected(w, h, format, frame);
        expect(Buffer.from(snapshot(buffers[frame % 2]).data).equals(after)).toBe(true);
        expect(damage.every((r) => r.x >= 0 && r.y >= 0 && r.x + r.width <= w && r.y + r.height <= h)).toBe(true);
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const p = (y * w + x) * 4;
            if (before[p] === after[p] && before[p + 1] === after[p + 1] && before[p + 2] === after[p + 2]) continue;
            const covered = damage.some((r) => x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height);
            if (!covered) expect.fail(`frame ${frame}: changed pixel (${x}, ${y}) is not in the damage ${JSON.stringify(damage)}`);
          }
        }
        before = after;
      }
      expect(wrapped).toBeGreaterThan(2);
    });
  }

  it('detects a single flipped pixel below the header', () => {
    const target = makeTarget(128, 40, XRGB);
    drawPattern(target, 3, null);
    const image = snapshot(target);
    const y = patternGeometry(128, 40).headerHeight + 5;
    image.data[(y * 128 + 10) * 4 + 1] ^= 1;
    const decoded = decodePattern(image, whole(image));
    expect(decoded.frame).toBe(3);
    expect(decoded.ok).toBe(false);
    const verify = verifyPatternExact(image, whole(image), XRGB);
    expect(verify.mismatches).toBe(1);
    expect(verify.firstMismatch).toMatchObject({ x: 10, y });
  });

  it('round-trips through PNG unchanged', () => {
    const target = makeTarget(150, 60, formatByName('ARGB8888')!);
    drawPattern(target, 7, null);
    const image = snapshot(target);
    const back = decodePng(encodePng(image));
    expect(back.width).toBe(150);
    expect(back.height).toBe(60);
    expect(Buffer.from(back.data).equals(Buffer.from(image.data))).toBe(true);
  });

  it('rejects sizes it cannot encode', () => {
    expect(() => drawPattern(makeTarget(63, 16, XRGB), 0, null)).toThrow(/63/);
    expect(() => drawPattern(makeTarget(64, 15, XRGB), 0, null)).toThrow(/15/);
    expect(() => renderExpected(63, 100, XRGB, 0)).toThrow(RangeError);
    expect(() => renderExpected(100, 15, XRGB, 0)).toThrow(RangeError);
    expect(() => patternGeometry(64, 16)).not.toThrow();
  });

  it('times draw + checksum at 1280x800 XRGB8888', () => {
    const buffers = [makeTarget(1280, 800, XRGB), makeTarget(1280, 800, XRGB)];
    let t = performance.now();
    drawPattern(buffers[0], 0, null);
    const first = performance.now() - t;
    t = performance.now();
    drawPattern(buffers[1], 1, null);
    const full = performance.now() - t;
    const n = 200;
    t = performance.now();
    for (let frame = 2; frame < 2 + n; frame++) drawPattern(buffers[frame % 2], frame, frame - 2);
    const incremental = (performance.now() - t) / n;
    console.log(`1280x800 XRGB8888: first draw (builds cached background) ${first.toFixed(1)} ms, ` +
      `full redraw ${full.toFixed(2)} ms, incremental ${incremental.toFixed(3)} ms/frame`);
    const image = snapshot(buffers[(n + 1) % 2]);
    expect(decodePattern(image, whole(image))).toMatchObject({ frame: n + 1, ok: true });
  });
});
