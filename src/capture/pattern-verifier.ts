// Checks captured frames of the built-in guest's test pattern: each frame's encoded number and checksum, the
// gaps between consecutive numbers (frames lost on the way), and the latency from guest flush to capture.
import { decodePattern } from '../source/test-pattern.js';
import type { RgbaImage } from './png.js';
import { percentiles } from '../percentiles.js';

export interface VerifiedFrame {
  /** Frame number encoded in the pattern's header. */
  frame: number;
  ok: boolean;
  /** Frames missing between the previous verified frame and this one. */
  missingBefore: number;
}

export interface VerifyReport {
  frames: number;
  /** Frames whose checksum does not match their pixels. */
  mismatches: number[];
  /** Frame numbers that never arrived (counted from the first frame seen to the last). */
  missing: number[];
  /** Frames that came again or out of order. */
  repeated: number[];
  latencyMs: { p50: number; p99: number; max: number } | null;
}

const MAX_LISTED = 1000;

export class PatternVerifier {
  private last: number | null = null;
  private count = 0;
  private readonly mismatches: number[] = [];
  private readonly missing: number[] = [];
  private readonly repeated: number[] = [];
  private readonly latencies: number[] = [];

  /** Verifies one captured image (the pattern fills it). `latencyNs`: guest flush → capture. */
  check(image: RgbaImage, latencyNs?: bigint): VerifiedFrame {
    const decoded = decodePattern(image, { x: 0, y: 0, width: image.width, height: image.height });
    this.count++;
    if (latencyNs !== undefined) this.latencies.push(Number(latencyNs) / 1e6);
    if (!decoded.ok) {
      // A corrupt header may not even carry the right number: do not let it break the gap count.
      if (this.mismatches.length < MAX_LISTED) this.mismatches.push(this.last === null ? decoded.frame : this.last + 1);
      if (this.last !== null) this.last++;
      return { frame: decoded.frame, ok: false, missingBefore: 0 };
    }
    let missingBefore = 0;
    if (this.last !== null) {
      if (decoded.frame <= this.last) {
        if (this.repeated.length < MAX_LISTED) this.repeated.push(decoded.frame);
      } else {
        missingBefore = decoded.frame - this.last - 1;
        for (let f = this.last + 1; f < decoded.frame && this.missing.length < MAX_LISTED; f++) this.missing.push(f);
      }
    }
    if (this.last === null || decoded.frame > this.last) this.last = decoded.frame;
    return { frame: decoded.frame, ok: true, missingBefore };
  }

  report(): VerifyReport {
    return {
      frames: this.count,
      mismatches: [...this.mismatches],
      missing: [...this.missing],
      repeated: [...this.repeated],
      latencyMs: percentiles(this.latencies),
    };
  }
}
