// Waiting on a sync_file fence without blocking the event loop: a sync_file fd polls readable once every
// fence in it has signalled (or failed).
import { FdWatcher, constants } from '../native/fds.js';
import { syncFileInfo } from '../native/sync-file.js';

export type FenceOutcome = 'signalled' | 'timeout' | 'error' | 'cancelled';

export interface FenceWait {
  readonly result: Promise<FenceOutcome>;
  /** Stops waiting (result becomes 'cancelled'); the fd stays open. Idempotent. */
  cancel(): void;
}

/**
 * Waits until fence signals, up to timeoutMs. The fd is borrowed: the caller closes it after the result.
 * 'error' means the fence signalled with an error status (e.g. its timeline was destroyed) or polling failed.
 */
export function waitFence(fence: number, timeoutMs: number): FenceWait {
  let finish!: (outcome: FenceOutcome) => void;
  const result = new Promise<FenceOutcome>((resolve) => { finish = resolve; });
  let done = false;
  let watcher: FdWatcher | null = null;
  const end = (outcome: FenceOutcome): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    watcher?.close();
    finish(outcome);
  };
  const timer = setTimeout(() => end('timeout'), timeoutMs);
  try {
    watcher = new FdWatcher(fence, (status) => end(status < 0 ? 'error' : fenceStatus(fence)));
    watcher.start(constants.POLL_READABLE);
  } catch {
    end('error');
  }
  return { result, cancel: () => end('cancelled') };
}

function fenceStatus(fence: number): FenceOutcome {
  try {
    return syncFileInfo(fence).status < 0 ? 'error' : 'signalled';
  } catch {
    return 'signalled'; // readable but not a sync_file (a test fd, an eventfd): readiness is all we know
  }
}

/** True when fence has already signalled (successfully). */
export function fenceSignalled(fence: number): boolean {
  return syncFileInfo(fence).status === 1;
}
