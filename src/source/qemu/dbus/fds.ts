// Closing received fds that nobody takes.
import { close } from '../../../native/fds.js';
import { log } from '../../../log.js';
import type { Message } from './message.js';

export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      close(fd);
    } catch (e) {
      log.warn({ fd, err: (e as Error).message }, 'closing a received fd failed');
    }
  }
}

/** Closes the fds of a message that no 'h' value in its body refers to. */
export function closeUnreferenced(message: Message): void {
  closeFds(message.fds.filter((_, i) => !message.referencedFds.has(i)));
}
