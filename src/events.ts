// Subscriptions that can be undone as a list: each `listen` returns its own unsubscribe.

interface Subscribable<A extends unknown[]> {
  on(event: string, listener: (...args: A) => void): unknown;
  off(event: string, listener: (...args: A) => void): unknown;
}

/** Subscribes `listener` to `event` on `emitter` and returns the matching unsubscribe. */
export function listen<A extends unknown[]>(emitter: Subscribable<A>, event: string, listener: (...args: A) => void): () => void {
  emitter.on(event, listener);
  return () => emitter.off(event, listener);
}
