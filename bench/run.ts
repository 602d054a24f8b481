// `make bench`: every scenario (bench/README.md), each a table on stdout, all of them as JSON under
// bench/results/. One scenario alone: node dist-bench/bench/run.js present-cost | present-cost-dmabuf |
// latency | scale | steady-state | qemu-e2e | capture (present-cost-dmabuf boots the lab VM and runs itself there
// with --inside-lab) | bytes-copied
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startSway, startWeston, type Compositor } from '../src/embedded/compositors.js';
import { Presenter } from '../src/present/presenter.js';
import { BuiltinGuest } from '../src/source/builtin-guest.js';
import { runGuest } from '../src/pipeline.js';
import { formatByName } from '../src/formats.js';
import { memfdCreate, ftruncate, addSeals, mmap, constants } from '../src/native/fds.js';
import { percentiles } from '../src/percentiles.js';
import { cpuTicks, memcpyMs } from './proc.js';
import { steadyState, steadyStateInChild } from './steady-state.js';
import { qemuEndToEnd } from './qemu-e2e.js';

const root = join(import.meta.dirname, '../..');
const XRGB = formatByName('XRGB8888')!;
const SIZES = [[1280, 800], [1920, 1080], [3840, 2160]] as const;
const FRAMES = Number(process.env.WLSCANOUT_BENCH_FRAMES ?? 600);
const BYTES_4K = 3840 * 2160 * 4;

interface CostRow { size: string; client: string; frames: number; fps: number; cpuMsPerFrame: number }

/** Pre-drawn buffers presented on every frame callback, like the C reference: the client's own cost only. */
async function oursPresent(compositor: Compositor, width: number, height: number, frames: number): Promise<CostRow> {
  const stride = width * 4;
  const bufferSize = Math.ceil((stride * height) / constants.PAGE_SIZE) * constants.PAGE_SIZE;
  const memfd = memfdCreate('bench-ram', true);
  ftruncate(memfd, bufferSize * 3);
  addSeals(memfd, constants.F_SEAL_SHRINK);
  new Uint32Array(mmap(memfd, 0, bufferSize * 3, true)).forEach((_, i, a) => { a[i] = 0xff000000 | Math.imul(i, 2654435761) >>> 8; });
  const presenter = await Presenter.open({ display: compositor.socket, title: 'bench', fullscreen: true });
  while (!presenter.window.configured) await new Promise((r) => setTimeout(r, 5));
  const busy = [false, false, false];
  let shown = 0;
  let next = 0;
  const present = (): void => {
    const slot = [0, 1, 2].map((k) => (next + k) % 3).find((s) => !busy[s]);
    if (slot === undefined) return;
    busy[slot] = true;
    next = slot + 1;
    presenter.present({ fd: memfd, offset: slot * bufferSize, width, height, stride, fourcc: XRGB.fourcc, damage: null,
      seq: shown, flushedAt: process.hrtime.bigint(), release: () => { busy[slot] = false; } });
  };
  const start = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    presenter.on('frame-done', () => { if (++shown >= frames) resolve(); else present(); });
    present();
  });
  const cpu = process.cpuUsage(cpu0);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  presenter.close();
  return { size: `${width}x${height}`, client: 'wlscanout', frames: shown, fps: shown / seconds, cpuMsPerFrame: (cpu.user + cpu.system) / 1000 / shown };
}

function refClient(compositor: Compositor, width: number, height: number, frames: number): Promise<CostRow> {
  return new Promise((resolve, reject) => {
    execFile(join(root, 'bench/ref/build/ref-client'), [String(width), String(height), String(frames)], { env: compositor.env, timeout: 120_000 },
      (err, stdout) => {
        if (err) return reject(err);
        const r = JSON.parse(stdout) as { frames: number; seconds: number; cpu_user_s: number; cpu_sys_s: number };
        resolve({ size: `${width}x${height}`, client: 'C floor (libwayland)', frames: r.frames, fps: r.frames / r.seconds,
          cpuMsPerFrame: ((r.cpu_user_s + r.cpu_sys_s) * 1000) / r.frames });
      });
  });
}

/** weston's own simple-shm client (250×250, draws its frame each time): fps from its WAYLAND_DEBUG commits in one
 *  run, CPU from /proc in a second run without the debug output. */
