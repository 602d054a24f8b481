// Typed access to native/src/fds.cc and fd_watcher.cc: memfds, seals, mappings, fd passing, fd readiness.
// Every function is synchronous and throws a NativeErrnoError (.code, .errno, .syscall) when the call fails.
import fs from 'node:fs';
import { addon } from './addon.js';
import type { NativeFdWatcher, NativeRecv, NativeStat } from './addon-types.js';

export type { NativeErrnoError, NativeFdWatcher, NativeRecv, NativeStat } from './addon-types.js';

/** F_SEAL_*, POLL_* (the libuv event bits) and PAGE_SIZE. */
export const constants = addon.constants;

/** Creates an anonymous shared-memory file (close-on-exec). Sealing must be allowed now to add seals later. */
export function memfdCreate(name: string, allowSealing = true): number {
  return addon.memfdCreate(name, allowSealing);
}

export function ftruncate(fd: number, size: number): void {
  addon.ftruncate(fd, size);
}

/** F_ADD_SEALS: seals are a mask of constants.F_SEAL_*; fails with EPERM once F_SEAL_SEAL is set. */
export function addSeals(fd: number, seals: number): void {
  addon.addSeals(fd, seals);
}

/** F_GET_SEALS; throws EINVAL when fd is not a memfd (or other shmem file). */
export function getSeals(fd: number): number {
  return addon.getSeals(fd);
}

/** True when fd supports seals, i.e. is a memfd. */
export function isMemfd(fd: number): boolean {
  try {
    addon.getSeals(fd);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw error;
  }
}

export function fstat(fd: number): NativeStat {
  return addon.fstat(fd);
}

/**
 * Maps [offset, offset + length) of fd shared (MAP_SHARED) into an ArrayBuffer that aliases the file: writes to
 * either side are visible to the other. offset needs no alignment. For a regular or memfd file the range must
 * lie within its current size (touching pages past the end would raise SIGBUS); shrinking the file while it
 * is mapped is still the caller's problem, which is what F_SEAL_SHRINK is for.
 * The mapping lives until unmap(buffer) or until the buffer is garbage-collected.
 */
export function mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer {
  return addon.mmap(fd, offset, length, writable);
}

/** Unmaps a buffer from mmap() now and detaches it (byteLength becomes 0; views over it become empty). Idempotent. */
export function munmap(buffer: ArrayBuffer): void {
  addon.munmap(buffer);
}

/** A connected pair of non-blocking, close-on-exec AF_UNIX stream sockets. */
export function socketpair(): [number, number] {
  return addon.socketpair();
}

/**
 * Sends data with fds attached (SCM_RIGHTS); the caller keeps its own copies of the fds. Returns the number
 * of bytes sent, which may be less than data.length (the fds then went with the first part). Throws EAGAIN
 * when the socket is full and EPIPE when the peer is gone (never SIGPIPE).
 */
/** Connects to a unix stream socket (a D-Bus bus, say); the caller owns the returned non-blocking fd. Errors
 *  carry errno (ENOENT: nothing at the path, ECONNREFUSED: nobody listening). */
export function unixConnect(path: string, abstract = false): number {
  return addon.unixConnect(path, abstract);
}

export function sendmsg(fd: number, data: Uint8Array, fds: number[] = []): number {
  return addon.sendmsg(fd, data, fds);
}

/**
 * Receives up to maxBytes and up to maxFds fds without blocking. Returns null when nothing is available,
 * { data: empty, fds: [] } at EOF. The received fds are close-on-exec and owned by the caller. If the peer
 * sent more than maxFds fds along with these bytes, they are closed and an error with code 'ECTRUNC' is thrown.
 */
export function recvmsg(fd: number, maxBytes: number, maxFds: number): NativeRecv | null {
  return addon.recvmsg(fd, maxBytes, maxFds);
}

/** As recvmsg, but into `target` (no intermediate copy): { bytes (0 at EOF), fds }, or null when nothing is there. */
export function recvmsgInto(fd: number, target: Uint8Array, maxFds: number): { bytes: number; fds: number[] } | null {
  return addon.recvmsgInto(fd, target, maxFds);
}

/** Returns the number of bytes written (may be short). */
export function pwrite(fd: number, data: Uint8Array, offset: number): number {
  return addon.pwrite(fd, data, offset);
}

/** Reads up to length bytes at offset; the result is shorter at the end of the file. */
export function pread(fd: number, length: number, offset: number): Buffer {
  return addon.pread(fd, length, offset);
}

/** Duplicates fd (close-on-exec) to the lowest free number. */
export function dup(fd: number): number {
  return addon.dup(fd);
}

export function close(fd: number): void {
  addon.close(fd);
}

/** The fds open in this process, ascending (for leak checks). */
export function listOpenFds(): number[] {
  // readdirSync holds one more fd open while it lists the directory; it is closed again by the time we look,
  // so keep only the entries that are still open.
  return fs.readdirSync('/proc/self/fd').map(Number).filter(isOpen).sort((a, b) => a - b);
}

export function openFdCount(): number {
  return listOpenFds().length;
}

function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

export type FdWatchCallback = (status: number, events: number) => void;

/**
 * Calls back on the JS thread (on Node's event loop, via libuv's uv_poll) when fd becomes ready for the
 * events given to start(). status < 0 is a libuv error code; events is a mask of constants.POLL_*.
 * A started watcher keeps the process alive; stop() or close() releases it. close() the watcher before
 * closing the fd, and use one watcher per fd (libuv does not support more). libuv makes the fd non-blocking.
 * An exception thrown by the callback becomes an 'uncaughtException'.
 */
export const FdWatcher: new (fd: number, callback: FdWatchCallback) => NativeFdWatcher = addon.FdWatcher;
export type FdWatcher = NativeFdWatcher;
