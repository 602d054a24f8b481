// wl_shm pools made on the guest's own memfds and wl_buffers at each frame's offset: nothing is copied.
// A wl_buffer is created once per (memfd, offset, size, stride, format) and tracks who holds it.
import type { Connection } from '../wayland/connection.js';
import type { WlBuffer, WlShm, WlShmPool } from '../wayland/protocols/index.js';
import type { MemfdFrame } from '../source/frame.js';
import { WL_SHM_MAX, type ShmImport } from '../import/shm.js';
import { constants } from '../native/fds.js';

interface Pool {
  pool: WlShmPool;
  size: number;
  buffers: Map<string, ShmBuffer>;
}

export class ShmBuffer {
  /** The frame whose pixels the compositor may still read through this buffer. */
  holder: MemfdFrame | null = null;
  lastUsed = 0;
  constructor(readonly wlBuffer: WlBuffer, readonly pool: Pool, readonly key: string) {}
  get busy(): boolean {
    return this.holder !== null;
  }
}

export interface ShmBufferStats {
  poolsCreated: number;
  poolsDestroyed: number;
  buffersCreated: number;
  buffersDestroyed: number;
  /** Frames attached with a buffer the compositor had not released yet: a source re-presenting its front buffer
   *  (single-buffered guests) or writing a buffer the compositor still reads. */
  reuseWhileHeld: number;
}

export class ShmBufferCache {
  readonly stats: ShmBufferStats = { poolsCreated: 0, poolsDestroyed: 0, buffersCreated: 0, buffersDestroyed: 0, reuseWhileHeld: 0 };
  /** (st_dev:st_ino) of each memfd a pool was made from, for inspection and tests. */
  readonly pools = new Map<string, Pool>();
  private tick = 0;

  constructor(private readonly connection: Connection, private readonly shm: WlShm,
    private readonly maxIdleBuffers = 32) {}

  /** The wl_buffer showing `frame`, created on first use. `imp` is the frame's validated import. */
  bufferFor(frame: MemfdFrame, imp: ShmImport): ShmBuffer {
    const end = frame.offset + frame.stride * frame.height;
    const pool = this.poolFor(frame.fd, imp.memoryKey, Math.min(WL_SHM_MAX, Math.ceil(end / constants.PAGE_SIZE) * constants.PAGE_SIZE));
    const key = `${frame.offset}:${frame.width}x${frame.height}:${frame.stride}:${imp.format.shm}`;
    let buffer = pool.buffers.get(key);
    if (!buffer) {
      const wlBuffer = pool.pool.createBuffer(frame.offset, frame.width, frame.height, frame.stride, imp.format.shm);
      buffer = new ShmBuffer(wlBuffer, pool, key);
      const created = buffer;
      wlBuffer.on({ release: () => this.onRelease(created) });
      pool.buffers.set(key, buffer);
      this.stats.buffersCreated++;
      buffer.lastUsed = ++this.tick;
      this.evictIdle(buffer);
    }
    buffer.lastUsed = ++this.tick;
    return buffer;
  }

  /** Marks `buffer` as attached with `frame`; the previous holder (if any) is released now. */
  hold(buffer: ShmBuffer, frame: MemfdFrame): void {
    if (buffer.holder && buffer.holder !== frame) {
      this.stats.reuseWhileHeld++;
      buffer.holder.release();
    }
    buffer.holder = frame;
  }

  /** Releases every held frame and destroys all buffers and pools (the window is going away). */
  destroy(): void {
    for (const pool of this.pools.values()) {
      for (const buffer of pool.buffers.values()) this.drop(buffer);
      if (!this.connection.isClosed && !this.connection.failure) pool.pool.destroy();
    }
    this.pools.clear();
  }

  private poolFor(fd: number, memoryKey: string, size: number): Pool {
    let pool = this.pools.get(memoryKey);
    if (!pool) {
      pool = { pool: this.shm.createPool(fd, size), size, buffers: new Map() };
      this.pools.set(memoryKey, pool);
      this.stats.poolsCreated++;
    } else if (size > pool.size) {
      pool.pool.resize(size); // pools only grow; the compositor maps the larger range
      pool.size = size;
    }
    return pool;
  }

  private onRelease(buffer: ShmBuffer): void {
    const holder = buffer.holder;
    buffer.holder = null;
    holder?.release();
  }

  private drop(buffer: ShmBuffer): void {
    buffer.holder?.release();
    buffer.holder = null;
    if (!buffer.wlBuffer.destroyed && !this.connection.isClosed && !this.connection.failure) buffer.wlBuffer.destroy();
    this.stats.buffersDestroyed++;
  }

  /** Destroys the least recently used idle buffers beyond maxIdleBuffers (never `keep`), then pools left empty:
   *  a source that replaces its memfds (guest reboot, resize, resource churn) must not leave mappings behind. */
  private evictIdle(keep: ShmBuffer): void {
    const idle = [...this.pools.values()].flatMap((p) => [...p.buffers.values()].filter((b) => !b.busy && b !== keep));
    if (idle.length <= this.maxIdleBuffers) return;
    idle.sort((a, b) => a.lastUsed - b.lastUsed);
    for (const buffer of idle.slice(0, idle.length - this.maxIdleBuffers)) {
      buffer.pool.buffers.delete(buffer.key);
      this.drop(buffer);
    }
    for (const [key, pool] of this.pools) {
      if (pool.buffers.size > 0) continue;
      if (!this.connection.isClosed && !this.connection.failure) pool.pool.destroy();
      this.pools.delete(key);
      this.stats.poolsDestroyed++;
    }
  }
}
