// wp_presentation feedback: when each committed frame really reached the screen.
import type { WpPresentation, WlSurface } from '../wayland/protocols/index.js';

export interface PresentedFrame {
  seq: number;
  /** Presentation time in ns on the compositor's presentation clock (CLOCK_MONOTONIC on Linux compositors). */
  presentedAt: bigint;
  /** Guest flush → presented, in ns (both on CLOCK_MONOTONIC). */
  latency: bigint;
  /** Output refresh interval in ns (0: unknown). */
  refresh: number;
  /** wp_presentation_feedback.kind flags (vsync, hw_clock, hw_completion, zero_copy). */
  flags: number;
}

export function requestFeedback(presentation: WpPresentation, surface: WlSurface, seq: number, flushedAt: bigint,
  onPresented: (frame: PresentedFrame) => void, onDiscarded: (seq: number) => void): void {
  presentation.feedback(surface).on({
    presented: (secHi, secLo, nsec, refresh, _seqHi, _seqLo, flags) => {
      const presentedAt = ((BigInt(secHi) << 32n) + BigInt(secLo)) * 1_000_000_000n + BigInt(nsec);
      onPresented({ seq, presentedAt, latency: presentedAt - flushedAt, refresh, flags });
    },
    discarded: () => onDiscarded(seq),
  });
}
