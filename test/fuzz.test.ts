// Seeded, reproducible fuzzing of what comes from outside: blob resource descriptions (a VMM's), QEMU's calls on
// our D-Bus listener, buffers a capture consumer lends, and command lines. Seed: $WLSCANOUT_FUZZ_SEED; cases:
// $WLSCANOUT_FUZZ_CASES (total, split 70/15/10/5 over the sections); one case alone:
// $WLSCANOUT_FUZZ_ONLY=section:index. Failures name all three.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listOpenFds } from '../src/native/fds.js';
import { ImportError, type ImportErrorCode } from '../src/import/errors.js';
import { BlobResource } from '../src/source/blob-resource.js';
import { log } from '../src/log.js';
import { FdPool, generateDescription, oracle } from './fuzz/blob-cases.js';
import { runListenerFuzz } from './fuzz/dbus-cases.js';
import { runCaptureFuzz } from './fuzz/capture-cases.js';
import { runCliParserFuzz, runCliSpawnFuzz } from './fuzz/cli-cases.js';
import { FUZZ_CASES, FUZZ_SEED, Rng, caseIndices, reproduce, show } from './fuzz/rng.js';

const BLOB_CASES = Math.round(FUZZ_CASES * 0.7);
const DBUS_CASES = Math.round(FUZZ_CASES * 0.15);
const CAPTURE_CASES = Math.round(FUZZ_CASES * 0.1);
const CLI_CASES = FUZZ_CASES - BLOB_CASES - DBUS_CASES - CAPTURE_CASES;
const CLI_SPAWNS = Math.max(3, Math.min(30, Math.round(FUZZ_CASES / 350)));

const IMPORT_ERROR_CODES: readonly ImportErrorCode[] = [
  'bad-size', 'bad-stride', 'bad-offset', 'out-of-bounds', 'unknown-format', 'unsupported-format', 'unsupported-modifier',
  'not-memfd', 'unsealed-memfd', 'unaligned', 'overlapping', 'bad-plane', 'bad-fd', 'no-udmabuf', 'udmabuf-failed',
];

