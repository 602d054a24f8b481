// Import of a blob resource as one dmabuf: guest memory ranges through /dev/udmabuf (no copy: the dmabuf's
// pages are the memfd's pages), a dmabuf backing by dup.
import { udmabufCreate, udmabufCreateList } from '../native/dmabuf.js';
import { udmabufAvailable } from '../native/drm.js';
import { dup } from '../native/fds.js';
import type { BlobResource } from '../source/blob-resource.js';
import { ImportError } from './errors.js';

/** A dmabuf fd owned by the caller, with the layout to hand to the compositor. */
export interface DmabufImport {
  fd: number;
  offset: number;
  stride: number;
  width: number;
  height: number;
  fourcc: number;
  modifier: bigint;
}

export function importBlobAsDmabuf(resource: BlobResource): DmabufImport {
  const plane = resource.planes[0];
  const layout = {
    offset: plane.offset, stride: plane.stride, width: resource.width, height: resource.height,
    fourcc: resource.format.fourcc, modifier: resource.modifier,
  };
  if (resource.dmabufs) return { fd: dup(resource.dmabufs[0]), ...layout };
  const udmabuf = udmabufAvailable();
  if (!udmabuf.available) throw new ImportError('no-udmabuf', `${resource}: ${udmabuf.reason}`);
  const ranges = resource.memory!;
  try {
    const fd = ranges.length === 1
      ? udmabufCreate(ranges[0].memfd, ranges[0].offset, ranges[0].length)
      : udmabufCreateList(ranges.map((r) => ({ memfd: r.memfd, offset: r.offset, size: r.length })));
    return { fd, ...layout };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'EINVAL' ? ' (the udmabuf size limit, size_limit_mb, is 64 MiB by default)' : '';
    throw new ImportError('udmabuf-failed', `${resource}: ${err.message}${hint}`);
  }
}
