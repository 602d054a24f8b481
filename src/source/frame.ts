// What every source hands to the pipeline: one scan-out of guest memory.
import type { Rect } from '../geometry.js';
import type { BlobResource } from './blob-resource.js';

/** A guest frame that lives in a memfd range (a virtio-gpu blob backed by guest RAM). */
export interface MemfdFrame {
  /** The memfd holding the pixels. Borrowed: the source keeps ownership and keeps it open until release. */
  fd: number;
  offset: number;
  width: number;
  height: number;
  /** Bytes per row. */
  stride: number;
  /** DRM fourcc. */
  fourcc: number;
  /** Changed regions relative to the previous frame of this scan-out, in buffer pixels; null: everything. */
  damage: Rect[] | null;
  /** Guest sequence number of this frame. */
  seq: number;
  /** When the guest flushed it (process.hrtime.bigint(), CLOCK_MONOTONIC ns). */
  flushedAt: bigint;
  /** Called exactly once, when the host no longer reads this frame's memory. */
  release(): void;
}

/** A guest frame scanned out from a blob resource (guest memory or a dmabuf), with the guest's fence. */
export interface BlobFrame {
  resource: BlobResource;
  damage: Rect[] | null;
  seq: number;
  flushedAt: bigint;
  /** sync_file fd that signals when the guest has finished writing, or null when it already has. Owned by the
   *  frame: the host closes it once it is done with it. */
  acquireFence: number | null;
  /** Called exactly once, when the host no longer reads the frame. `releaseFence` (owned by the callee), when
   *  given, signals when the compositor has really finished reading. */
  release(releaseFence?: number | null): void;
}

export type ScanoutFrame = MemfdFrame | BlobFrame;

export function isBlobFrame(frame: ScanoutFrame): frame is BlobFrame {
  return 'resource' in frame;
}

/** Where a source hands its frames: the presenter, a capture session, or a tee of both. 'committed' says the
 *  frame was taken up (shown, or captured), which sources that pace their guest wait for. */
export interface FrameSink {
  present(frame: ScanoutFrame): void;
  on(event: 'committed', listener: (frame: ScanoutFrame) => void): unknown;
  off(event: 'committed', listener: (frame: ScanoutFrame) => void): unknown;
}
