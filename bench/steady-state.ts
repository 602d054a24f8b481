// steady-state: blob guests created and destroyed every 1,000 frames on sway at 240 Hz; every 10k frames, RSS
// (and where it goes) and the open fds, which must stay flat after warm-up.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { startSway } from '../src/embedded/compositors.js';
import { Presenter } from '../src/present/presenter.js';
import { runGuest } from '../src/pipeline.js';
import { formatByName } from '../src/formats.js';

const root = join(import.meta.dirname, '../..');
const XRGB = formatByName('XRGB8888')!;
const MiB = 2 ** 20;

export interface SteadyRow {
  frames: number; rssMiB: number; openFds: number; resources: number;
  /** Where RSS goes: V8's heap in use, memory V8 knows of outside it (Buffers, ArrayBuffers), memfds mapped now. */
  heapUsedMiB: number; externalMiB: number; memfdMappedMiB: number;
  /** V8's heap as committed (all spaces), and its young generation alone: V8 grows it under allocation load. */
  heapTotalMiB: number; newSpaceMiB: number;
  /** RSS by kind of mapping (/proc/self/smaps): files (code and data of the binaries), malloc's brk heap, other anonymous. */
  rssFileMiB: number; rssBrkMiB: number; rssAnonMiB: number;
}

/** One pass over /proc/self/smaps: RSS by kind of mapping, and the size of every memfd mapping (guest memory,
 *  surfaces, pools), all in MiB. */
function mappings(): { file: number; brk: number; anon: number; memfdMapped: number } {
  const rssKb = { file: 0, brk: 0, anon: 0 };
  let memfdBytes = 0;
  let kind: keyof typeof rssKb = 'anon';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (header) {
      const path = header[3];
      if (path.startsWith('/memfd:')) memfdBytes += parseInt(header[2], 16) - parseInt(header[1], 16);
      kind = path === '[heap]' ? 'brk' : path.startsWith('/') && !path.startsWith('/memfd:') ? 'file' : 'anon';
    } else if (line.startsWith('Rss:')) {
      rssKb[kind] += Number(line.split(/\s+/)[1]);
    }
  }
  return { file: rssKb.file / 1024, brk: rssKb.brk / 1024, anon: rssKb.anon / 1024, memfdMapped: memfdBytes / MiB };
}

function memorySample(): Omit<SteadyRow, 'frames' | 'openFds' | 'resources'> {
  const usage = process.memoryUsage();
  const newSpace = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!;
  const maps = mappings();
  return {
    rssMiB: usage.rss / MiB, heapUsedMiB: usage.heapUsed / MiB, externalMiB: usage.external / MiB, memfdMappedMiB: maps.memfdMapped,
    heapTotalMiB: usage.heapTotal / MiB, newSpaceMiB: newSpace.space_size / MiB,
    rssFileMiB: maps.file, rssBrkMiB: maps.brk, rssAnonMiB: maps.anon,
  };
}

/** Blob guests created and destroyed every 1,000 frames (resource churn) on sway at 240 Hz; RSS and fds every 10k. */
export async function steadyState(): Promise<SteadyRow[]> {
  const total = Number(process.env.WLSCANOUT_BENCH_STEADY_FRAMES ?? 100_000);
  const sway = await startSway({ width: 640, height: 480, refreshHz: 240 });
  const rows: SteadyRow[] = [];
  const { BlobGuest } = await import('../src/source/blob-guest.js');
  const { openFdCount } = await import('../src/native/fds.js');
  try {
    const presenter = await Presenter.open({ display: sway.socket, title: 'steady', fullscreen: true });
    let frames = 0;
    let resources = 0;
    while (frames < total) {
      const guest = new BlobGuest({ width: 640, height: 480, format: XRGB, buffers: 3, firstResourceId: resources + 1 });
      resources += 3;
      await runGuest(guest, presenter, 1000).done;
      guest.close();
      frames += 1000;
      if (frames % 10_000 === 0) {
        // After a full GC (node --expose-gc, as `make bench` runs it), RSS is what is retained, not when V8 last collected.
        (globalThis as { gc?: () => void }).gc?.();
        rows.push({ frames, openFds: openFdCount(), resources, ...memorySample() });
      }
    }
    presenter.close();
  } catch (e) {
    console.error(`steady state failed after ${rows.length * 10_000}+ frames: ${(e as Error).message}\n${sway.log().slice(-3000)}`);
    throw e;
  } finally {
    await sway.stop();
  }
  return rows;
}

/**
 * V8's young generation grows (doubling, up to 2 × 16 MiB semi-spaces here) once the bytes surviving its
 * scavenges add up to its capacity, which any long-running Node process reaches sooner or later: in the first
 * runs of this scenario it happened between 60k and 80k frames, a one-time +8 MiB step that said nothing about
 * leaks. So the scenario runs in a Node of its own whose young generation starts at that final size: RSS is then
 * measured against the state the process ends up in anyway, and a leak still shows as growth.
 */
const STEADY_V8_FLAGS = ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16'];

export function steadyStateInChild(): Promise<SteadyRow[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...STEADY_V8_FLAGS, join(root, 'dist-bench/bench/run.js'), 'steady-state', '--steady-child'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('STEADY '));
      if (code !== 0 || !line) return reject(new Error(`steady-state: its Node process ended with status ${code}:\n${out.slice(-2000)}`));
      resolve(JSON.parse(line.slice(7)) as SteadyRow[]);
    });
  });
}
