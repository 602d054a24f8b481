// wp_presentation feedback: when each committed frame really reached the screen.
import type { WpPresentation, WlSurface } from '../wayland/protocols/index.js';
import { fromMonotonic } from '../native/clock.js';

export interface PresentedFrame {
  seq: number;
  /** Presentation time in ns on the compositor's presentation clock (wp_presentation.clock_id). */
  presentedAt: bigint;
  /** Guest flush → presented, in ns. */
  latency: bigint;
  /** Output refresh interval in ns (0: unknown). */
  refresh: number;
  /** wp_presentation_feedback.kind flags (vsync, hw_clock, hw_completion, zero_copy). */
  flags: number;
}

/** `flushedAt` is CLOCK_MONOTONIC (process.hrtime.bigint()); `clock` is the clock wp_presentation announced. */
export function requestFeedback(presentation: WpPresentation, clock: number, surface: WlSurface, seq: number,
  flushedAt: bigint, onPresented: (frame: PresentedFrame) => void, onDiscarded: (seq: number) => void): void {
  const flushed = fromMonotonic(flushedAt, clock);
  presentation.feedback(surface).on({
    presented: (secHi, secLo, nsec, refresh, _seqHi, _seqLo, flags) => {
      const presentedAt = ((BigInt(secHi) << 32n) + BigInt(secLo)) * 1_000_000_000n + BigInt(nsec);
      onPresented({ seq, presentedAt, latency: presentedAt - flushed, refresh, flags });
    },
    discarded: () => onDiscarded(seq),
  });
}
