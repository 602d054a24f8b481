// QEMU's D-Bus display as a frame source: dmabuf scan-outs (gl=on) become blob resources passed straight
// through; pixel scan-outs (gl=off) are copied once into a memfd surface (the D-Bus messages carry bytes).
// QEMU holds the guest until UpdateDMABUF is answered: the answer goes when the frame is committed to the
// compositor (or dropped). That keeps one frame in flight: the presenter commits once per frame callback, so a
// guest flushing faster waits on its next answer until the compositor asks for a frame.
import type { QemuDisplay, ScanoutEvent, UpdateEvent, DmabufScanoutEvent, DmabufUpdateEvent, ResizeEvent } from './display.js';
import { PixmanFormat } from './display.js';
import { BlobResource } from '../blob-resource.js';
import { MAX_DIMENSION } from '../../import/checks.js';
import type { BlobFrame, FrameSink, MemfdFrame, ScanoutFrame } from '../frame.js';
import { memfdCreate, ftruncate, addSeals, mmap, munmap, close, constants } from '../../native/fds.js';
import { formatByName, type PixelFormat } from '../../formats.js';
import { log } from '../../log.js';

const PIXMAN_TO_FORMAT = new Map<number, PixelFormat>([
  [PixmanFormat.x8r8g8b8, formatByName('XRGB8888')!],
  [PixmanFormat.a8r8g8b8, formatByName('ARGB8888')!],
  [PixmanFormat.x8b8g8r8, formatByName('XBGR8888')!],
  [PixmanFormat.a8b8g8r8, formatByName('ABGR8888')!],
]);

interface Surface {
  memfd: number;
  map: ArrayBuffer;
  width: number;
  height: number;
  stride: number;
  format: PixelFormat;
}

export interface QemuSourceStats {
  scanouts: number;
  dmabufScanouts: number;
  updates: number;
  dmabufUpdates: number;
  bytesCopied: number;
  refused: number;
}

export class QemuSource {
  readonly stats: QemuSourceStats = { scanouts: 0, dmabufScanouts: 0, updates: 0, dmabufUpdates: 0, bytesCopied: 0, refused: 0 };
  private surface: Surface | null = null;
  private resource: BlobResource | null = null;
  private nextResourceId = 1;
  private seq = 0;
  /** Answers owed to QEMU, by frame seq, sent at the frame's commit or its release. */
  private readonly owed = new Map<number, () => void>();
  private readonly detach: () => void;

  /** Feeds `sink` (a Presenter, a CaptureSession, or a FrameTee of both) with the display's frames. */
  constructor(display: QemuDisplay, private readonly sink: FrameSink) {
    const on = <A extends unknown[]>(emitter: { on(e: string, f: (...a: A) => void): unknown; off(e: string, f: (...a: A) => void): unknown }, event: string, f: (...a: A) => void) => {
      emitter.on(event, f);
      return () => emitter.off(event, f);
    };
    const offs = [
      on(display, 'scanout', (e: ScanoutEvent) => this.onScanout(e)),
      on(display, 'update', (e: UpdateEvent) => this.onUpdate(e)),
      on(display, 'resize', (e: ResizeEvent) => this.onResize(e)),
      on(display, 'scanout-dmabuf', (e: DmabufScanoutEvent) => this.onScanoutDmabuf(e)),
      on(display, 'update-dmabuf', (e: DmabufUpdateEvent) => this.onUpdateDmabuf(e)),
      // QEMU 7.2 sends Disable right after each new dmabuf scan-out (it is releasing the old one): not a blank.
      on(display, 'disable', () => log.debug('qemu: disable')),
      on(sink, 'committed', (f: ScanoutFrame) => this.owed.get(f.seq)?.()),
    ];
    this.detach = () => offs.forEach((off) => off());
  }

  close(): void {
    this.detach();
    for (const answer of this.owed.values()) answer();
    this.owed.clear();
    this.resource?.unref();
    this.resource = null;
    this.dropSurface();
  }

  private onScanout(e: ScanoutEvent): void {
    this.stats.scanouts++;
    const surface = this.ensureSurface(e.width, e.height, e.pixmanFormat);
    if (!surface) return;
    this.copyRect(surface, 0, 0, e.width, e.height, e.stride, e.data);
    this.presentSurface(null);
  }

