// The built-in guest: "guest RAM" is one memfd holding several scan-out buffers; each frame of a verifiable
// test pattern is drawn into a buffer the host has released, never into one it still reads.
import { EventEmitter } from 'node:events';
import { memfdCreate, ftruncate, addSeals, mmap, munmap, close, constants } from '../native/fds.js';
import type { PixelFormat } from '../formats.js';
import { drawPattern, patternGeometry } from './test-pattern.js';
import type { MemfdFrame } from './frame.js';

export interface BuiltinGuestOptions {
  width: number;
  height: number;
  format: PixelFormat;
  /** Scan-out buffers in guest RAM (at least 2). */
  buffers?: number;
}

interface Slot {
  offset: number;
  bytes: Uint8Array;
  held: boolean;
  lastFrame: number | null;
}

export class BuiltinGuest extends EventEmitter<{ released: [] }> {
  readonly memfd: number;
  readonly ramSize: number;
  readonly stride: number;
  readonly stats = { framesDrawn: 0, releases: 0 };
  private readonly ram: ArrayBuffer;
  private readonly slots: Slot[];
  private nextFrame = 0;
  private closed = false;

  constructor(readonly options: BuiltinGuestOptions) {
    super();
    const count = options.buffers ?? 3;
    if (!Number.isInteger(count) || count < 2 || count > 16) throw new RangeError(`buffers ${count} is out of range (2..16)`);
    patternGeometry(options.width, options.height); // validates the size
    this.stride = options.width * options.format.bytesPerPixel;
    const bufferSize = Math.ceil((this.stride * options.height) / constants.PAGE_SIZE) * constants.PAGE_SIZE;
    this.ramSize = bufferSize * count;
    this.memfd = memfdCreate('wlscanout-guest-ram', true);
    try {
      ftruncate(this.memfd, this.ramSize);
      // Sealed like guest RAM a VMM hands out: the compositor maps it and must never see it shrink.
      addSeals(this.memfd, constants.F_SEAL_SHRINK | constants.F_SEAL_GROW | constants.F_SEAL_SEAL);
      this.ram = mmap(this.memfd, 0, this.ramSize, true);
    } catch (e) {
      close(this.memfd);
      throw e;
    }
    this.slots = Array.from({ length: count }, (_, i) => ({
      offset: i * bufferSize,
      bytes: new Uint8Array(this.ram, i * bufferSize, this.stride * options.height),
      held: false,
      lastFrame: null,
    }));
  }

  get heldBuffers(): number {
    return this.slots.filter((s) => s.held).length;
  }

  /** Byte view of the buffer a frame lives in (for tests that write into guest memory directly). */
  bufferBytes(frame: MemfdFrame): Uint8Array {
    const slot = this.slots.find((s) => s.offset === frame.offset);
    if (!slot) throw new RangeError(`no guest buffer at offset ${frame.offset}`);
    return slot.bytes;
  }

  /** Draws the next frame into a released buffer; null when the host holds every buffer. */
  drawNext(): MemfdFrame | null {
    if (this.closed) throw new Error('guest is closed');
    // Round robin over the free buffers (the least recently drawn first), as a triple-buffering guest does.
    const free = this.slots.filter((s) => !s.held);
    if (free.length === 0) return null;
    const slot = free.reduce((a, b) => ((a.lastFrame ?? -1) <= (b.lastFrame ?? -1) ? a : b));
    const seq = this.nextFrame++;
    const { width, height, format } = this.options;
    const damage = drawPattern({ bytes: slot.bytes, width, height, stride: this.stride, format }, seq, slot.lastFrame);
    slot.lastFrame = seq;
    slot.held = true;
    this.stats.framesDrawn++;
    let released = false;
    return {
      fd: this.memfd, offset: slot.offset, width, height, stride: this.stride, fourcc: format.fourcc,
      damage, seq, flushedAt: process.hrtime.bigint(),
      release: () => {
        if (released) return;
        released = true;
        slot.held = false;
        this.stats.releases++;
        this.emit('released');
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    munmap(this.ram);
    close(this.memfd);
  }
}