async function westonSimpleShm(compositor: Compositor, seconds: number): Promise<CostRow> {
  const run = (debug: boolean) => new Promise<{ commits: number; cpuMs: number; elapsed: number }>((resolve, reject) => {
    const child = spawn('weston-simple-shm', [], { env: { ...compositor.env, ...(debug ? { WAYLAND_DEBUG: 'client' } : {}) }, stdio: ['ignore', 'ignore', 'pipe'] });
    let commits = 0;
    let partial = '';
    child.stderr!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      commits += lines.filter((l) => /-> wl_surface@\d+\.commit\(\)/.test(l)).length;
    });
    child.once('error', reject);
    const t0 = Date.now();
    setTimeout(() => {
      const cpuMs = (cpuTicks(child.pid!) * 1000) / 100;
      const elapsed = (Date.now() - t0) / 1000;
      child.kill('SIGTERM');
      resolve({ commits, cpuMs, elapsed });
    }, seconds * 1000);
  });
  const counted = await run(true);
  const timed = await run(false);
  const fps = counted.commits / counted.elapsed;
  return { size: '250x250', client: 'weston-simple-shm (draws each frame)', frames: Math.round(fps * timed.elapsed), fps,
    cpuMsPerFrame: timed.cpuMs / (fps * timed.elapsed) };
}

async function presentCost(): Promise<CostRow[]> {
  const rows: CostRow[] = [];
  // weston-simple-shm runs only on weston (on sway 1.7 headless it aborts: "Both buffers busy at redraw()"), in a
  // 250×250 window: all three clients at that size on a 250×250 weston output at 60 Hz.
  const weston = await startWeston({ width: 250, height: 250 });
  try {
    rows.push({ ...(await refClient(weston, 250, 250, Math.min(FRAMES, 300))), size: '250x250 (weston)' });
    rows.push({ ...(await oursPresent(weston, 250, 250, Math.min(FRAMES, 300))), size: '250x250 (weston)' });
    rows.push({ ...(await westonSimpleShm(weston, 5)), size: '250x250 (weston)' });
  } finally {
    await weston.stop();
  }
  for (const [width, height] of SIZES) {
    const sway = await startSway({ width, height, refreshHz: 240 });
    try {
      rows.push(await refClient(sway, width, height, FRAMES));
      rows.push(await oursPresent(sway, width, height, FRAMES));
    } finally {
      await sway.stop();
    }
  }
  return rows;
}

interface LatencyRow { path: string; what: string; p50Ms: number; p99Ms: number; maxMs: number; refreshMs: number; samples: number }

/** The built-in guest at 1280x800 on weston (which answers presentation feedback): flush → presented, flush → release. */
async function latency(): Promise<LatencyRow[]> {
  const weston = await startWeston({ width: 1280, height: 800 });
  try {
    const presenter = await Presenter.open({ display: weston.socket, title: 'bench', fullscreen: true });
    const guest = new BuiltinGuest({ width: 1280, height: 800, format: XRGB, buffers: 3 });
    const presented: number[] = [];
    const released: number[] = [];
    let refresh = 0;
    presenter.on('presented', (p) => { presented.push(Number(p.latency)); refresh = p.refresh; });
    const drawNext = guest.drawNext.bind(guest);
    guest.drawNext = () => {
      const frame = drawNext();
      if (!frame) return null;
      const release = frame.release;
      return { ...frame, release: () => { released.push(Number(process.hrtime.bigint() - frame.flushedAt)); release(); } };
    };
    await runGuest(guest, presenter, FRAMES).done;
    await new Promise((r) => setTimeout(r, 200));
    presenter.close();
    guest.close();
    const p = percentiles(presented.map((ns) => ns / 1e6));
    const r = percentiles(released.map((ns) => ns / 1e6));
    if (!p || !r) throw new Error(`latency: ${presented.length} frames presented and ${released.length} released, none to measure`);
    return [
      { path: 'wl_shm (weston, pixman)', what: 'guest flush → presented', p50Ms: p.p50, p99Ms: p.p99, maxMs: p.max, refreshMs: refresh / 1e6, samples: presented.length },
      { path: 'wl_shm (weston, pixman)', what: 'guest flush → released to guest', p50Ms: r.p50, p99Ms: r.p99, maxMs: r.max, refreshMs: refresh / 1e6, samples: released.length },
    ];
  } finally {
    await weston.stop();
  }
}

interface ScaleRow { heads: number; fpsPerHeadMin: number; fpsPerHeadMean: number; cpuPercentOfCore: number }

