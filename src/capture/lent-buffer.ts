// A buffer a consumer lends for captures, imported once: a wl_shm-style memfd range, or a dmabuf. The buffer's
// fds are dups owned here until the consumer takes the buffer back.
import { readFileSync } from 'node:fs';
import { dup, close, fstat, mmap, munmap, pwrite, getSeals, constants } from '../native/fds.js';
import { dmabufBeginCpuAccess, dmabufEndCpuAccess } from '../native/dmabuf.js';
import { copyPixels } from '../native/pixel-copy.js';
import { formatByFourcc, fourccToString, type PixelFormat } from '../formats.js';
import { MAX_DIMENSION } from '../import/checks.js';
import { DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR } from '../import/blob.js';
import type { Rect } from '../geometry.js';
import type { FramePixels, FrameReader } from './frame-reader.js';
import type { ScanoutFrame } from '../source/frame.js';
import { CaptureError } from './errors.js';

export interface LentShm {
  kind: 'shm';
  /** A memfd (or other shared-memory file) the consumer keeps its own fd to. Borrowed: dup'd here. */
  fd: number;
  offset: number;
  width: number;
  height: number;
  stride: number;
  fourcc: number;
}

export interface LentDmabuf {
  kind: 'dmabuf';
  width: number;
  height: number;
  fourcc: number;
  modifier: bigint;
  /** One plane for the RGB formats captures produce. Borrowed: dup'd here. */
  planes: { fd: number; offset: number; stride: number }[];
}

export type LentBufferDescription = LentShm | LentDmabuf;

/**
 * How a lent buffer is written: 'shm-mapped' (memfd sealed against shrinking: mapped once), 'shm-pwrite' (not
 * sealed: the lender could truncate it, so it is written with pwrite, which cannot SIGBUS), 'dmabuf-mapped'
 * (mmap + DMA_BUF_IOCTL_SYNC), 'dmabuf-gpu' (imported as an EGLImage, drawn by the GPU blit).
 */
export type LentBufferAccess = 'shm-mapped' | 'shm-pwrite' | 'dmabuf-mapped' | 'dmabuf-gpu';

/** What the GPU blit needs to know about a lent dmabuf it imported. */
export interface GpuTarget {
  /** Draws `rects` of the frame (null: all) into the buffer, upright; resolves when the GPU has finished. */
  fill(frame: ScanoutFrame, reader: FrameReader, rects: readonly Rect[] | null): Promise<void>;
  destroy(): void;
}

let nextId = 1;

const O_ACCMODE = 0o3;
const O_RDONLY = 0o0;
const O_WRONLY = 0o1;
const O_APPEND = 0o2000;
const O_PATH = 0o10000000;

/** The fd's open flags (O_ACCMODE, O_APPEND, O_PATH, …) from /proc/self/fdinfo (0o2, read-write, when unknown). */
function openFlags(fd: number): number {
  try {
    const m = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    if (m) return parseInt(m[1], 8);
  } catch {
    // no /proc: the first write will tell
  }
  return 0o2;
}

export class LentBuffer {
  readonly id = nextId++;
  readonly width: number;
  readonly height: number;
  readonly format: PixelFormat;
  readonly stride: number;
  readonly access: LentBufferAccess;
  /** Seq of the frame last copied in, or null before the first fill. */
  lastSeq: number | null = null;
  takenBack = false;
  gpu: GpuTarget | null = null;
  private readonly fd: number;
  private readonly offset: number;
  private map: ArrayBuffer | null = null;
  private scratch: Buffer | null = null;

