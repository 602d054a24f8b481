// QEMU's D-Bus display as a frame source: dmabuf scan-outs (gl=on) become blob resources passed straight
// through; pixel scan-outs (gl=off) are copied once into one of two memfd surfaces, the one the compositor is
// not reading (copy-surfaces.ts; the D-Bus messages carry bytes).
// QEMU holds the guest until UpdateDMABUF is answered: the answer goes when the frame is committed to the
// compositor (or dropped). That keeps one frame in flight: the presenter commits once per frame callback, so a
// guest flushing faster waits on its next answer until the compositor asks for a frame.
import type {
  QemuDisplay, ScanoutEvent, UpdateEvent, DmabufScanoutEvent, DmabufUpdateEvent, ResizeEvent, MapScanoutEvent,
  MapUpdateEvent, Dmabuf2ScanoutEvent, ListenerEvents,
} from './display.js';
import { PixmanFormat } from './display.js';
import { BlobResource } from '../blob-resource.js';
import { MAX_DIMENSION } from '../../import/checks.js';
import type { BlobFrame, FrameSink, MemfdFrame, ScanoutFrame } from '../frame.js';
import { close } from '../../native/fds.js';
import { CopySurfaces, type CopySurface } from './copy-surfaces.js';
import { formatByFourcc, formatByName, type PixelFormat } from '../../formats.js';
import { log } from '../../log.js';
import { listen } from '../../events.js';
import { countCopy } from '../../copy-stats.js';

const PIXMAN_TO_FORMAT = new Map<number, PixelFormat>([
  [PixmanFormat.x8r8g8b8, formatByName('XRGB8888')!],
  [PixmanFormat.a8r8g8b8, formatByName('ARGB8888')!],
  [PixmanFormat.x8b8g8r8, formatByName('XBGR8888')!],
  [PixmanFormat.a8b8g8r8, formatByName('ABGR8888')!],
]);

export interface QemuSourceStats {
  scanouts: number;
  dmabufScanouts: number;
  updates: number;
  dmabufUpdates: number;
  mapScanouts: number;
  mapUpdates: number;
  bytesCopied: number;
  refused: number;
}

/** What QemuSource listens to: a QemuDisplay, or anything emitting the listener's events. */
export interface ListenerEventSource {
  on(event: keyof ListenerEvents, listener: (...args: never[]) => void): unknown;
  off(event: keyof ListenerEvents, listener: (...args: never[]) => void): unknown;
}

export class QemuSource {
  readonly stats: QemuSourceStats = { scanouts: 0, dmabufScanouts: 0, updates: 0, dmabufUpdates: 0, mapScanouts: 0, mapUpdates: 0, bytesCopied: 0, refused: 0 };
  private readonly surfaces = new CopySurfaces();
  /** QEMU's mapped surface (Unix.Map): our dup of its memfd and the layout. */
  private mapped: (Omit<MemfdFrame, 'damage' | 'seq' | 'flushedAt' | 'release'> & { held: number; dropped: boolean }) | null = null;
  private resource: BlobResource | null = null;
  private nextResourceId = 1;
  private seq = 0;
  /** Answers owed to QEMU, by frame seq, sent at the frame's commit or its release. */
  private readonly owed = new Map<number, () => void>();
  private readonly detach: () => void;

  /** Feeds `sink` (a Presenter, a CaptureSession, or a FrameTee of both) with the display's frames. */
  constructor(display: QemuDisplay | ListenerEventSource, private readonly sink: FrameSink) {
    const offs = [
      listen(display, 'scanout', (e: ScanoutEvent) => this.onScanout(e)),
      listen(display, 'update', (e: UpdateEvent) => this.onUpdate(e)),
      listen(display, 'resize', (e: ResizeEvent) => this.onResize(e)),
      listen(display, 'scanout-dmabuf', (e: DmabufScanoutEvent) => this.onScanoutDmabuf(e)),
      listen(display, 'update-dmabuf', (e: DmabufUpdateEvent) => this.onUpdateDmabuf(e)),
      listen(display, 'scanout-map', (e: MapScanoutEvent) => this.onScanoutMap(e)),
      listen(display, 'update-map', (e: MapUpdateEvent) => this.onUpdateMap(e)),
      listen(display, 'scanout-dmabuf2', (e: Dmabuf2ScanoutEvent) => this.onScanoutDmabuf2(e)),
      // QEMU 7.2 sends Disable right after each new dmabuf scan-out (it is releasing the old one): not a blank.
      listen(display, 'disable', () => log.debug('qemu: disable')),
      listen(sink, 'committed', (f: ScanoutFrame) => this.owed.get(f.seq)?.()),
    ];
    this.detach = () => offs.forEach((off) => off());
  }

