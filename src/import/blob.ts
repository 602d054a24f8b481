// Validation of a blob resource description: every check a kernel or compositor would otherwise fail on later
// (or worse, SIGBUS on) is made here, with an error that names the resource, the field and the value.
import { fstat, constants } from '../native/fds.js';
import type { PixelFormat } from '../formats.js';
import type { BlobResourceDescription } from '../source/blob-resource.js';
import { ImportError } from './errors.js';
import { checkSize, checkStride, formatOf, memfdFacts } from './checks.js';

export const DRM_FORMAT_MOD_LINEAR = 0n;
export const DRM_FORMAT_MOD_INVALID = 0xffffffffffffffn;

export interface BlobLayout {
  format: PixelFormat;
  modifier: bigint;
  /** Bytes of guest memory (sum of the ranges); 0 for dmabuf backing. */
  size: number;
}

export function validateBlob(desc: BlobResourceDescription): BlobLayout {
  const what = `blob resource ${desc.id}`;
  if (!Number.isInteger(desc.id) || desc.id < 0 || desc.id > 0xffffffff) {
    throw new ImportError('bad-size', `blob resource id ${desc.id} is not a u32`);
  }
  const format = formatOf(`${what}: `, desc.fourcc);
  checkSize(`${what}: `, desc.width, desc.height);
  const modifier = desc.modifier ?? DRM_FORMAT_MOD_LINEAR;
  if (typeof modifier !== 'bigint' || modifier < 0n || modifier >= 1n << 64n || modifier === DRM_FORMAT_MOD_INVALID) {
    throw new ImportError('unsupported-modifier', `${what}: modifier ${String(modifier)} is not a valid DRM format modifier`);
  }
  if (desc.planes?.length !== 1) {
    throw new ImportError('bad-plane', `${what}: ${format.name} has 1 plane, the description gives ${desc.planes?.length ?? 0}`);
  }
  if (!!desc.memory === !!desc.dmabufs) {
    throw new ImportError('bad-plane', `${what}: give exactly one backing, guest memory ranges or dmabuf fds`);
  }
  const plane = desc.planes[0];
  const rowBytes = checkStride(`${what}: `, plane.stride, desc.width, format);
  if (!Number.isInteger(plane.offset) || plane.offset < 0) {
    throw new ImportError('bad-offset', `${what}: plane offset ${plane.offset} is not a non-negative integer`);
  }
  if (desc.dmabufs) {
    if (desc.dmabufs.length !== 1) throw new ImportError('bad-plane', `${what}: 1 dmabuf fd per plane expected, got ${desc.dmabufs.length}`);
    checkFd(what, desc.dmabufs[0]);
    return { format, modifier, size: 0 };
  }
  if (modifier !== DRM_FORMAT_MOD_LINEAR) {
    throw new ImportError('unsupported-modifier', `${what}: guest memory is linear, modifier 0x${modifier.toString(16)} cannot describe it`);
  }
  const size = validateRanges(what, desc.memory!);
  const end = plane.offset + plane.stride * (desc.height - 1) + rowBytes;
  if (end > size) {
    throw new ImportError('out-of-bounds',
      `${what}: ${desc.height} rows of stride ${plane.stride} from offset ${plane.offset} end at byte ${end}, beyond the blob's ${size} bytes`);
  }
  return { format, modifier, size };
}

function validateRanges(what: string, ranges: BlobResourceDescription['memory'] & object): number {
  if (ranges.length === 0) throw new ImportError('bad-size', `${what}: no guest memory ranges`);
  const page = constants.PAGE_SIZE;
  const seen: { key: string; start: number; end: number; index: number }[] = [];
  let size = 0;
  ranges.forEach((r, i) => {
    const name = `${what} range ${i}`;
    if (!Number.isInteger(r.offset) || r.offset < 0 || !Number.isInteger(r.length) || r.length <= 0) {
      throw new ImportError('bad-offset', `${name}: offset ${r.offset} / length ${r.length} must be integers, length > 0`);
    }
    if (r.offset % page !== 0 || r.length % page !== 0) {
      throw new ImportError('unaligned', `${name}: offset ${r.offset} and length ${r.length} must be multiples of the ${page}-byte page`);
    }
    const { seals, size: fileSize, key } = memfdFacts(`${name}: `, r.memfd);
    if ((seals & constants.F_SEAL_SHRINK) === 0) {
      throw new ImportError('unsealed-memfd', `${name}: memfd fd ${r.memfd} is not sealed with F_SEAL_SHRINK (a peer could truncate it under the compositor)`);
    }
    if (r.offset + r.length > fileSize) {
      throw new ImportError('out-of-bounds', `${name}: [${r.offset}, ${r.offset + r.length}) is beyond the end of memfd fd ${r.memfd} (size ${fileSize})`);
    }
    const clash = seen.find((s) => s.key === key && r.offset < s.end && s.start < r.offset + r.length);
    if (clash) {
      throw new ImportError('overlapping', `${name}: [${r.offset}, ${r.offset + r.length}) overlaps range ${clash.index} [${clash.start}, ${clash.end}) of the same memfd`);
    }
    seen.push({ key, start: r.offset, end: r.offset + r.length, index: i });
    size += r.length;
  });
  return size;
}

function checkFd(what: string, fd: number): void {
  try {
    fstat(fd);
  } catch (e) {
    throw new ImportError('bad-fd', `${what}: dmabuf fd ${fd} cannot be used: ${(e as Error).message}`);
  }
}