  /** Validates and imports `desc`; throws CaptureError. `gpuImport` is tried for dmabufs when given. */
  constructor(desc: LentBufferDescription, gpuImport?: (desc: LentDmabuf) => GpuTarget) {
    // Checked as values, not only as types: a JavaScript caller can pass anything.
    const kind: unknown = desc.kind;
    if (kind !== 'shm' && kind !== 'dmabuf') {
      throw new CaptureError('unsupported-format', `lent buffer: kind ${String(kind)} is neither 'shm' (a memfd range) nor 'dmabuf'`);
    }
    const what = `lent ${desc.kind} buffer`;
    if (!Number.isInteger(desc.width) || !Number.isInteger(desc.height) || desc.width < 1 || desc.height < 1 ||
      desc.width > MAX_DIMENSION || desc.height > MAX_DIMENSION) {
      throw new CaptureError('bad-size', `${what}: size ${desc.width}x${desc.height} is out of range (1..${MAX_DIMENSION})`);
    }
    const format = formatByFourcc(desc.fourcc);
    if (!format || format.bytesPerPixel !== 4) {
      const name = typeof desc.fourcc === 'number' ? fourccToString(desc.fourcc) : String(desc.fourcc);
      throw new CaptureError('unsupported-format', `${what}: format ${name} is not one captures ` +
        'produce (XRGB8888, ARGB8888, XBGR8888, ABGR8888)');
    }
    if (desc.kind === 'dmabuf') {
      const planes: unknown[] = Array.isArray(desc.planes) ? desc.planes : [];
      if (planes.length !== 1) throw new CaptureError('unsupported-format', `${what}: ${planes.length} planes given, ${format.name} has 1`);
      if (typeof planes[0] !== 'object' || planes[0] === null) {
        throw new CaptureError('unsupported-format', `${what}: plane 0 is ${String(planes[0])}, not { fd, offset, stride }`);
      }
      const modifier: unknown = desc.modifier;
      if (typeof modifier !== 'bigint' || modifier < 0n || modifier >= 1n << 64n) {
        throw new CaptureError('unsupported-modifier', `${what}: modifier ${String(modifier)} is not a 64-bit DRM format modifier`);
      }
    }
    const plane = desc.kind === 'shm' ? desc : desc.planes[0];
    const rowBytes = desc.width * 4;
    if (!Number.isInteger(plane.stride) || plane.stride < rowBytes || plane.stride > 0x7fffffff) {
      throw new CaptureError('bad-stride', `${what}: stride ${plane.stride} ` + (plane.stride < rowBytes
        ? `is less than ${desc.width} × 4 = ${rowBytes} bytes of ${format.name}` : `is not an integer from ${rowBytes} up to 2^31 - 1`));
    }
    if (!Number.isInteger(plane.offset) || plane.offset < 0) {
      throw new CaptureError('bad-size', `${what}: offset ${plane.offset} is not a non-negative integer`);
    }
    this.width = desc.width;
    this.height = desc.height;
    this.format = format;
    this.stride = plane.stride;
    this.offset = plane.offset;
    try {
      this.fd = dup(plane.fd);
    } catch (e) {
      throw new CaptureError('bad-fd', `${what}: fd ${plane.fd} cannot be used: ${(e as Error).message}`);
    }
    try {
      this.access = desc.kind === 'shm' ? this.importShm(what) : this.importDmabuf(what, desc, gpuImport);
    } catch (e) {
      this.release();
      throw e;
    }
  }

  /** Bytes from the buffer's first pixel to the end of its last row. */
  get byteLength(): number {
    return this.stride * (this.height - 1) + this.width * 4;
  }

  private importShm(what: string): LentBufferAccess {
    const st = fstat(this.fd);
    if ((st.mode & 0o170000) !== 0o100000) throw new CaptureError('bad-fd', `${what}: fd is not a shared-memory file (a memfd or shm file)`);
    if (st.size < this.offset + this.byteLength) {
      throw new CaptureError('too-small', `${what}: ${this.width}x${this.height} at stride ${this.stride} from offset ` +
        `${this.offset} needs ${this.offset + this.byteLength} bytes, the file has ${st.size}`);
    }
    // How it was opened: an fd that cannot be written is refused now, not at every capture.
    const flags = openFlags(this.fd);
    if (flags & O_PATH) throw new CaptureError('bad-fd', `${what}: the fd is an O_PATH fd, which cannot be written`);
    if ((flags & O_ACCMODE) === O_RDONLY) throw new CaptureError('read-only', `${what}: the fd was not opened for writing (O_RDONLY)`);
    let seals = 0;
    try {
      seals = getSeals(this.fd);
    } catch {
      // not a memfd: no seals, so it may shrink
    }
    if (seals & (constants.F_SEAL_WRITE | constants.F_SEAL_FUTURE_WRITE)) {
      throw new CaptureError('read-only', `${what}: the memfd is sealed against writes`);
    }
    // A write-only fd cannot be mapped shared and writable (that needs O_RDWR): pwrite it, like an unsealed one.
    if (!(seals & constants.F_SEAL_SHRINK) || (flags & O_ACCMODE) === O_WRONLY) {
      if (flags & O_APPEND) {
        throw new CaptureError('bad-fd', `${what}: the fd was opened with O_APPEND, so pwrite would write at the end ` +
          `of the file, not at offset ${this.offset}`);
      }
      return 'shm-pwrite';
    }
    try {
      this.map = mmap(this.fd, this.offset, this.byteLength, true);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EACCES') throw new CaptureError('read-only', `${what}: the fd was not opened for writing (mmap: EACCES)`);
      throw new CaptureError('bad-fd', `${what}: cannot map it: ${err.message}`);
    }
    return 'shm-mapped';
  }