describe(`fuzz (seed ${FUZZ_SEED}, ${FUZZ_CASES} cases)`, () => {
  let savedLevel: string;
  beforeAll(() => {
    // thousands of refused calls each log a warning; the invariants are checked here, not in the log
    savedLevel = log.level;
    log.level = 'silent';
  });
  afterAll(() => {
    log.level = savedLevel;
  });

  it('blob resource descriptions: a valid resource or an ImportError naming it, never leaking an fd', () => {
    const baseline = listOpenFds();
    const pool = new FdPool();
    const poolFds = listOpenFds();
    const outcomes = new Map<string, number>();
    const count = (key: string): void => void outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    let ran = 0;
    try {
      for (const index of caseIndices('blob', BLOB_CASES)) {
        const rng = Rng.forCase('blob', index);
        const desc = generateDescription(rng, pool);
        const verdict = oracle(desc, pool);
        const where = (): string => `${reproduce('blob', index)}\n  description: ${show(desc)}\n  oracle: ${verdict.why}`;
        let resource: BlobResource | null = null;
        try {
          resource = new BlobResource(desc);
        } catch (e) {
          if (!(e instanceof ImportError)) throw new Error(`${where()}\n  threw ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
          if (!IMPORT_ERROR_CODES.includes(e.code)) throw new Error(`${where()}\n  undeclared ImportError code '${e.code}'`);
          if (!e.message.includes(`blob resource`) || !e.message.includes(String(desc.id))) {
            throw new Error(`${where()}\n  the message does not name resource ${desc.id}: ${e.message}`);
          }
          if (verdict.valid) throw new Error(`${where()}\n  the oracle says valid, refused with ${e.code}: ${e.message}`);
          count(e.code);
        }
        if (resource) {
          try {
            if (!verdict.valid) throw new Error(`${where()}\n  accepted, but the oracle says invalid`);
            if (resource.size !== verdict.size) throw new Error(`${where()}\n  size ${resource.size}, the ranges hold ${verdict.size}`);
            if (resource.refCount !== 1 || resource.format.fourcc !== desc.fourcc || resource.modifier !== (desc.modifier ?? 0n)) {
              throw new Error(`${where()}\n  resource does not match its description: ${resource.toString()}`);
            }
            const own = [...(resource.memory ?? []).map((r) => r.memfd), ...(resource.dmabufs ?? [])];
            const given = [...(desc.memory ?? []).map((r) => r.memfd), ...(desc.dmabufs ?? [])];
            if (own.some((fd) => given.includes(fd))) throw new Error(`${where()}\n  the resource kept a caller's fd instead of its own copy`);
          } finally {
            resource.unref();
          }
          if (resource.alive) throw new Error(`${where()}\n  still alive after its only unref`);
          count(desc.memory ? 'created (memory)' : 'created (dmabuf)');
        }
        ran++;
        if (index % 250 === 0) expect(listOpenFds(), `${reproduce('blob', index)}: open fds after the case`).toEqual(poolFds);
      }
      expect(listOpenFds(), `fuzz seed ${FUZZ_SEED}: open fds after every blob case`).toEqual(poolFds);
    } finally {
      pool.close();
    }
    expect(listOpenFds()).toEqual(baseline);
    console.log(`fuzz blob: ${ran} cases (seed ${FUZZ_SEED}): ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    if (caseIndices('blob', BLOB_CASES).length === BLOB_CASES) {
      expect(ran).toBeGreaterThanOrEqual(Math.min(8000, BLOB_CASES));
      // the generator must reach both sides of the rules
      expect((outcomes.get('created (memory)') ?? 0) + (outcomes.get('created (dmabuf)') ?? 0)).toBeGreaterThan(BLOB_CASES / 20);
    }
  }, 60_000);

  it('D-Bus listener calls: every call answered in time, UpdateDMABUF always, no fd leaked', async () => {
    const stats = await runListenerFuzz(caseIndices('dbus', DBUS_CASES), DBUS_CASES);
    console.log(`fuzz dbus: ${stats.summary}`);
  }, 60_000);

  it('lent capture buffers: lent or a CaptureError naming the buffer; captures fill the guest frame or fail with a declared code, in time; no fd leaked', async () => {
    const indices = caseIndices('capture', CAPTURE_CASES);
    const { ran, summary, counts } = await runCaptureFuzz(indices);
    console.log(`fuzz capture: ${summary}`);
    if (indices.length === CAPTURE_CASES) expect(ran).toBe(CAPTURE_CASES);
    if (indices.length === CAPTURE_CASES && CAPTURE_CASES >= 500) {
      // the generator must reach real copies (whole and damage only, mapped and by pwrite), truncation and races
      const filled = (what: string): number => [...counts].filter(([k]) => k.startsWith('capture filled') && k.includes(what)).reduce((s, [, v]) => s + v, 0);
      expect(filled('')).toBeGreaterThan(CAPTURE_CASES / 4);
      for (const what of ['shm-mapped', 'shm-pwrite', 'damage', 'flipped']) expect(filled(what), what).toBeGreaterThan(0);
      for (const code of ['truncated', 'taken-back', 'buffer-constraints']) expect(counts.get(`capture ${code}`) ?? 0, code).toBeGreaterThan(0);
    }
  }, 60_000);

  it('command lines: values in range or a UsageError naming the option; the command exits 0, 1 or 2 with one line', async () => {
    const parsers = runCliParserFuzz(caseIndices('cli', CLI_CASES));
    console.log(`fuzz cli parsers: ${parsers}`);
    const spawned = await runCliSpawnFuzz(caseIndices('cli-run', CLI_SPAWNS));
    console.log(`fuzz cli runs: ${spawned}`);
  }, 90_000);
});
