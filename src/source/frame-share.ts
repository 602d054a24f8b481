// One guest frame handed to several consumers (the presenter and a capture session): each gets its own share,
// and the guest gets the frame back once every share is released.
import { dup, close } from '../native/fds.js';
import { syncMerge } from '../native/sync-file.js';
import { isBlobFrame, type BlobFrame, type ScanoutFrame } from './frame.js';

/** Splits `frame` into `count` shares. A blob frame's acquire fence is dup'd per share; release fences given
 *  by several shares are merged into one for the guest. */
export function shareFrame(frame: ScanoutFrame, count: number): ScanoutFrame[] {
  let outstanding = count;
  if (!isBlobFrame(frame)) {
    const release = (): void => { if (--outstanding === 0) frame.release(); };
    return Array.from({ length: count }, () => ({ ...frame, release: once(release) }));
  }
  let releaseFence: number | null = null;
  const release = (fence?: number | null): void => {
    if (fence !== null && fence !== undefined) {
      if (releaseFence === null) {
        releaseFence = fence;
      } else {
        const merged = syncMerge('wlscanout-release', releaseFence, fence);
        close(releaseFence);
        close(fence);
        releaseFence = merged;
      }
    }
    if (--outstanding === 0) frame.release(releaseFence);
  };
  const fences = [frame.acquireFence];
  for (let i = 1; i < count; i++) fences.push(frame.acquireFence === null ? null : dup(frame.acquireFence));
  return fences.map((acquireFence): BlobFrame => ({ ...frame, acquireFence, release: once(release) }));
}

function once<A extends unknown[]>(f: (...args: A) => void): (...args: A) => void {
  let called = false;
  return (...args: A) => {
    if (called) return;
    called = true;
    f(...args);
  };
}