  private importDmabuf(what: string, desc: LentDmabuf, gpuImport?: (desc: LentDmabuf) => GpuTarget): LentBufferAccess {
    try {
      dmabufBeginCpuAccess(this.fd, 'write'); // DMA_BUF_IOCTL_SYNC: ENOTTY unless the fd is a dmabuf
      dmabufEndCpuAccess(this.fd, 'write');
    } catch (e) {
      throw new CaptureError('not-dmabuf', `${what}: fd ${desc.planes[0].fd} is not a dmabuf (${(e as Error).message})`);
    }
    let gpuError: Error | null = null;
    if (gpuImport) {
      try {
        this.gpu = gpuImport({ ...desc, planes: [{ ...desc.planes[0], fd: this.fd }] });
        return 'dmabuf-gpu';
      } catch (e) {
        gpuError = e as Error;
      }
    }
    if (desc.modifier !== DRM_FORMAT_MOD_LINEAR && desc.modifier !== DRM_FORMAT_MOD_INVALID) {
      throw new CaptureError(gpuError ? 'import-failed' : 'unsupported-modifier', `${what}: modifier ` +
        `0x${desc.modifier.toString(16)} is not linear, so only the GPU blit could write it` +
        (gpuError ? `, and it failed: ${gpuError.message}` : ', and none is available'));
    }
    try {
      this.map = mmap(this.fd, 0, this.offset + this.byteLength, true);
    } catch (e) {
      throw new CaptureError('import-failed', `${what}: cannot map ${this.offset + this.byteLength} bytes of the dmabuf ` +
        `(${(e as Error).message})${gpuError ? `; the GPU import failed too: ${gpuError.message}` : ''}`);
    }
    return 'dmabuf-mapped';
  }

  /**
   * Copies `rects` (frame coordinates; null: all) of `frame` in, flipping a bottom-up frame upright. The caller
   * has checked the sizes match. Returns the bytes written.
   */
  async fill(source: ScanoutFrame, reader: FrameReader, rects: readonly Rect[] | null): Promise<number> {
    if (this.gpu) {
      await this.gpu.fill(source, reader, rects);
      return 0; // the GPU wrote it: no CPU bytes
    }
    const frame = reader.read(source);
    try {
      return this.fillFrom(frame, rects);
    } finally {
      frame.end();
    }
  }

  private fillFrom(frame: FramePixels, rects: readonly Rect[] | null): number {
    const yFlip = frame.bottomUp;
    if (this.access === 'shm-pwrite') return this.fillByPwrite(frame, rects, yFlip);
    const bytes = new Uint8Array(this.map!, this.access === 'dmabuf-mapped' ? this.offset : 0, this.byteLength);
    const dst = { bytes, stride: this.stride, fourcc: this.format.fourcc };
    if (this.access === 'shm-mapped') return copyPixels(frame, dst, frame.width, frame.height, rects, yFlip);
    dmabufBeginCpuAccess(this.fd, 'write');
    try {
      return copyPixels(frame, dst, frame.width, frame.height, rects, yFlip);
    } finally {
      dmabufEndCpuAccess(this.fd, 'write');
    }
  }

  private fillByPwrite(frame: FramePixels, rects: readonly Rect[] | null, yFlip: boolean): number {
    const size = fstat(this.fd).size;
    if (size < this.offset + this.byteLength) {
      throw new CaptureError('truncated', `lent shm buffer ${this.id}: the lender truncated it to ${size} bytes ` +
        `(${this.offset + this.byteLength} needed)`);
    }
    // Converted here first, then written: pwrite into a file that shrank meanwhile grows it instead of faulting.
    if (!this.scratch) this.scratch = Buffer.alloc(this.byteLength);
    const dst = { bytes: this.scratch, stride: this.stride, fourcc: this.format.fourcc };
    copyPixels(frame, dst, frame.width, frame.height, rects, yFlip);
    let top = 0;
    let bottom = this.height;
    if (rects) {
      top = Math.min(...rects.map((r) => (yFlip ? this.height - r.y - r.height : r.y)));
      bottom = Math.max(...rects.map((r) => (yFlip ? this.height - r.y : r.y + r.height)));
    }
    const from = top * this.stride;
    const to = Math.min(this.byteLength, bottom * this.stride);
    if (to <= from) return 0;
    try {
      return pwrite(this.fd, this.scratch.subarray(from, to), this.offset + from);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EBADF') throw new CaptureError('read-only', `lent shm buffer ${this.id}: the fd was not opened for writing`);
      if (err.code === 'EPERM') throw new CaptureError('read-only', `lent shm buffer ${this.id}: the memfd was sealed against writes`);
      throw new CaptureError('bad-fd', `lent shm buffer ${this.id}: pwrite failed: ${err.message}`);
    }
  }

  /** Drops the import and closes the dup'd fd. Idempotent. */
  release(): void {
    if (this.takenBack) return;
    this.takenBack = true;
    this.gpu?.destroy();
    this.gpu = null;
    if (this.map) munmap(this.map);
    this.map = null;
    this.scratch = null;
    if (this.fd !== undefined) close(this.fd);
  }
}