/** N built-in guests at 1920x1080, each in its own window on one sway output at 60 Hz, for SCALE_SECONDS. */
async function scale(): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = [];
  const seconds = Number(process.env.WLSCANOUT_BENCH_SECONDS ?? 5);
  for (const heads of [1, 4, 16]) {
    const sway = await startSway({ width: 1920, height: 1080, refreshHz: 60 });
    const runs: { guest: BuiltinGuest; presenter: Presenter; shown: () => number }[] = [];
    try {
      for (let i = 0; i < heads; i++) {
        const presenter = await Presenter.open({ display: sway.socket, title: `head ${i}` });
        const guest = new BuiltinGuest({ width: 1920, height: 1080, format: XRGB, buffers: 3 });
        let shown = 0;
        presenter.on('frame-done', () => { shown++; });
        runGuest(guest, presenter);
        runs.push({ guest, presenter, shown: () => shown });
      }
      await new Promise((r) => setTimeout(r, 1000)); // settle: windows configured, tiled
      const before = runs.map((r) => r.shown());
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const cpu = process.cpuUsage(cpu0);
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      const fps = runs.map((r, i) => (r.shown() - before[i]) / elapsed);
      rows.push({ heads, fpsPerHeadMin: Math.min(...fps), fpsPerHeadMean: fps.reduce((a, b) => a + b, 0) / heads,
        cpuPercentOfCore: ((cpu.user + cpu.system) / 1e6 / elapsed) * 100 });
    } finally {
      for (const r of runs) { r.presenter.close(); r.guest.close(); }
      await sway.stop();
    }
  }
  return rows;
}

