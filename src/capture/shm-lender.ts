// The consumer's side of lending: a memfd buffer a recorder or screenshot owns, sealed against shrinking so
// wlscanout can map it once, and mapped here to read the captured pixels.
import { memfdCreate, ftruncate, addSeals, mmap, munmap, close, constants } from '../native/fds.js';
import type { PixelFormat } from '../formats.js';
import type { LentShm } from './lent-buffer.js';

export interface OwnedShmBuffer {
  /** What to lend (its fd stays owned by this buffer). */
  description: LentShm;
  /** The buffer's pixels, top row first. */
  bytes: Uint8Array;
  close(): void;
}

export function allocateShmBuffer(width: number, height: number, format: PixelFormat): OwnedShmBuffer {
  const stride = width * format.bytesPerPixel;
  const size = stride * height;
  const fd = memfdCreate('wlscanout-capture-buffer', true);
  let map: ArrayBuffer;
  try {
    ftruncate(fd, size);
    addSeals(fd, constants.F_SEAL_SHRINK);
    map = mmap(fd, 0, size, false);
  } catch (e) {
    close(fd);
    throw e;
  }
  let closed = false;
  return {
    description: { kind: 'shm', fd, offset: 0, width, height, stride, fourcc: format.fourcc },
    bytes: new Uint8Array(map),
    close: () => {
      if (closed) return;
      closed = true;
      munmap(map);
      close(fd);
    },
  };
}
