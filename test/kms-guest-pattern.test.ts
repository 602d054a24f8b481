import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { kmsGuestDirtyRect, kmsGuestPixel, renderKmsGuestPattern } from '../src/source/kms-guest-pattern.js';

const guestDir = fileURLToPath(new URL('../lab/guest/', import.meta.url));
const guest = `${guestDir}build/kms-guest`;

/** The C pattern, from the guest binary itself run on the host with --dump. */
function cPattern(width: number, height: number, frame: number): Uint32Array {
  const raw = execFileSync(guest, ['--dump', String(width), String(height), String(frame)], { maxBuffer: 1 << 26 });
  expect(raw.length).toBe(width * height * 4);
  return new Uint32Array(raw.buffer, raw.byteOffset, width * height);
}

function firstDifference(a: Uint32Array, b: Uint32Array, width: number): string | null {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return `(${i % width}, ${Math.floor(i / width)}): C ${a[i].toString(16)}, TS ${b[i].toString(16)}`;
  }
  return null;
}

describe('KMS guest pattern', () => {
  beforeAll(() => {
    execFileSync('make', ['-s', '-C', guestDir], { stdio: 'inherit' });
  });

  for (const [width, height] of [[1280, 800], [1024, 768], [333, 201], [20, 9], [1, 1], [2, 3]]) {
    it(`C and TypeScript agree on every pixel at ${width}x${height}`, () => {
      for (const frame of [0, 1, 2, 3, 255, 0xffff, 0x12345, 0xffffffff]) {
        const c = cPattern(width, height, frame);
        expect(firstDifference(c, renderKmsGuestPattern(width, height, frame), width), `frame ${frame}`).toBeNull();
      }
    });
  }

  it('has the documented landmarks', () => {
    const [w, h] = [1280, 800];
    const px = (x: number, y: number, frame = 0): number => kmsGuestPixel(x, y, frame, w, h);
    for (const [x, y] of [[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1], [640, 0], [0, 400]]) expect(px(x, y)).toBe(0xffffff);
    expect(px(1, 2)).toBe(0xff0300); // top left: red, x^y in green
    expect(px(639, 1)).toBe(0xff0000 | ((639 ^ 1) & 0xff) << 8); // top right starts at x = 640
    expect(px(639, 1)).not.toBe(px(640, 1));
    expect(px(641, 1)).toBe(0x00ff00 | (641 ^ 1) & 0xff);
    expect(px(1, 400)).toBe(0x0000ff | ((1 ^ 400) & 0xff) << 16);
    expect(px(700, 500)).toBe((700 & 0xff) << 16 | (500 & 0xff) << 8 | (700 ^ 500) & 0xff);
    // Frame box: bit cells (LSB left), then the colour bar.
    expect(px(16, 16, 5)).toBe(0xffffff);
    expect(px(31, 31, 5)).toBe(0xffffff);
    expect(px(32, 16, 5)).toBe(0x000000);
    expect(px(48, 16, 5)).toBe(0xffffff);
    expect(px(16 + 15 * 16, 16, 0x8000)).toBe(0xffffff);
    expect(px(100, 32, 1)).toBe(0x3565c5);
    expect(px(271, 47, 1)).toBe(0x3565c5);
    expect(px(272, 47, 1)).not.toBe(0x3565c5);
    expect(px(100, 48, 1)).toBe(px(100, 48, 2)); // below the box nothing changes
  });

  it('changes between frames only inside the DIRTYFB clip', () => {
    for (const [w, h] of [[1280, 800], [100, 30]]) {
      const clip = kmsGuestDirtyRect(w, h);
      const [a, b] = [renderKmsGuestPattern(w, h, 6), renderKmsGuestPattern(w, h, 9)];
      const outside: string[] = [];
      for (let i = 0; i < a.length; i++) {
        const [x, y] = [i % w, Math.floor(i / w)];
        const inside = x >= clip.x && x < clip.x + clip.width && y >= clip.y && y < clip.y + clip.height;
        if (!inside && a[i] !== b[i]) outside.push(`(${x}, ${y})`);
      }
      expect(outside).toEqual([]);
    }
    expect(kmsGuestDirtyRect(1280, 800)).toEqual({ x: 16, y: 16, width: 256, height: 32 });
    expect(kmsGuestDirtyRect(100, 30)).toEqual({ x: 16, y: 16, width: 83, height: 13 });
  });
});