  close(): void {
    this.detach();
    for (const answer of this.owed.values()) answer();
    this.owed.clear();
    this.resource?.unref();
    this.resource = null;
    this.surfaces.drop();
    this.dropMapped();
  }

  /** QEMU 9.2+ (Unix.Map): QEMU's own surface memfd goes to the compositor as wl_shm, no copy. */
  private onScanoutMap(e: MapScanoutEvent): void {
    this.stats.mapScanouts++;
    const format = PIXMAN_TO_FORMAT.get(e.pixmanFormat);
    if (!format) {
      this.stats.refused++;
      log.error({ pixmanFormat: `0x${e.pixmanFormat.toString(16)}` }, 'qemu: mapped surface format refused');
      close(e.fd);
      return;
    }
    this.dropMapped();
    this.mapped = {
      fd: e.fd, offset: e.offset, width: e.width, height: e.height, stride: e.stride, fourcc: format.fourcc, held: 0, dropped: false,
    };
    this.presentMapped(null);
  }

  private onUpdateMap(e: MapUpdateEvent): void {
    this.stats.mapUpdates++;
    if (!this.mapped) return;
    this.presentMapped([{ x: e.x, y: e.y, width: e.w, height: e.h }]);
  }

  private presentMapped(damage: MemfdFrame['damage']): void {
    const mapped = this.mapped!;
    mapped.held++;
    let released = false;
    const { held: _held, dropped: _dropped, ...layout } = mapped;
    this.present({
      ...layout, damage, seq: this.seq++, flushedAt: process.hrtime.bigint(),
      release: () => {
        if (released) return;
        released = true;
        if (--mapped.held === 0 && mapped.dropped) close(mapped.fd);
      },
    });
  }

  /** Lets go of QEMU's mapped surface: its fd is closed now, or at the release of the last frame still using it. */
  private dropMapped(): void {
    const mapped = this.mapped;
    this.mapped = null;
    if (!mapped) return;
    if (mapped.held > 0) mapped.dropped = true;
    else close(mapped.fd); // the compositor's pool keeps its own reference
  }

  /**
   * QEMU 10.1+ (Unix.ScanoutDMABUF2): up to four planes, and a rectangle of a larger backing. A linear
   * single-plane buffer shows the rectangle by starting its plane there; other layouts must show the whole backing.
   */
  private onScanoutDmabuf2(e: Dmabuf2ScanoutEvent): void {
    this.stats.dmabufScanouts++;
    try {
      const whole = e.x === 0 && e.y === 0 && e.width === e.backingWidth && e.height === e.backingHeight;
      const linear = e.modifier === 0n || e.modifier === 0xffffffffffffffn;
      if (!whole && !(linear && e.fds.length === 1)) {
        throw new Error(`a ${e.width}x${e.height}+${e.x}+${e.y} rectangle of a ${e.backingWidth}x${e.backingHeight} ` +
          `${e.fds.length}-plane buffer with modifier 0x${e.modifier.toString(16)} cannot be shown by itself`);
      }
      const bpp = formatByFourcc(e.fourcc)?.bytesPerPixel ?? 0; // unknown formats fail validation below
      const planes = e.offsets.map((offset, i) => ({
        offset: i === 0 && !whole ? offset + e.y * e.strides[0] + e.x * bpp : offset, stride: e.strides[i],
      }));
      const resource = new BlobResource({
        id: this.nextResourceId++, width: e.width, height: e.height, fourcc: e.fourcc, modifier: e.modifier,
        planes, dmabufs: e.fds, bottomUp: e.y0Top,
      });
      this.resource?.unref();
      this.resource = resource;
      this.presentDmabuf(null, () => {});
    } catch (error) {
      this.stats.refused++;
      log.error({ err: (error as Error).message, width: e.width, height: e.height, fourcc: e.fourcc }, 'qemu: dmabuf scan-out refused');
    } finally {
      e.fds.forEach((fd) => close(fd));
    }
  }

  private onScanout(e: ScanoutEvent): void {
    this.stats.scanouts++;
    if (!this.ensureSurfaces(e.width, e.height, e.pixmanFormat)) return;
    const surface = this.surfaces.writable(true);
    if (!this.copyRect(surface, 0, 0, e.width, e.height, e.stride, e.data)) return;
    this.surfaces.written(surface, null);
    this.present(this.surfaces.frame(surface, null, this.seq++));
  }

