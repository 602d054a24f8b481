// A virtio-gpu blob resource as a source describes it: guest memory (memfd ranges, BLOB_MEM_GUEST) or an
// existing dmabuf (BLOB_MEM_HOST3D), with its scan-out layout. Validated when created; reference counted so the
// host can keep using it after the guest unreferences it, until the compositor has let go.
import { EventEmitter } from 'node:events';
import { dup, close } from '../native/fds.js';
import { validateBlob, type BlobLayout } from '../import/blob.js';
import type { PixelFormat } from '../formats.js';

export interface MemfdRange {
  memfd: number;
  offset: number;
  length: number;
}

export interface BlobPlane {
  /** Byte offset of the plane within the blob (memfd ranges concatenated) or within its dmabuf. */
  offset: number;
  stride: number;
}

export interface BlobResourceDescription {
  id: number;
  width: number;
  height: number;
  fourcc: number;
  /** DRM format modifier; default 0n (DRM_FORMAT_MOD_LINEAR), the only one guest memory can have. */
  modifier?: bigint;
  planes: BlobPlane[];
  /** Guest memory backing: page-aligned ranges of memfds sealed against shrinking. */
  memory?: MemfdRange[];
  /** Or dmabuf backing: one fd per plane (the same fd may repeat). */
  dmabufs?: number[];
  /** Rows are stored bottom to top (a GL framebuffer, y0_top = false); default false. */
  bottomUp?: boolean;
}

/** The validated resource. Its fds are its own (dups of the description's), closed when the last ref goes. */
export class BlobResource extends EventEmitter<{ unreferenced: [remaining: number]; destroyed: [] }> {
  readonly id: number;
  readonly width: number;
  readonly height: number;
  readonly format: PixelFormat;
  readonly modifier: bigint;
  readonly bottomUp: boolean;
  readonly planes: readonly BlobPlane[];
  readonly memory: readonly MemfdRange[] | null;
  readonly dmabufs: readonly number[] | null;
  /** Total bytes of the guest memory ranges (0 for dmabuf backing). */
  readonly size: number;
  private refs = 1;

  /** Validates `desc` (throws ImportError) and takes its own copies of the fds; the caller keeps its fds. */
  constructor(desc: BlobResourceDescription) {
    super();
    const layout: BlobLayout = validateBlob(desc);
    this.id = desc.id;
    this.width = desc.width;
    this.height = desc.height;
    this.format = layout.format;
    this.modifier = layout.modifier;
    this.bottomUp = desc.bottomUp ?? false;
    this.planes = desc.planes.map((p) => ({ ...p }));
    this.size = layout.size;
    const owned: number[] = [];
    try {
      this.memory = desc.memory ? desc.memory.map((r) => { const fd = dup(r.memfd); owned.push(fd); return { ...r, memfd: fd }; }) : null;
      this.dmabufs = desc.dmabufs ? desc.dmabufs.map((fd) => { const d = dup(fd); owned.push(d); return d; }) : null;
    } catch (e) {
      owned.forEach(close);
      throw e;
    }
  }

  get refCount(): number {
    return this.refs;
  }

  get alive(): boolean {
    return this.refs > 0;
  }

  ref(): this {
    if (this.refs === 0) throw new Error(`blob resource ${this.id} was already destroyed`);
    this.refs++;
    return this;
  }

  /** Drops a reference; the last one closes the resource's fds and emits 'destroyed'. */
  unref(): void {
    if (this.refs === 0) throw new Error(`blob resource ${this.id} was unreferenced more often than referenced`);
    if (--this.refs > 0) {
      this.emit('unreferenced', this.refs);
      return;
    }
    for (const r of this.memory ?? []) close(r.memfd);
    for (const fd of new Set(this.dmabufs ?? [])) close(fd);
    this.emit('destroyed');
  }

  override toString(): string {
    return `blob resource ${this.id} (${this.width}x${this.height} ${this.format.name})`;
  }
}
