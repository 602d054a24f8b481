// A small seeded PRNG for the fuzz harness (mulberry32) and the boundary-biased generators built on it.
// Every case gets its own generator, derived from the run's seed, the section and the case index, so one case
// can be reproduced alone: WLSCANOUT_FUZZ_SEED=<seed> WLSCANOUT_FUZZ_ONLY=<section>:<index>.
import { constants } from '../../src/native/fds.js';

export const PAGE = constants.PAGE_SIZE;

/** The run's seed: $WLSCANOUT_FUZZ_SEED (decimal or 0x hex), default a fixed number so runs are repeatable. */
export const FUZZ_SEED: number = parseEnvInt('WLSCANOUT_FUZZ_SEED', 0x5eed1234) >>> 0;
/** Total cases over the in-process sections: $WLSCANOUT_FUZZ_CASES, default 10,500. */
export const FUZZ_CASES: number = Math.max(10, parseEnvInt('WLSCANOUT_FUZZ_CASES', 10_500));
/** Run one case only, "section:index" (e.g. "blob:4711"), to reproduce a failure. */
export const FUZZ_ONLY: { section: string; index: number } | null = (() => {
  const v = process.env.WLSCANOUT_FUZZ_ONLY;
  if (!v) return null;
  const [section, index] = v.split(':');
  return { section, index: Number(index) };
})();

function parseEnvInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`$${name} '${v}' is not a non-negative integer`);
  return n;
}

/** The indices of a section's cases to run (all of them, or the one $WLSCANOUT_FUZZ_ONLY names). */
export function caseIndices(section: string, count: number): number[] {
  if (FUZZ_ONLY) return FUZZ_ONLY.section === section ? [FUZZ_ONLY.index] : [];
  return Array.from({ length: count }, (_, i) => i);
}

/** How to reproduce a case, for failure messages. */
export function reproduce(section: string, index: number): string {
  return `fuzz seed ${FUZZ_SEED} (0x${FUZZ_SEED.toString(16)}), ${section} case ${index}: ` +
    `reproduce with WLSCANOUT_FUZZ_SEED=${FUZZ_SEED} WLSCANOUT_FUZZ_ONLY=${section}:${index} npx vitest run test/fuzz.test.ts`;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The generator of one case: independent of the cases before it. */
  static forCase(section: string, index: number, seed = FUZZ_SEED): Rng {
    const r = new Rng(seed ^ hashString(section));
    r.state = (r.u32() ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
    r.u32();
    return r;
  }

  /** Next 32 random bits (mulberry32). */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 2 ** 32;
  }

  /** Uniform integer in [lo, hi] (both inclusive, |hi - lo| < 2^53). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let x = this.float() * total;
    for (const [w, v] of items) {
      if ((x -= w) < 0) return v;
    }
    return items[items.length - 1][1];
  }

  /** A random 64-bit unsigned value. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** Numbers where checks usually break: 0, ±1, around a page, the 31/32/53-bit limits, NaN, fractions, huge. */
  boundary(): number {
    return this.pick(BOUNDARY_NUMBERS);
  }

  /** Mostly a plausible value near `typical`, sometimes a boundary number or a random 32-bit one. */
  near(typical: number, pBoundary = 0.15): number {
    const r = this.float();
    if (r < pBoundary) return this.boundary();
    if (r < pBoundary + 0.05) return this.u32();
    if (r < pBoundary + 0.15) return typical + this.int(-2, 2);
    return typical;
  }

  /** A string of up to maxLength characters from `alphabet`. */
  string(maxLength: number, alphabet: string): string {
    const n = this.int(0, maxLength);
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

export const BOUNDARY_NUMBERS: readonly number[] = [
  0, 1, -1, 2, 3, 7, 8, 63, 64, 65, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 16384, 16385,
  0x7fffffff, 0x80000000, 0xffffffff, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 2 ** 53, -(2 ** 31), -(2 ** 53),
  NaN, Infinity, -Infinity, 1.5, 0.5, -0.5, 1e300, Number.MAX_VALUE, Number.MIN_VALUE, -0,
];

/** JSON for failure messages: bigints as "123n", non-finite numbers by name. */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
    if (Buffer.isBuffer(v)) return `<${v.length} bytes>`;
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') return `<${(v as { data: unknown[] }).data.length} bytes>`;
    return v;
  });
}
