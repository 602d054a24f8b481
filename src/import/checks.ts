// The checks every import makes, shared by memfd frames (wl_shm) and blob resources. `prefix` names the object
// in the message ("" or e.g. "blob resource 7: ").
import { getSeals, fstat } from '../native/fds.js';
import { formatByFourcc, fourccToString, type PixelFormat } from '../formats.js';
import { ImportError } from './errors.js';

/** Largest width or height accepted (the largest any compositor or GPU here scans out). */
export const MAX_DIMENSION = 16384;

export function checkInteger(prefix: string, name: string, value: number, min: number, max: number,
  code: 'bad-size' | 'bad-stride' | 'bad-offset'): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ImportError(code, `${prefix}${name} ${value} is out of range (${min}..${max})`);
  }
}

export function formatOf(prefix: string, fourcc: number): PixelFormat {
  const format = formatByFourcc(fourcc);
  if (!format) throw new ImportError('unknown-format', `${prefix}unknown pixel format ${fourccToString(fourcc)}`);
  return format;
}

export function checkSize(prefix: string, width: number, height: number): void {
  checkInteger(prefix, 'width', width, 1, MAX_DIMENSION, 'bad-size');
  checkInteger(prefix, 'height', height, 1, MAX_DIMENSION, 'bad-size');
}

/** Throws unless stride holds a row of `width` pixels (and fits an int32); returns the row's bytes. */
export function checkStride(prefix: string, stride: number, width: number, format: PixelFormat): number {
  const rowBytes = width * format.bytesPerPixel;
  if (!Number.isInteger(stride) || stride < rowBytes || stride > 0x7fffffff) {
    throw new ImportError('bad-stride',
      `${prefix}stride ${stride} is smaller than width ${width} × ${format.bytesPerPixel} bytes (${rowBytes}) of ${format.name}`);
  }
  return rowBytes;
}

/** Seals, size and identity (st_dev:st_ino) of a memfd; not-memfd / bad-fd errors otherwise. */
export function memfdFacts(prefix: string, fd: number): { seals: number; size: number; key: string } {
  try {
    const seals = getSeals(fd);
    const st = fstat(fd);
    return { seals, size: st.size, key: `${st.dev}:${st.ino}` };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EINVAL') throw new ImportError('not-memfd', `${prefix}fd ${fd} is not a memfd (F_GET_SEALS: EINVAL)`);
    throw new ImportError('bad-fd', `${prefix}fd ${fd} cannot be used: ${err.message}`);
  }
}
