// QEMU screendumps (binary PPM) for pixel comparisons.
import { readFileSync } from 'node:fs';

/** A binary PPM (P6, maxval 255) as 0x00RRGGBB words. */
export function readPpm(path: string): { width: number; height: number; pixels: Uint32Array } {
  const data = readFileSync(path);
  const fields: string[] = [];
  let pos = 0;
  while (fields.length < 4) {
    while (/\s/.test(String.fromCharCode(data[pos]))) pos++;
    if (data[pos] === 0x23) { while (data[pos] !== 0x0a) pos++; continue; } // comment
    const start = pos;
    while (!/\s/.test(String.fromCharCode(data[pos]))) pos++;
    fields.push(data.subarray(start, pos).toString('latin1'));
  }
  pos++; // the single whitespace after maxval
  const [magic, width, height, maxval] = [fields[0], Number(fields[1]), Number(fields[2]), Number(fields[3])];
  if (magic !== 'P6' || maxval !== 255) throw new Error(`unexpected PPM header ${fields.join(' ')}`);
  // QEMU 7.2's ppm_save writes each row with its pixman line buffer's stride: padded to 4 bytes (1366 px: 4100).
  const rowBytes = (data.length - pos) / height;
  if (rowBytes !== width * 3 && rowBytes !== ((width * 3 + 3) & ~3)) throw new Error(`PPM rows of ${rowBytes} bytes for ${width} px`);
  const pixels = new Uint32Array(width * height);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0, p = pos + y * rowBytes; x < width; x++, i++, p += 3) pixels[i] = (data[p] << 16) | (data[p + 1] << 8) | data[p + 2];
  }
  return { width, height, pixels };
}