  private onResize(e: ResizeEvent): void {
    this.ensureSurfaces(e.width, e.height, e.pixmanFormat);
  }

  private onUpdate(e: UpdateEvent): void {
    this.stats.updates++;
    const size = this.surfaces.size;
    if (!size || e.x < 0 || e.y < 0 || e.w <= 0 || e.h <= 0 || e.x + e.w > size.width || e.y + e.h > size.height) {
      this.stats.refused++;
      log.warn({ x: e.x, y: e.y, w: e.w, h: e.h, surface: size && `${size.width}x${size.height}` }, 'qemu: update outside the surface ignored');
      return;
    }
    const surface = this.surfaces.writable(e.x === 0 && e.y === 0 && e.w === size.width && e.h === size.height);
    if (!this.copyRect(surface, e.x, e.y, e.w, e.h, e.stride, e.data)) return;
    const rect = { x: e.x, y: e.y, width: e.w, height: e.h };
    this.surfaces.written(surface, rect);
    this.present(this.surfaces.frame(surface, [rect], this.seq++));
  }

  private onScanoutDmabuf(e: DmabufScanoutEvent): void {
    this.stats.dmabufScanouts++;
    try {
      const resource = new BlobResource({
        id: this.nextResourceId++, width: e.width, height: e.height, fourcc: e.fourcc, modifier: e.modifier,
        planes: [{ offset: 0, stride: e.stride }], dmabufs: [e.fd],
        // QEMU's y0_top is true for GL framebuffers (row 0 at the bottom, e.g. virgl): shown upright through
        // linux-dmabuf's y_invert flag, not a copy. Blob scan-outs (dumb buffers) come with y0_top = false and
        // are top-down (the lab's real-QEMU test shows them pixel-exact as they are).
        bottomUp: e.y0Top,
      });
      this.resource?.unref();
      this.resource = resource;
      log.debug({ resource: resource.id, y0Top: e.y0Top }, 'qemu: dmabuf scan-out');
      this.presentDmabuf(null, () => {});
    } catch (error) {
      this.stats.refused++;
      log.error({ err: (error as Error).message, width: e.width, height: e.height, fourcc: e.fourcc }, 'qemu: dmabuf scan-out refused');
    } finally {
      close(e.fd);
    }
  }

  private onUpdateDmabuf(e: DmabufUpdateEvent): void {
    this.stats.dmabufUpdates++;
    if (!this.resource) {
      e.done();
      return;
    }
    this.presentDmabuf([{ x: e.x, y: e.y, width: e.w, height: e.h }], e.done);
  }

  private presentDmabuf(damage: BlobFrame['damage'], done: () => void): void {
    const seq = this.seq++;
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      this.owed.delete(seq);
      done();
    };
    this.owed.set(seq, answer);
    const frame: BlobFrame = {
      resource: this.resource!, damage, seq, flushedAt: process.hrtime.bigint(), acquireFence: null,
      release: (fence) => {
        if (fence !== null && fence !== undefined) close(fence);
        answer();
      },
    };
    this.present(frame);
  }

  private present(frame: ScanoutFrame): void {
    try {
      this.sink.present(frame);
    } catch (error) {
      this.stats.refused++;
      log.error({ err: (error as Error).message, seq: frame.seq }, 'qemu: frame refused');
    }
  }

  private ensureSurfaces(width: number, height: number, pixmanFormat: number): boolean {
    const format = PIXMAN_TO_FORMAT.get(pixmanFormat);
    if (!format || width <= 0 || height <= 0 || width > MAX_DIMENSION || height > MAX_DIMENSION) {
      this.stats.refused++;
      log.error({ width, height, pixmanFormat: `0x${pixmanFormat.toString(16)}` }, 'qemu: surface refused');
      return false;
    }
    this.surfaces.ensure(width, height, format);
    return true;
  }

  private copyRect(s: CopySurface, x: number, y: number, w: number, h: number, srcStride: number, data: Buffer): boolean {
    const rowBytes = w * 4;
    if (srcStride < rowBytes || data.length < srcStride * (h - 1) + rowBytes) {
      this.stats.refused++;
      log.warn({ x, y, w, h, srcStride, bytes: data.length }, 'qemu: pixel data shorter than its rectangle, ignored');
      return false;
    }
    const dst = new Uint8Array(s.map);
    for (let row = 0; row < h; row++) {
      dst.set(data.subarray(row * srcStride, row * srcStride + rowBytes), (y + row) * s.stride + x * 4);
    }
    this.stats.bytesCopied += rowBytes * h;
    countCopy('qemu-pixels', rowBytes * h);
    return true;
  }
}
