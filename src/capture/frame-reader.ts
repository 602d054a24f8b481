// CPU access to a guest frame's pixels for the capture copy. Memory that cannot shrink under us (memfds sealed
// with F_SEAL_SHRINK, dmabufs) is mapped once and the mapping reused; anything else is read with pread, which
// cannot SIGBUS when the owner truncates it.
import { mmap, munmap, pread, constants } from '../native/fds.js';
import { dmabufBeginCpuAccess, dmabufEndCpuAccess } from '../native/dmabuf.js';
import { memfdFacts } from '../import/checks.js';
import { DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR } from '../import/blob.js';
import { isBlobFrame, type ScanoutFrame } from '../source/frame.js';
import type { BlobResource } from '../source/blob-resource.js';
import { CaptureError } from './errors.js';
import { countCopy } from '../copy-stats.js';

export interface FramePixels {
  /** Starts at the frame's first pixel (its top row, or bottom row when bottomUp). */
  bytes: Uint8Array;
  stride: number;
  fourcc: number;
  width: number;
  height: number;
  /** Rows are stored bottom to top (GL's y0_top = false): the copy flips them. */
  bottomUp: boolean;
  /** How the pixels were reached, for stats and logs. */
  access: 'mapped' | 'read';
  /** Ends CPU access (dmabuf sync); the bytes must not be used afterwards. */
  end(): void;
}

const MAX_CACHED_MAPS = 8;

interface CachedMap {
  map: ArrayBuffer;
  offset: number;
}

export class FrameReader {
  /** Mappings of memfd frames by memfd identity and range, least recently used first. */
  private readonly memfdMaps = new Map<string, ArrayBuffer>();
  private readonly resourceMaps = new Map<BlobResource, CachedMap>();
  private scratch: Buffer | null = null;
  readonly stats = { maps: 0, bytesRead: 0 };

  read(frame: ScanoutFrame): FramePixels {
    return isBlobFrame(frame) ? this.readResource(frame.resource) : this.readMemfd(frame);
  }

  private readMemfd(frame: Exclude<ScanoutFrame, { resource: unknown }>): FramePixels {
    const { fd, offset, stride, width, height, fourcc } = frame;
    const length = stride * height;
    const base = { stride, fourcc, width, height, bottomUp: false, end: () => {} };
    const facts = memfdFacts(`frame ${frame.seq}: `, fd);
    if (!(facts.seals & constants.F_SEAL_SHRINK)) {
      return { ...base, bytes: this.preadInto(fd, offset, length), access: 'read' };
    }
    const key = `${facts.key}:${offset}:${length}`;
    let map = this.memfdMaps.get(key);
    if (map) {
      this.memfdMaps.delete(key); // re-inserted below as the most recently used
    } else {
      map = mmap(fd, offset, length, false);
      this.stats.maps++;
      if (this.memfdMaps.size >= MAX_CACHED_MAPS) {
        const [oldKey, old] = this.memfdMaps.entries().next().value as [string, ArrayBuffer];
        munmap(old);
        this.memfdMaps.delete(oldKey);
      }
    }
    this.memfdMaps.set(key, map);
    return { ...base, bytes: new Uint8Array(map), access: 'mapped' };
  }

  private readResource(resource: BlobResource): FramePixels {
    if (resource.modifier !== DRM_FORMAT_MOD_LINEAR && resource.modifier !== DRM_FORMAT_MOD_INVALID) {
      throw new CaptureError('unsupported-modifier',
        `${resource}: modifier 0x${resource.modifier.toString(16)} is not linear; only the GPU blit can read it`);
    }
    const plane = resource.planes[0];
    const length = plane.stride * (resource.height - 1) + resource.width * resource.format.bytesPerPixel;
    const base = {
      stride: plane.stride, fourcc: resource.format.fourcc, width: resource.width, height: resource.height,
      bottomUp: resource.bottomUp,
    };
    const ranges = resource.memory;
    if (ranges && ranges.length > 1) {
      // Several memfd ranges make one contiguous blob only in guest address space: gather the plane's bytes.
      const bytes = this.scratchOf(length);
      let at = 0; // blob offset of the current range
      for (const r of ranges) {
        const from = Math.max(plane.offset, at);
        const to = Math.min(plane.offset + length, at + r.length);
        if (to > from) this.preadExact(r.memfd, r.offset + (from - at), to - from, bytes, from - plane.offset);
        at += r.length;
      }
      return { ...base, bytes: bytes.subarray(0, length), access: 'read', end: () => {} };
    }
    let cached = this.resourceMaps.get(resource);
    if (!cached) {
      const fd = ranges ? ranges[0].memfd : resource.dmabufs![0];
      const offset = ranges ? ranges[0].offset : 0;
      cached = { map: mmap(fd, offset, plane.offset + length, false), offset: plane.offset };
      this.stats.maps++;
      this.resourceMaps.set(resource, cached);
      resource.once('destroyed', () => this.forget(resource));
    }
    const dmabuf = ranges ? null : resource.dmabufs![0];
    if (dmabuf !== null) dmabufBeginCpuAccess(dmabuf, 'read');
    return {
      ...base, bytes: new Uint8Array(cached.map, cached.offset, length), access: 'mapped',
      end: () => { if (dmabuf !== null) dmabufEndCpuAccess(dmabuf, 'read'); },
    };
  }

  private forget(resource: BlobResource): void {
    const cached = this.resourceMaps.get(resource);
    if (cached) munmap(cached.map);
    this.resourceMaps.delete(resource);
  }

  private scratchOf(length: number): Buffer {
    if (!this.scratch || this.scratch.length < length) this.scratch = Buffer.allocUnsafe(length);
    return this.scratch;
  }

  private preadInto(fd: number, offset: number, length: number): Uint8Array {
    const bytes = this.scratchOf(length);
    this.preadExact(fd, offset, length, bytes, 0);
    return bytes.subarray(0, length);
  }

  private preadExact(fd: number, offset: number, length: number, into: Buffer, at: number): void {
    const data = pread(fd, length, offset);
    if (data.length < length) {
      throw new CaptureError('truncated', `the frame's memory (fd ${fd}) ends ${length - data.length} bytes early: it was truncated`);
    }
    data.copy(into, at);
    this.stats.bytesRead += length;
    countCopy('capture-read', length);
  }

  close(): void {
    for (const map of this.memfdMaps.values()) munmap(map);
    this.memfdMaps.clear();
    for (const resource of [...this.resourceMaps.keys()]) this.forget(resource);
    this.scratch = null;
  }
}
