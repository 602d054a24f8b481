// Bytes of pixels this process copies, counted where the copies happen. The zero-copy paths (guest memfds and
// dmabufs handed to the compositor) have no copy site at all, so nothing can count for them: they read 0.
export type CopySite =
  /** QEMU's Scanout/Update bytes into our memfd surface (gl=off: the one copy the D-Bus transport forces). */
  | 'qemu-pixels'
  /** Bringing the other QEMU surface up to date before writing into it. */
  | 'qemu-surface-sync'
  /** A Scanout/Update that must wait (a resize being read, a paused listener) keeps a copy of its bytes. */
  | 'qemu-held-pixels'
  /** A capture's CPU copy into a lent buffer. */
  | 'capture'
  /** Guest memory read with pread for a capture (memfds not sealed against shrinking). */
  | 'capture-read';

const totals = new Map<CopySite, number>();

export function countCopy(site: CopySite, bytes: number): void {
  totals.set(site, (totals.get(site) ?? 0) + bytes);
}

/** Bytes copied so far, per site (sites that never copied are absent). */
export function copyTotals(): Partial<Record<CopySite, number>> {
  return Object.fromEntries(totals);
}
