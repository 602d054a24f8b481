// The virtio-gpu scan-out commands a VMM forwards, as a library API: RESOURCE_CREATE_BLOB, SET_SCANOUT_BLOB,
// RESOURCE_FLUSH (with the guest's fence) and RESOURCE_UNREF. Each flush of the scanned-out resource becomes a
// BlobFrame for the pipeline; the flush's promise settles when the host is done with that frame, which is the
// moment a VMM completes the guest's flush fence (so the guest never overwrites what the host still reads).
import { EventEmitter } from 'node:events';
import { BlobResource, type BlobResourceDescription } from './blob-resource.js';
import type { BlobFrame } from './frame.js';
import type { Rect } from '../geometry.js';
import { close } from '../native/fds.js';

export interface FlushOptions {
  /** Changed regions of the resource; null or omitted: everything. */
  damage?: Rect[] | null;
  /** sync_file fd that signals when the guest's rendering into the resource is complete. Ownership passes to
   *  the device (closed by the host), also when the call throws. */
  fence?: number | null;
}

export interface FlushDone {
  /** A sync_file fd (owned by the caller) that signals when the compositor has really finished reading, or
   *  null when it already has. */
  releaseFence: number | null;
}

type DeviceEvents = {
  /** A flush of the resource on scan-out `scanout`: hand the frame to a presenter. */
  frame: [frame: BlobFrame, scanout: number];
  /** SET_SCANOUT_BLOB with resource 0: the scan-out is off. */
  disable: [scanout: number];
};

export class VirtioGpu extends EventEmitter<DeviceEvents> {
  private readonly resources = new Map<number, BlobResource>();
  private readonly scanouts = new Map<number, number>(); // scanout id → resource id
  private seq = 0;

  /** RESOURCE_CREATE_BLOB + the layout a SET_SCANOUT_BLOB would carry. Throws ImportError on bad parameters. */
  resourceCreateBlob(desc: BlobResourceDescription): BlobResource {
    if (this.resources.has(desc.id)) throw new RangeError(`resource id ${desc.id} is already in use`);
    const resource = new BlobResource(desc);
    this.resources.set(desc.id, resource);
    return resource;
  }

  /** SET_SCANOUT_BLOB: resourceId 0 disables the scan-out. */
  setScanoutBlob(scanout: number, resourceId: number): void {
    if (resourceId === 0) {
      this.scanouts.delete(scanout);
      this.emit('disable', scanout);
      return;
    }
    this.resource(resourceId);
    this.scanouts.set(scanout, resourceId);
  }

  /** RESOURCE_FLUSH: resolves when the host has released the frame; a flush of a resource that is not scanned
   *  out resolves at once (nothing displays it). */
  resourceFlush(resourceId: number, options: FlushOptions = {}): Promise<FlushDone> {
    const fence = options.fence ?? null;
    let resource: BlobResource;
    try {
      resource = this.resource(resourceId);
    } catch (e) {
      if (fence !== null) close(fence);
      throw e;
    }
    const scanout = [...this.scanouts].find(([, id]) => id === resourceId)?.[0];
    if (scanout === undefined) {
      if (fence !== null) close(fence);
      return Promise.resolve({ releaseFence: null });
    }
    return new Promise<FlushDone>((resolve) => {
      let released = false;
      const frame: BlobFrame = {
        resource, damage: options.damage ?? null, seq: this.seq++, flushedAt: process.hrtime.bigint(), acquireFence: fence,
        release: (releaseFence = null) => {
          if (released) {
            if (releaseFence !== null) close(releaseFence);
            return;
          }
          released = true;
          resolve({ releaseFence });
        },
      };
      this.emit('frame', frame, scanout);
    });
  }

  /** RESOURCE_UNREF: the guest is done with it; the host lets go once the compositor has too. */
  resourceUnref(resourceId: number): void {
    const resource = this.resource(resourceId);
    this.resources.delete(resourceId);
    for (const [scanout, id] of this.scanouts) if (id === resourceId) this.setScanoutBlob(scanout, 0);
    resource.unref();
  }

  /** Unreferences every resource (device reset). */
  reset(): void {
    for (const id of [...this.resources.keys()]) this.resourceUnref(id);
  }

  private resource(id: number): BlobResource {
    const resource = this.resources.get(id);
    if (!resource) throw new RangeError(`no blob resource with id ${id}`);
    return resource;
  }
}
