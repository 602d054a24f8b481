// The built-in guest as a virtio-gpu guest: its RAM memfd holds one blob resource per scan-out buffer; each
// frame is drawn into a resource the host has released (after its release fence, if any), optionally fenced
// on a sw_sync timeline that the guest "GPU" (or a test) advances, then SET_SCANOUT_BLOB + RESOURCE_FLUSH.
import { EventEmitter } from 'node:events';
import { BuiltinGuest, type BuiltinGuestOptions } from './builtin-guest.js';
import { VirtioGpu } from './virtio-gpu.js';
import type { MemfdFrame } from './frame.js';
import type { SwSyncTimeline } from '../native/sync-file.js';
import { waitFence } from '../sync/fence.js';
import { close } from '../native/fds.js';

export interface BlobGuestOptions extends BuiltinGuestOptions {
  /** Fence each flush on this timeline; the fence of frame n signals at timeline value n + 1. */
  timeline?: SwSyncTimeline;
  /** Advance the timeline right after drawing (a GPU that finishes at once); false leaves it to the caller. */
  autoSignal?: boolean;
  /** First resource id (default 1). */
  firstResourceId?: number;
}

export interface BlobGuestStats {
  flushes: number;
  releases: number;
  releaseFences: number;
}

export class BlobGuest extends EventEmitter<{ released: [] }> {
  readonly gpu = new VirtioGpu();
  readonly ram: BuiltinGuest;
  readonly stats: BlobGuestStats = { flushes: 0, releases: 0, releaseFences: 0 };
  /** Resource id per buffer offset in guest RAM. */
  readonly resourceIds = new Map<number, number>();
  private fenceValue = 0;

  constructor(readonly options: BlobGuestOptions) {
    super();
    this.ram = new BuiltinGuest(options);
    const bufferSize = this.ram.ramSize / (options.buffers ?? 3);
    let id = options.firstResourceId ?? 1;
    try {
      for (let offset = 0; offset < this.ram.ramSize; offset += bufferSize, id++) {
        this.gpu.resourceCreateBlob({
          id, width: options.width, height: options.height, fourcc: options.format.fourcc,
          planes: [{ offset: 0, stride: this.ram.stride }], memory: [{ memfd: this.ram.memfd, offset, length: bufferSize }],
        });
        this.resourceIds.set(offset, id);
      }
    } catch (e) {
      this.gpu.reset();
      this.ram.close();
      throw e;
    }
    this.ram.on('released', () => this.emit('released'));
  }

  get heldBuffers(): number {
    return this.ram.heldBuffers;
  }

  /** Draws the next frame into a released resource and flushes it; false when the host holds every buffer. */
  flushNext(): boolean {
    const frame = this.ram.drawNext();
    if (!frame) return false;
    const resourceId = this.resourceIds.get(frame.offset)!;
    const timeline = this.options.timeline;
    const fence = timeline ? timeline.createFence(++this.fenceValue, `frame-${frame.seq}`) : null;
    if (timeline && this.options.autoSignal !== false) timeline.advance();
    this.gpu.setScanoutBlob(0, resourceId);
    this.stats.flushes++;
    void this.gpu.resourceFlush(resourceId, { damage: frame.damage, fence }).then(({ releaseFence }) => this.onReleased(frame, releaseFence));
    return true;
  }

  close(): void {
    this.gpu.reset();
    this.ram.close();
  }

  private onReleased(frame: MemfdFrame, releaseFence: number | null): void {
    this.stats.releases++;
    if (releaseFence === null) {
      frame.release();
      return;
    }
    // The compositor may still be reading on its GPU: the buffer is free only when the fence says so.
    this.stats.releaseFences++;
    void waitFence(releaseFence, 5000).result.then(() => {
      close(releaseFence);
      frame.release();
    });
  }
}
