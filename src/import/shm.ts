// Import of a memfd frame for the wl_shm path: validation only, the pixels are never touched or copied.
import { constants } from '../native/fds.js';
import type { PixelFormat } from '../formats.js';
import type { MemfdFrame } from '../source/frame.js';
import { checkInteger, checkSize, checkStride, formatOf, memfdFacts } from './checks.js';
import { ImportError } from './errors.js';

/** wl_shm pool sizes and buffer offsets are int32 on the wire. */
export const WL_SHM_MAX = 0x7fffffff;

export interface ShmImport {
  format: PixelFormat;
  /** Identity of the memfd (st_dev:st_ino): fd numbers get reused, inodes of live memfds do not. */
  memoryKey: string;
  memorySize: number;
  sealedAgainstShrink: boolean;
}

export function importMemfdFrame(frame: MemfdFrame): ShmImport {
  const format = formatOf('', frame.fourcc);
  checkSize('', frame.width, frame.height);
  checkInteger('', 'offset', frame.offset, 0, Number.MAX_SAFE_INTEGER, 'bad-offset');
  const rowBytes = checkStride('', frame.stride, frame.width, format);
  const { seals, size, key } = memfdFacts('', frame.fd);
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
