// The two memfd surfaces QEMU's pixel updates (Scanout/Update, gl=off) are copied into. An update goes into the
// surface the compositor is not reading: the current one when the compositor has released it, else the other,
// first brought up to date with the rectangles it missed. Allocated once per size, never per update.
import { memfdCreate, ftruncate, addSeals, mmap, munmap, close, constants } from '../../native/fds.js';
import { copyPixels } from '../../native/pixel-copy.js';
import type { PixelFormat } from '../../formats.js';
import type { Rect } from '../../geometry.js';
import type { MemfdFrame } from '../frame.js';
import { countCopy } from '../../copy-stats.js';

/** Past this many missed rectangles a surface is brought up to date whole. */
const MAX_STALE_RECTS = 32;

export interface CopySurface {
  memfd: number;
  map: ArrayBuffer;
  width: number;
  height: number;
  stride: number;
  format: PixelFormat;
  /** Frames of this surface the presenter has not released. */
  held: number;
  /** What the other surface has and this one lacks: rectangles, or 'all'. */
  stale: Rect[] | 'all';
  /** Dropped while frames of it were held: unmapped and closed at the last release (frames borrow the fd). */
  dropped: boolean;
}

export class CopySurfaces {
  readonly stats = { swaps: 0, syncBytes: 0, writesWhileHeld: 0 };
  private surfaces: [CopySurface, CopySurface] | null = null;
  private current = 0;

  get size(): { width: number; height: number; format: PixelFormat } | null {
    const s = this.surfaces?.[0];
    return s ? { width: s.width, height: s.height, format: s.format } : null;
  }

  /** Makes both surfaces width × height in `format`, allocating only when that changes. */
  ensure(width: number, height: number, format: PixelFormat): void {
    const s = this.surfaces?.[0];
    if (s && s.width === width && s.height === height && s.format === format) return;
    this.drop();
    const first = allocate(width, height, format);
    try {
      this.surfaces = [first, allocate(width, height, format)];
    } catch (e) {
      release(first);
      throw e;
    }
    this.current = 0;
  }

  /** The surface to write the next update into (see the file comment); `whole`: the update replaces every pixel,
   *  so a surface switched to needs no bringing up to date. */
  writable(whole = false): CopySurface {
    const surfaces = this.surfaces!;
    const cur = surfaces[this.current];
    if (cur.held === 0) return cur;
    const other = surfaces[1 - this.current];
    if (other.held > 0) {
      this.stats.writesWhileHeld++; // both still on screen (a slow compositor): tear rather than stall QEMU
      return cur;
    }
    const rects = other.stale === 'all' ? null : other.stale;
    const synced = whole ? 0 : copyPixels({ bytes: new Uint8Array(cur.map), stride: cur.stride, fourcc: cur.format.fourcc },
      { bytes: new Uint8Array(other.map), stride: other.stride, fourcc: other.format.fourcc }, cur.width, cur.height, rects);
    this.stats.syncBytes += synced;
    countCopy('qemu-surface-sync', synced);
    other.stale = [];
    this.current = 1 - this.current;
    this.stats.swaps++;
    return other;
  }

  /** Records that `rect` (null: everything) was written into `surface`: the other one now lacks it. */
  written(surface: CopySurface, rect: Rect | null): void {
    const other = this.surfaces![0] === surface ? this.surfaces![1] : this.surfaces![0];
    if (other.stale === 'all') return;
    if (!rect || other.stale.length >= MAX_STALE_RECTS) other.stale = 'all';
    else other.stale.push(rect);
  }

  /** A frame of `surface` for the presenter; the surface counts as held until the frame is released. */
  frame(surface: CopySurface, damage: Rect[] | null, seq: number): MemfdFrame {
    surface.held++;
    let released = false;
    return {
      fd: surface.memfd, offset: 0, width: surface.width, height: surface.height, stride: surface.stride,
      fourcc: surface.format.fourcc, damage, seq, flushedAt: process.hrtime.bigint(),
      release: () => {
        if (released) return;
        released = true;
        if (--surface.held === 0 && surface.dropped) release(surface);
      },
    };
  }

  /** Lets go of both surfaces; one the presenter still holds a frame of is closed when that frame is released. */
  drop(): void {
    for (const surface of this.surfaces ?? []) {
      if (surface.held > 0) surface.dropped = true;
      else release(surface);
    }
    this.surfaces = null;
  }
}

function allocate(width: number, height: number, format: PixelFormat): CopySurface {
  const stride = width * 4;
  const size = Math.ceil((stride * height) / constants.PAGE_SIZE) * constants.PAGE_SIZE;
  const memfd = memfdCreate('wlscanout-qemu-surface', true);
  try {
    ftruncate(memfd, size);
    addSeals(memfd, constants.F_SEAL_SHRINK | constants.F_SEAL_GROW | constants.F_SEAL_SEAL);
    return { memfd, map: mmap(memfd, 0, size, true), width, height, stride, format, held: 0, stale: 'all', dropped: false };
  } catch (error) {
    close(memfd);
    throw error;
  }
}

function release(surface: CopySurface): void {
  munmap(surface.map);
  close(surface.memfd); // the compositor's pool keeps its own reference
}
