// What every source hands to the pipeline: one scan-out of guest memory.
import type { Rect } from '../geometry.js';

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
