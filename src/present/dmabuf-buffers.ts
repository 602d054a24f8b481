// One wl_buffer per blob resource, made once from its dmabuf (zwp_linux_buffer_params_v1.create, so a refused
// buffer is a 'failed' event and not a fatal protocol error). A buffer lives until its resource has been
// unreferenced by the source *and* the compositor has released it.
import { EventEmitter } from 'node:events';
import type { Connection } from '../wayland/connection.js';
import type { WlBuffer, ZwpLinuxDmabufV1 } from '../wayland/protocols/index.js';
import { ZwpLinuxBufferParamsV1Flags } from '../wayland/protocols/index.js';
import type { BlobResource } from '../source/blob-resource.js';
import { isBlobFrame, type ScanoutFrame } from '../source/frame.js';
import { importBlobAsDmabuf, type DmabufImport } from '../import/udmabuf.js';
import type { DmabufFormats } from './dmabuf-formats.js';
import { close } from '../native/fds.js';
import { log } from '../log.js';

export class DmabufBuffer {
  wlBuffer: WlBuffer | null = null;
  state: 'creating' | 'ready' | 'failed' = 'creating';
  /** The frame the compositor may still read through this buffer. */
  holder: ScanoutFrame | null = null;
  /** The holder is released by its explicit-sync release object, not by wl_buffer.release. */
  explicitRelease = false;
  onUnreferenced: (() => void) | null = null;
  constructor(readonly resource: BlobResource, readonly dmabuf: DmabufImport) {}
  get busy(): boolean {
    return this.holder !== null;
  }
}

export interface DmabufBufferStats {
  imports: number;
  buffersCreated: number;
  buffersFailed: number;
  buffersDestroyed: number;
  reuseWhileHeld: number;
}

type CacheEvents = {
  /** A buffer became usable (created) or unusable (failed, with the compositor's refusal). */
  ready: [DmabufBuffer];
  failed: [DmabufBuffer, Error];
};

export class DmabufBufferCache extends EventEmitter<CacheEvents> {
  readonly stats: DmabufBufferStats = { imports: 0, buffersCreated: 0, buffersFailed: 0, buffersDestroyed: 0, reuseWhileHeld: 0 };
  readonly buffers = new Map<BlobResource, DmabufBuffer>();

  constructor(private readonly connection: Connection, private readonly linuxDmabuf: ZwpLinuxDmabufV1,
    private readonly formats: DmabufFormats) {
    super();
  }

  /** The buffer for `resource`, importing it on first use (throws ImportError when it cannot be imported). */
  bufferFor(resource: BlobResource): DmabufBuffer {
    const existing = this.buffers.get(resource);
    if (existing) return existing;
    const dmabuf = importBlobAsDmabuf(resource);
    this.stats.imports++;
    const buffer = new DmabufBuffer(resource.ref(), dmabuf);
    this.buffers.set(resource, buffer);
    buffer.onUnreferenced = () => this.dropIfUnused(buffer);
    resource.on('unreferenced', buffer.onUnreferenced);
    const params = this.linuxDmabuf.createParams();
    const { fd, offset, stride, width, height, fourcc } = dmabuf;
    const modifier = this.formats.wireModifier(fourcc, dmabuf.modifier) ?? dmabuf.modifier;
    params.add(fd, 0, offset, stride, Number(modifier >> 32n), Number(modifier & 0xffffffffn));
    params.on({
      created: (wlBuffer) => {
        params.destroy();
        buffer.wlBuffer = wlBuffer;
        wlBuffer.on({ release: () => this.onRelease(buffer) });
        if (!this.buffers.has(resource)) { // dropped while being created
          this.destroyWlBuffer(buffer);
          return;
        }
        buffer.state = 'ready';
        this.stats.buffersCreated++;
        this.emit('ready', buffer);
      },
      failed: () => {
        params.destroy();
        buffer.state = 'failed';
        this.stats.buffersFailed++;
        const error = new Error(`the compositor refused the dmabuf of ${resource} (zwp_linux_buffer_params_v1.failed)`);
        this.emit('failed', buffer, error);
      },
    });
    // A bottom-up (GL) frame is shown upright by the compositor, not copied.
    params.create(width, height, fourcc, resource.bottomUp ? ZwpLinuxBufferParamsV1Flags.y_invert : 0);
    log.debug({ resource: resource.id, fd, stride, fourcc, modifier: `0x${modifier.toString(16)}` }, 'dmabuf imported');
    return buffer;
  }

  /** Marks `buffer` as attached with `frame`; a previous holder is released now. */
  hold(buffer: DmabufBuffer, frame: ScanoutFrame, explicitRelease = false): void {
    if (buffer.holder && buffer.holder !== frame) {
      this.stats.reuseWhileHeld++;
      buffer.holder.release();
    }
    buffer.holder = frame;
    buffer.explicitRelease = explicitRelease;
  }

  /** The compositor let go of the frame attached with buffer (wl_buffer.release or an explicit-sync release). */
  releaseHolder(buffer: DmabufBuffer, frame: ScanoutFrame, releaseFence: number | null = null): void {
    if (buffer.holder !== frame) {
      if (releaseFence !== null) close(releaseFence);
      return;
    }
    buffer.holder = null;
    if (isBlobFrame(frame)) frame.release(releaseFence);
    else {
      if (releaseFence !== null) close(releaseFence);
      frame.release();
    }
    this.dropIfUnused(buffer);
  }

  /** Releases held frames and destroys every buffer (the window is going away). */
  destroy(): void {
    for (const buffer of [...this.buffers.values()]) {
      const holder = buffer.holder;
      buffer.holder = null;
      holder?.release();
      this.drop(buffer);
    }
  }

  private onRelease(buffer: DmabufBuffer): void {
    if (buffer.holder && buffer.explicitRelease) return; // its release object will say, with a fence
    if (buffer.holder) this.releaseHolder(buffer, buffer.holder);
    else this.dropIfUnused(buffer);
  }

  /** Drops the buffer once only our reference keeps the resource alive and the compositor holds nothing. */
  private dropIfUnused(buffer: DmabufBuffer): void {
    if (buffer.busy || buffer.resource.refCount > 1 || !this.buffers.has(buffer.resource)) return;
    this.drop(buffer);
  }

  private drop(buffer: DmabufBuffer): void {
    if (!this.buffers.delete(buffer.resource)) return;
    this.destroyWlBuffer(buffer);
    close(buffer.dmabuf.fd);
    if (buffer.onUnreferenced) buffer.resource.off('unreferenced', buffer.onUnreferenced);
    buffer.resource.unref();
  }

  private destroyWlBuffer(buffer: DmabufBuffer): void {
    if (!buffer.wlBuffer || buffer.wlBuffer.destroyed) return;
    if (!this.connection.isClosed && !this.connection.failure) buffer.wlBuffer.destroy();
    this.stats.buffersDestroyed++;
  }
}
