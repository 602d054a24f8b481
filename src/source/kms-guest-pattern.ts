// The lab KMS guest's test pattern (lab/guest/kms-guest.c, kms_guest_pixel): the same pure function, so a
// host can predict every pixel of any frame the guest shows. test/kms-guest-pattern.test.ts proves they agree.
//
//   border      1-px white frame around the screen
//   frame box   at (16,16), 256x32: a row of 16 cells (16x16) showing the frame number's low 16 bits, least
//               significant on the left (white = 1, black = 0), over a 16-px bar of colour
//               R = frame*53, G = frame*101, B = frame*197 (each & 0xFF). The only part that changes per frame.
//   quadrants   split at (width/2, height/2), integer division; d = (x XOR y) & 0xFF:
//               top left 0xFF,d,0 · top right 0,0xFF,d · bottom left d,0,0xFF · bottom right x&0xFF,y&0xFF,d

import type { Rect } from '../geometry.js';

const CELL = 16;
/** Where the frame-dependent box lies (before clipping to the screen's inside). */
export const KMS_GUEST_BOX: Readonly<Rect> = { x: 16, y: 16, width: 16 * CELL, height: 2 * CELL };

/** 0x00RRGGBB of pixel (x, y) of `frame` on a width x height screen, exactly as the guest draws it. */
export function kmsGuestPixel(x: number, y: number, frame: number, width: number, height: number): number {
  if (x === 0 || y === 0 || x === width - 1 || y === height - 1) return 0xffffff;
  const box = KMS_GUEST_BOX;
  if (x >= box.x && x < box.x + box.width && y >= box.y && y < box.y + box.height) {
    if (y < box.y + CELL) return (frame >>> (((x - box.x) / CELL) | 0)) & 1 ? 0xffffff : 0x000000;
    return ((Math.imul(frame, 53) & 0xff) << 16) | ((Math.imul(frame, 101) & 0xff) << 8) | (Math.imul(frame, 197) & 0xff);
  }
  const d = (x ^ y) & 0xff;
  const right = x >= width >>> 1;
  if (y < height >>> 1) return right ? 0x00ff00 | d : 0xff0000 | (d << 8);
  return right ? ((x & 0xff) << 16) | ((y & 0xff) << 8) | d : 0x0000ff | (d << 16);
}

/** The whole screen of `frame`, row-major, one 0x00RRGGBB word per pixel (what XRGB8888 holds per pixel). */
export function renderKmsGuestPattern(width: number, height: number, frame: number): Uint32Array {
  const out = new Uint32Array(width * height);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) out[i] = kmsGuestPixel(x, y, frame, width, height);
  }
  return out;
}

/** The DIRTYFB clip the guest sends for frames after the first: the frame box kept inside the border. */
export function kmsGuestDirtyRect(width: number, height: number): Rect {
  const box = KMS_GUEST_BOX;
  const x2 = Math.min(box.x + box.width, width - 1);
  const y2 = Math.min(box.y + box.height, height - 1);
  return { x: box.x, y: box.y, width: Math.max(0, x2 - box.x), height: Math.max(0, y2 - box.y) };
}
