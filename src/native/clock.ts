import { addon } from './addon.js';

export const CLOCK_MONOTONIC = 1;

/** Now on `clockId` (e.g. the wp_presentation clock), in ns. */
export function clockNow(clockId: number): bigint {
  return addon.clockNow(clockId);
}

/** Converts a process.hrtime.bigint() timestamp (CLOCK_MONOTONIC) to `clockId`. */
export function fromMonotonic(monotonicNs: bigint, clockId: number): bigint {
  if (clockId === CLOCK_MONOTONIC) return monotonicNs;
  return monotonicNs + (clockNow(clockId) - clockNow(CLOCK_MONOTONIC));
}