const only = process.argv[2];
if (process.argv.includes('--inside-lab')) {
  // Inside the lab VM (the project is read-only there): the one scenario, its JSON to the VM's out share.
  if (only !== 'present-cost-dmabuf') throw new Error(`--inside-lab is for present-cost-dmabuf, not ${only}`);
  const { insideLab, printDmabuf } = await import('./dmabuf.js');
  printDmabuf(await insideLab());
  process.exit(0);
}
if (process.argv.includes('--steady-child')) {
  // steadyStateInChild's child: the rows as one JSON line.
  console.log(`STEADY ${JSON.stringify(await steadyState())}`);
  process.exit(0);
}
const results: Record<string, unknown> = { date: new Date().toISOString(), frames: FRAMES };
if (!only || only === 'present-cost') {
  const rows = await presentCost();
  results.presentCost = rows;
  console.log(`\npresent cost on sway 1.7 headless (pixman) at 240 Hz, ${FRAMES} frames, pre-drawn XRGB8888 buffers; the 250x250 rows on weston 10 (60 Hz) with weston-simple-shm`);
  console.table(rows.map((r) => ({ size: r.size, client: r.client, fps: r.fps.toFixed(1), 'CPU ms/frame': r.cpuMsPerFrame.toFixed(3) })));
  for (const [w, h] of SIZES) {
    const [floor, ours] = rows.filter((r) => r.size === `${w}x${h}`);
    console.log(`${w}x${h}: wlscanout CPU per frame = ${(ours.cpuMsPerFrame / floor.cpuMsPerFrame).toFixed(2)}× the C floor, fps ${(ours.fps / floor.fps).toFixed(2)}×`);
  }
}
if (!only || only === 'present-cost-dmabuf') {
  const { presentCostDmabuf, printDmabuf } = await import('./dmabuf.js');
  console.log('\npresent-cost-dmabuf: booting the lab VM (lab/boot.sh)');
  const result = await presentCostDmabuf();
  results.presentCostDmabuf = result;
  printDmabuf(result);
}
if (!only || only === 'latency') {
  const rows = await latency();
  results.latency = rows;
  console.log(`\nlatency, built-in guest 1280x800, ${FRAMES} frames`);
  console.table(rows.map((r) => ({ path: r.path, what: r.what, 'p50 ms': r.p50Ms.toFixed(2), 'p99 ms': r.p99Ms.toFixed(2), 'max ms': r.maxMs.toFixed(2), 'refresh ms': r.refreshMs.toFixed(2), samples: r.samples })));
}
if (!only || only === 'scale') {
  const rows = await scale();
  results.scale = rows;
  console.log('\nscale: N built-in guests at 1920x1080 in N windows on one sway output at 60 Hz');
  console.table(rows.map((r) => ({ heads: r.heads, 'fps per head (min)': r.fpsPerHeadMin.toFixed(1), 'fps per head (mean)': r.fpsPerHeadMean.toFixed(1), 'CPU % of a core (guests + presenters)': r.cpuPercentOfCore.toFixed(1) })));
}
if (!only || only === 'steady-state') {
  const rows = await steadyStateInChild();
  results.steadyState = rows;
  console.log('\nsteady state: blob guests created and destroyed every 1,000 frames, sway at 240 Hz');
  console.table(rows.map((r) => ({ frames: r.frames, 'RSS MiB': r.rssMiB.toFixed(1), 'V8 heap used / committed / new space MiB':
    `${r.heapUsedMiB.toFixed(1)} / ${r.heapTotalMiB.toFixed(1)} / ${r.newSpaceMiB.toFixed(1)}`,
    'external MiB': r.externalMiB.toFixed(1), 'memfds mapped MiB': r.memfdMappedMiB.toFixed(1),
    'RSS files / brk heap / other anon MiB': `${r.rssFileMiB.toFixed(1)} / ${r.rssBrkMiB.toFixed(1)} / ${r.rssAnonMiB.toFixed(1)}`, 'open fds': r.openFds, 'resources so far': r.resources })));
}
if (!only || only === 'qemu-e2e') {
  const rows = await qemuEndToEnd();
  results.qemuEndToEnd = rows;
  console.log("\nQEMU end to end: a full 1280x800 frame per DIRTYFB at a 60 fps target, headless sway 60 Hz; CPU as % of a core");
  console.table(rows.map((r) => ({ display: r.display, 'guest fps': r.guestFps.toFixed(1), 'shown fps': r.shownFps.toFixed(1), 'QEMU main thread %': r.qemuMainPct.toFixed(1),
    'wlscanout % (all threads)': r.wlscanoutPct?.toFixed(1) ?? '—', 'of which main thread %': r.wlscanoutMainPct?.toFixed(1) ?? '—',
    'wlscanout faults/frame': r.wlscanoutFaultsPerFrame?.toFixed(0) ?? '—', 'sway %': r.compositorPct.toFixed(1),
    'QEMU main + viewer %': (r.qemuMainPct + (r.wlscanoutPct ?? 0)).toFixed(1) })));
}
if (!only || only === 'capture') {
  const { captureBench } = await import('./capture.js');
  const { memcpyMs, rows } = await captureBench(FRAMES);
  results.capture = { memcpyMs, rows };
  console.log(`\ncapture: built-in guest 1920x1080 into a lent memfd, no window (one 1080p memcpy: ${memcpyMs.toFixed(2)} ms)`);
  console.table(rows.map((r) => ({ consumer: r.consumer, frames: r.frames, fps: r.fps.toFixed(1), dropped: r.dropped,
    'CPU ms/frame': r.cpuMsPerFrame.toFixed(2), 'ffmpeg CPU ms/frame': r.encoderCpuMsPerFrame?.toFixed(2) ?? '—',
    'bytes copied/frame': Math.round(r.bytesCopiedPerFrame), '× memcpy': r.memcpyMultiple.toFixed(2) })));
}
if (!only || only === 'bytes-copied') {
  const { bytesCopied } = await import('./bytes-copied.js');
  const rows = await bytesCopied(root, Math.min(FRAMES, 300));
  const floor = memcpyMs(BYTES_4K);
  results.bytesCopied = { memcpy4kMs: floor, rows };
  console.log('\nbytes of pixels copied by wlscanout per frame (counted at the copy sites), 1280x800 XRGB8888; ' +
    `one 4K XRGB memcpy (${BYTES_4K} bytes) measured at ${floor.toFixed(2)} ms`);
  console.table(rows.map((r) => ({ path: r.path, frames: r.frames, 'bytes/frame': Math.round(r.bytesPerFrame),
    'of a full frame': `${((r.bytesPerFrame / r.fullFrameBytes) * 100).toFixed(1)}%`,
    'of a 4K memcpy': `${((r.bytesPerFrame / BYTES_4K) * 100).toFixed(1)}%`,
    'memcpy time ms/frame': ((r.bytesPerFrame / BYTES_4K) * floor).toFixed(3) })));
}
mkdirSync(join(root, 'bench/results'), { recursive: true });
const file = join(root, 'bench/results', `${String(results.date).replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nresults: ${file}`);
process.exit(0);
