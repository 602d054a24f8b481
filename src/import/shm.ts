// Import of a memfd frame for the wl_shm path: validation only, the pixels are never touched or copied.
import { getSeals, fstat, constants } from '../native/fds.js';
import { formatByFourcc, fourccToString, type PixelFormat } from '../formats.js';
import type { MemfdFrame } from '../source/frame.js';
import { ImportError } from './errors.js';

/** Largest width or height accepted (the largest any compositor or GPU here scans out). */
export const MAX_DIMENSION = 16384;

/** wl_shm pool sizes and buffer offsets are int32 on the wire. */
export const WL_SHM_MAX = 0x7fffffff;

export interface ShmImport {
  format: PixelFormat;
  /** Identity of the memfd (st_dev:st_ino): fd numbers get reused, inodes of live memfds do not. */
  memoryKey: string;
  memorySize: number;
  sealedAgainstShrink: boolean;
}

function checkInteger(name: string, value: number, min: number, max: number, code: 'bad-size' | 'bad-stride' | 'bad-offset'): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ImportError(code, `${name} ${value} is out of range (${min}..${max})`);
  }
}

export function importMemfdFrame(frame: MemfdFrame): ShmImport {
  const format = formatByFourcc(frame.fourcc);
  if (!format) throw new ImportError('unknown-format', `unknown pixel format ${fourccToString(frame.fourcc)}`);
  checkInteger('width', frame.width, 1, MAX_DIMENSION, 'bad-size');
  checkInteger('height', frame.height, 1, MAX_DIMENSION, 'bad-size');
  const rowBytes = frame.width * format.bytesPerPixel;
  checkInteger('offset', frame.offset, 0, Number.MAX_SAFE_INTEGER, 'bad-offset');
  if (!Number.isInteger(frame.stride) || frame.stride < rowBytes || frame.stride > 0x7fffffff) {
    throw new ImportError('bad-stride',
      `stride ${frame.stride} is smaller than width ${frame.width} × ${format.bytesPerPixel} bytes (${rowBytes}) of ${format.name}`);
  }
  let seals: number;
  let size: number;
  let key: string;
  try {
    seals = getSeals(frame.fd);
    const st = fstat(frame.fd);
    size = st.size;
    key = `${st.dev}:${st.ino}`;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EINVAL') throw new ImportError('not-memfd', `fd ${frame.fd} is not a memfd (F_GET_SEALS: EINVAL)`);
    throw new ImportError('bad-fd', `fd ${frame.fd} cannot be used: ${err.message}`);
  }
  const end = frame.offset + frame.stride * (frame.height - 1) + rowBytes;
  if (end > size) {
    throw new ImportError('out-of-bounds',
      `frame bytes [${frame.offset}, ${end}) are beyond the end of memfd fd ${frame.fd} (size ${size})`);
  }
  if (frame.offset + frame.stride * frame.height > WL_SHM_MAX) {
    throw new ImportError('out-of-bounds',
      `frame bytes [${frame.offset}, ${end}) of memfd fd ${frame.fd} lie beyond the 2 GiB that wl_shm can address`);
  }
  return { format, memoryKey: key, memorySize: size, sealedAgainstShrink: (seals & constants.F_SEAL_SHRINK) !== 0 };
}
