// Typed access to native/src/sync_file.cc: sync_file info and merge, and sw_sync timelines (test fences).
import fs from 'node:fs';
import { addon } from './addon.js';
import type { SyncFileInfo } from './addon-types.js';

export type { SyncFenceInfo, SyncFileInfo } from './addon-types.js';

export const SW_SYNC_PATH = '/sys/kernel/debug/sync/sw_sync';

export function syncFileInfo(fd: number): SyncFileInfo {
  return addon.syncFileInfo(fd);
}

/** A new sync_file that signals once both fd1 and fd2 have; the caller still owns fd1 and fd2. */
export function syncMerge(name: string, fd1: number, fd2: number): number {
  return addon.syncMerge(name, fd1, fd2);
}

/**
 * A sw_sync timeline: a software fence context (debugfs, CONFIG_SW_SYNC) whose fences signal when the
 * timeline's counter reaches their value. Real sync_file fds for tests and for the built-in guest.
 * Closing the timeline signals its pending fences with an error status.
 */
export class SwSyncTimeline {
  readonly fd: number;
  private value = 0;

  constructor(path = SW_SYNC_PATH) {
    this.fd = fs.openSync(path, fs.constants.O_RDWR) // Node opens with O_CLOEXEC;
  }

  static available(path = SW_SYNC_PATH): boolean {
    try {
      fs.accessSync(path, fs.constants.R_OK | fs.constants.W_OK);
      return true;
    } catch {
      return false;
    }
  }

  /** The counter's current value. */
  get current(): number {
    return this.value;
  }

  /** A sync_file fd (owned by the caller) that signals when the counter reaches value. */
  createFence(value: number, name = `wlscanout-${value}`): number {
    return addon.swSyncCreateFence(this.fd, value, name);
  }

  /** Advances the counter by count, signalling every fence at or below the new value. */
  advance(count = 1): void {
    addon.swSyncInc(this.fd, count);
    this.value += count;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
