// The GPU side of captures: lent dmabufs imported as EGLImages and filled by the GPU blit. A guest frame that is
// a dmabuf (or guest memory udmabuf can wrap) is imported once per resource and drawn from directly; other frames
// are uploaded from their mapping. Where no GPU blitter can open, lent dmabufs are written by the CPU instead.
import { GpuBlitter, type GpuImage } from '../native/gpu-blit.js';
import { close } from '../native/fds.js';
import { waitFence } from '../sync/fence.js';
import { importBlobAsDmabuf } from '../import/udmabuf.js';
import { isBlobFrame, type ScanoutFrame } from '../source/frame.js';
import type { BlobResource } from '../source/blob-resource.js';
import type { Rect } from '../geometry.js';
import { log } from '../log.js';
import type { FrameReader } from './frame-reader.js';
import type { GpuTarget, LentDmabuf } from './lent-buffer.js';
import { CaptureError } from './errors.js';

export class GpuCapture {
  readonly stats = { imports: 0, uploads: 0, blits: 0 };
  private readonly sources = new Map<BlobResource, GpuImage | null>();

  constructor(readonly blitter: GpuBlitter) {}

  /** Opens a GPU blitter (see GpuBlitter.open), or returns null with the reason logged. */
  static tryOpen(device?: string): GpuCapture | null {
    try {
      return new GpuCapture(GpuBlitter.open({ device }));
    } catch (e) {
      log.info({ err: (e as Error).message }, 'capture: no GPU blit, lent dmabufs are written by the CPU');
      return null;
    }
  }

  /** For CaptureSessionOptions.gpuImport: throws when EGL refuses the dmabuf. */
  readonly importTarget = (desc: LentDmabuf): GpuTarget => {
    const image = this.blitter.importDmabuf(desc);
    return {
      fill: (frame, reader, rects) => this.fill(frame, reader, rects, image),
      destroy: () => this.blitter.destroyImage(image),
    };
  };

  private async fill(frame: ScanoutFrame, reader: FrameReader, rects: readonly Rect[] | null, target: GpuImage): Promise<void> {
    let source = isBlobFrame(frame) ? this.sourceOf(frame.resource) : null;
    let uploaded: GpuImage | null = null;
    if (!source) {
      const pixels = reader.read(frame);
      try {
        uploaded = this.blitter.upload(pixels.bytes, pixels.width, pixels.height, pixels.stride, pixels.fourcc);
        this.stats.uploads++;
      } finally {
        pixels.end();
      }
      source = uploaded;
    }
    const bottomUp = isBlobFrame(frame) && frame.resource.bottomUp;
    try {
      const fence = this.blitter.blit(source, target, { yFlip: bottomUp, rects });
      this.stats.blits++;
      if (fence !== null) {
        const outcome = await waitFence(fence, 1000).result.finally(() => close(fence));
        if (outcome !== 'signalled') throw new CaptureError('fence-failed', `the GPU blit's fence did not signal (${outcome})`);
      }
    } finally {
      if (uploaded) this.blitter.destroyImage(uploaded);
    }
  }

  /** The resource as an EGLImage, imported once; null when it cannot be (then frames are uploaded). */
  private sourceOf(resource: BlobResource): GpuImage | null {
    if (this.sources.has(resource)) return this.sources.get(resource)!;
    let image: GpuImage | null = null;
    try {
      const dmabuf = importBlobAsDmabuf(resource);
      try {
        image = this.blitter.importDmabuf({
          width: dmabuf.width, height: dmabuf.height, fourcc: dmabuf.fourcc, modifier: dmabuf.modifier,
          planes: [{ fd: dmabuf.fd, offset: dmabuf.offset, stride: dmabuf.stride }],
        });
        this.stats.imports++;
      } finally {
        close(dmabuf.fd);
      }
    } catch (e) {
      log.debug({ resource: resource.id, err: (e as Error).message }, 'capture: guest frame not importable, uploading it');
    }
    this.sources.set(resource, image);
    resource.once('destroyed', () => {
      const cached = this.sources.get(resource);
      if (cached) this.blitter.destroyImage(cached);
      this.sources.delete(resource);
    });
    return image;
  }

  close(): void {
    this.sources.clear();
    this.blitter.close();
  }
}