  private onResize(e: ResizeEvent): void {
    this.ensureSurface(e.width, e.height, e.pixmanFormat);
  }

  private onUpdate(e: UpdateEvent): void {
    this.stats.updates++;
    const surface = this.surface;
    if (!surface || e.x < 0 || e.y < 0 || e.w <= 0 || e.h <= 0 || e.x + e.w > surface.width || e.y + e.h > surface.height) {
      this.stats.refused++;
      log.warn({ x: e.x, y: e.y, w: e.w, h: e.h, surface: surface && `${surface.width}x${surface.height}` }, 'qemu: update outside the surface ignored');
      return;
    }
    this.copyRect(surface, e.x, e.y, e.w, e.h, e.stride, e.data);
    this.presentSurface([{ x: e.x, y: e.y, width: e.w, height: e.h }]);
  }

  private onScanoutDmabuf(e: DmabufScanoutEvent): void {
    this.stats.dmabufScanouts++;
    try {
      const resource = new BlobResource({
        id: this.nextResourceId++, width: e.width, height: e.height, fourcc: e.fourcc, modifier: e.modifier,
        planes: [{ offset: 0, stride: e.stride }], dmabufs: [e.fd],
      });
      this.resource?.unref();
      this.resource = resource;
      // y0_top is GL's convention (texture row 0 at the bottom): QEMU 7.2 marks virtio-gpu blob scan-outs
      // y0_top=false, and their memory is top-down (the lab's real-QEMU test shows them pixel-exact as is).
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

  private presentSurface(damage: MemfdFrame['damage']): void {
    const s = this.surface!;
    this.present({
      fd: s.memfd, offset: 0, width: s.width, height: s.height, stride: s.stride, fourcc: s.format.fourcc,
      damage, seq: this.seq++, flushedAt: process.hrtime.bigint(), release: () => {},
    });
  }

  private present(frame: ScanoutFrame): void {
    try {
      this.sink.present(frame);
    } catch (error) {
      this.stats.refused++;
      log.error({ err: (error as Error).message, seq: frame.seq }, 'qemu: frame refused');
    }
  }

  private ensureSurface(width: number, height: number, pixmanFormat: number): Surface | null {
    const format = PIXMAN_TO_FORMAT.get(pixmanFormat);
    if (!format || width <= 0 || height <= 0 || width > MAX_DIMENSION || height > MAX_DIMENSION) {
      this.stats.refused++;
      log.error({ width, height, pixmanFormat: `0x${pixmanFormat.toString(16)}` }, 'qemu: surface refused');
      return null;
    }
    const s = this.surface;
    if (s && s.width === width && s.height === height && s.format === format) return s;
    this.dropSurface();
    const stride = width * 4;
    const size = Math.ceil((stride * height) / constants.PAGE_SIZE) * constants.PAGE_SIZE;
    const memfd = memfdCreate('wlscanout-qemu-surface', true);
    try {
      ftruncate(memfd, size);
      addSeals(memfd, constants.F_SEAL_SHRINK | constants.F_SEAL_GROW | constants.F_SEAL_SEAL);
      this.surface = { memfd, map: mmap(memfd, 0, size, true), width, height, stride, format };
    } catch (error) {
      close(memfd);
      throw error;
    }
    return this.surface;
  }

  private dropSurface(): void {
    if (!this.surface) return;
    munmap(this.surface.map);
    close(this.surface.memfd); // the compositor's pool keeps its own reference
    this.surface = null;
  }

  private copyRect(s: Surface, x: number, y: number, w: number, h: number, srcStride: number, data: Buffer): void {
    const rowBytes = w * 4;
    if (srcStride < rowBytes || data.length < srcStride * (h - 1) + rowBytes) {
      this.stats.refused++;
      log.warn({ x, y, w, h, srcStride, bytes: data.length }, 'qemu: pixel data shorter than its rectangle, ignored');
      return;
    }
    const dst = new Uint8Array(s.map);
    for (let row = 0; row < h; row++) {
      dst.set(data.subarray(row * srcStride, row * srcStride + rowBytes), (y + row) * s.stride + x * 4);
    }
    this.stats.bytesCopied += rowBytes * h;
  }
}
