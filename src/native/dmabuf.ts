// Typed access to native/src/dmabuf.cc: udmabuf creation, CPU-access brackets, implicit fences of a dmabuf.
// Every function throws a NativeErrnoError (.code, .errno, .syscall) when the kernel refuses.
import { addon } from './addon.js';
import type { UdmabufEntry } from './addon-types.js';

export type { UdmabufEntry } from './addon-types.js';

export const UDMABUF_DEVICE = '/dev/udmabuf';
export const dmabufConstants = addon.dmabufConstants;
const { DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_START, DMA_BUF_SYNC_END } = addon.dmabufConstants;

/** A dmabuf over [offset, offset + size) of memfd (both page-aligned; the memfd sealed with F_SEAL_SHRINK). */
export function udmabufCreate(memfd: number, offset: number, size: number): number {
  return addon.udmabufCreate(memfd, offset, size);
}

/** One dmabuf over several page-aligned memfd ranges, concatenated in order. */
export function udmabufCreateList(entries: UdmabufEntry[]): number {
  return addon.udmabufCreateList(entries);
}

export type CpuAccess = 'read' | 'write' | 'rw';

function accessFlags(access: CpuAccess): number {
  return access === 'read' ? DMA_BUF_SYNC_READ : access === 'write' ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
}

/** Brackets CPU access to a mapped dmabuf (DMA_BUF_IOCTL_SYNC START/END), so caches and fences are honoured. */
export function dmabufBeginCpuAccess(fd: number, access: CpuAccess): void {
  addon.dmabufSync(fd, DMA_BUF_SYNC_START | accessFlags(access));
}

export function dmabufEndCpuAccess(fd: number, access: CpuAccess): void {
  addon.dmabufSync(fd, DMA_BUF_SYNC_END | accessFlags(access));
}

/** A sync_file of the dmabuf's implicit fences: 'read' waits for writers, 'write' for readers and writers. */
export function dmabufExportSyncFile(fd: number, access: CpuAccess): number {
  return addon.dmabufExportSyncFile(fd, accessFlags(access));
}

/** Attaches syncFd's fences to the dmabuf as implicit fences for 'read' (shared) or 'write' (exclusive) use. */
export function dmabufImportSyncFile(fd: number, access: CpuAccess, syncFd: number): void {
  addon.dmabufImportSyncFile(fd, accessFlags(access), syncFd);
}
