// present-cost-dmabuf: the present cost of blob frames on the dmabuf path (udmabuf → zwp_linux_dmabuf_v1), which
// needs /dev/udmabuf and a GL compositor, so it runs inside the lab VM (lab/boot.sh: the lab kernel with udmabuf
// and vgem under QEMU TCG, the host root over 9p). On the host, `presentCostDmabuf` boots the VM, runs
// `run.js present-cost-dmabuf --inside-lab` there and reads its JSON back from the VM's writable out share; a lab
// that cannot run is an error, never a skip. Inside, on headless weston --use-gl (Mesa kms_swrast on vgem, 60 Hz):
// (i) wlscanout's presenter showing a BlobGuest's three pre-drawn resources, flushed round robin through the
// virtio-gpu API without redrawing, and (ii) bench/ref/ref-client in dmabuf mode, the C floor (udmabufs of a memfd
// presented with libwayland directly).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { Presenter } from '../src/present/presenter.js';
import { BlobGuest } from '../src/source/blob-guest.js';
import { waitFence } from '../src/sync/fence.js';
import { close } from '../src/native/fds.js';
import { formatByName } from '../src/formats.js';
import { cpuTicks } from './proc.js';

const root = join(import.meta.dirname, '../..');
const XRGB = formatByName('XRGB8888')!;
const RESULT = 'present-cost-dmabuf.json';
/** Frames per measurement: under TCG weston --use-gl shows 10–25 fps, so fewer than present-cost's default. */
const FRAMES = Number(process.env.WLSCANOUT_BENCH_DMABUF_FRAMES ?? 100);
/**
 * Runs per client and size, alternating which goes first: weston --use-gl falls into a slow state for some client
 * runs depending on their place in its sequence (the C floor too), so one run each would compare a slow run with
 * a fast one. The rows are the medians.
 */
const ROUNDS = Number(process.env.WLSCANOUT_BENCH_DMABUF_ROUNDS ?? 3);
/** Frames shown before the clocks start, by both clients: wlscanout imports its three resources there (the C floor
 *  creates its buffers before it starts), and weston's first GL frames (shader compilation under TCG) are slow. */
const WARMUP = 10;
const SIZES = (process.env.WLSCANOUT_BENCH_DMABUF_SIZES ?? '1280x800,1920x1080,3840x2160').split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);

export interface DmabufRun {
  size: string; client: string; frames: number; fps: number; cpuMsPerFrame: number;
  /** weston's own CPU (main process, /proc utime + stime) over the client's whole run, warm-up included, per frame shown. */
  compositorCpuMsPerFrame: number;
}
/** The median of a client's runs at one size, and every run's CPU ms per frame in the order they ran. */
export interface DmabufCostRow extends DmabufRun { cpuMsPerFrameRuns: number[] }
export interface DmabufResult {
  compositor: string;
  frames: number;
  rounds: number;
  rows: DmabufCostRow[];
  /** wlscanout's presenter per size: the path its resources took, explicit sync, imports. */
  details: { size: string; paths: string[]; explicitSync: string; imports: number; shmBuffersCreated: number; framesSkipped: number }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `client` and adds the compositor's CPU per frame over its run. */
async function withCompositorCpu(compositor: Compositor, client: () => Promise<Omit<DmabufRun, 'compositorCpuMsPerFrame'>>): Promise<DmabufRun> {
  const c0 = cpuTicks(compositor.pid) * 10;
  const row = await client();
  return { ...row, compositorCpuMsPerFrame: (cpuTicks(compositor.pid) * 10 - c0) / (row.frames + WARMUP) };
}

function refClientDmabuf(compositor: Compositor, width: number, height: number, frames: number): Promise<Omit<DmabufRun, 'compositorCpuMsPerFrame'>> {
  return new Promise((resolve, reject) => {
    execFile(join(root, 'bench/ref/build/ref-client'), [String(width), String(height), String(frames), 'dmabuf', String(WARMUP)],
      { env: compositor.env, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`ref-client dmabuf ${width}x${height} failed: ${err.message}\n${stderr}\n${compositor.log().slice(-2000)}`));
        const r = JSON.parse(stdout) as { frames: number; seconds: number; cpu_user_s: number; cpu_sys_s: number };
        resolve({ size: `${width}x${height}`, client: 'C floor (libwayland, udmabuf)', frames: r.frames, fps: r.frames / r.seconds,
          cpuMsPerFrame: ((r.cpu_user_s + r.cpu_sys_s) * 1000) / r.frames });
      });
  });
}

/** A BlobGuest's three resources, drawn once, flushed round robin on every frame callback (no redrawing): what
 *  is measured is the presenter's and the virtio-gpu API's own cost per frame on the dmabuf path. */
async function oursDmabuf(compositor: Compositor, width: number, height: number, frames: number): Promise<{ row: Omit<DmabufRun, 'compositorCpuMsPerFrame'>; detail: DmabufResult['details'][number] }> {
  const guest = new BlobGuest({ width, height, format: XRGB, buffers: 3 });
  const presenter = await Presenter.open({ display: compositor.socket, title: 'bench', fullscreen: true });
  try {
    if (!presenter.dmabufBuffers) throw new Error('present-cost-dmabuf: weston offers no zwp_linux_dmabuf_v1: the dmabuf path cannot be measured');
    for (let i = 0; i < 3; i++) guest.ram.drawNext()!.release(); // the pattern, once per resource
    for (let t = Date.now(); !presenter.window.configured; await sleep(5)) {
      if (Date.now() - t > 20_000) throw new Error('present-cost-dmabuf: the window was never configured');
    }
    guest.gpu.on('frame', (frame) => presenter.present(frame));
    const ids = [...guest.resourceIds.values()];
    const busy = new Set<number>();
    let next = 0;
    let wanted = false;
    const flush = (): void => {
      const id = [0, 1, 2].map((k) => ids[(next + k) % 3]).find((r) => !busy.has(r));
      wanted = id === undefined; // every resource held: flush as soon as one comes back
      if (id === undefined) return;
      busy.add(id);
      next = ids.indexOf(id) + 1;
      const free = (): void => { busy.delete(id); if (wanted) flush(); };
      guest.gpu.setScanoutBlob(0, id);
      void guest.gpu.resourceFlush(id).then(({ releaseFence }) => {
        if (releaseFence === null) return free();
        void waitFence(releaseFence, 5000).result.then(() => { close(releaseFence); free(); });
      });
    };
    let shown = 0;
    let start = 0n;
    let cpu0 = process.cpuUsage();
    const deadline = setTimeout(() => presenter.emit('error', new Error(`present-cost-dmabuf: ${width}x${height}: only ${shown} frames in 150 s`)), 150_000);
    await new Promise<void>((resolve, reject) => {
      presenter.on('error', reject);
      presenter.on('frame-done', () => {
        shown++;
        if (shown === WARMUP) { start = process.hrtime.bigint(); cpu0 = process.cpuUsage(); }
        if (shown >= WARMUP + frames) resolve(); else flush();
      });
      flush();
    });
    clearTimeout(deadline);
    const cpu = process.cpuUsage(cpu0);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const paths = [...presenter.paths.values()];
    const detail = {
      size: `${width}x${height}`, paths: paths.map((p) => `${p.path}: ${p.reason}`),
      explicitSync: JSON.stringify(presenter.explicitSync), imports: presenter.dmabufBuffers.stats.imports,
      shmBuffersCreated: presenter.buffers.stats.buffersCreated, framesSkipped: presenter.stats.framesSkipped,
    };
    // A silent wl_shm fallback would measure the wrong path: fail instead.
    if (paths.length !== 3 || !paths.every((p) => p.path === 'dmabuf') || detail.shmBuffersCreated !== 0) {
      throw new Error(`present-cost-dmabuf: ${width}x${height}: the frames did not all go through linux-dmabuf: ${JSON.stringify(detail)}`);
    }
    return { row: { size: `${width}x${height}`, client: 'wlscanout (BlobGuest, udmabuf)', frames, fps: frames / seconds,
      cpuMsPerFrame: (cpu.user + cpu.system) / 1000 / frames }, detail };
  } finally {
    presenter.close();
    guest.close();
  }
}

/** Inside the lab VM: both clients at every size on weston --use-gl; the result goes to /mnt/<RESULT>. */
export async function insideLab(): Promise<DmabufResult> {
  if (!process.env.WLSCANOUT_IN_LAB) throw new Error('present-cost-dmabuf --inside-lab runs in the lab VM only (lab/boot.sh)');
  if (!existsSync('/dev/udmabuf')) throw new Error('present-cost-dmabuf: /dev/udmabuf is missing in the lab VM');
  const result: DmabufResult = { compositor: 'weston 10 headless --use-gl (Mesa kms_swrast on vgem, 60 Hz) in the lab VM (QEMU TCG)',
    frames: FRAMES, rounds: ROUNDS, rows: [], details: [] };
  for (const [width, height] of SIZES) {
    const weston = await startWeston({ width, height, renderer: 'gl' });
    try {
      // weston's first GL frames (shaders compiled under TCG) go to a throwaway client, not to either measurement.
      await refClientDmabuf(weston, width, height, 10);
      const floor = (): Promise<DmabufRun> => withCompositorCpu(weston, () => refClientDmabuf(weston, width, height, FRAMES));
      let detail: DmabufResult['details'][number] | null = null;
      const ours = (): Promise<DmabufRun> => withCompositorCpu(weston, async () => {
        const run = await oursDmabuf(weston, width, height, FRAMES);
        detail ??= run.detail;
        return run.row;
      });
      const runs: DmabufRun[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        for (const client of round % 2 === 0 ? [floor, ours] : [ours, floor]) {
          const run = await client();
          console.log(`dmabuf bench: ${width}x${height} round ${round + 1}/${ROUNDS} ${run.client}: ${run.cpuMsPerFrame.toFixed(3)} ms/frame, ${run.fps.toFixed(1)} fps`);
          runs.push(run);
        }
      }
      for (const client of new Set(runs.map((r) => r.client))) result.rows.push(medianRow(runs.filter((r) => r.client === client)));
      result.details.push(detail!);
    } catch (e) {
      console.error(`dmabuf bench: ${width}x${height} failed; weston log:\n${weston.log().slice(-3000)}`);
      throw e;
    } finally {
      await weston.stop();
    }
  }
  writeFileSync(join('/mnt', RESULT), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`dmabuf bench: done`);
  return result;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function medianRow(runs: DmabufRun[]): DmabufCostRow {
  return { ...runs[0], fps: median(runs.map((r) => r.fps)), cpuMsPerFrame: median(runs.map((r) => r.cpuMsPerFrame)),
    compositorCpuMsPerFrame: median(runs.map((r) => r.compositorCpuMsPerFrame)), cpuMsPerFrameRuns: runs.map((r) => r.cpuMsPerFrame) };
}

/** On the host: the same scenario run in the lab VM. Throws (with the serial log's end) if the VM cannot run it. */
export async function presentCostDmabuf(): Promise<DmabufResult> {
  if (process.env.WLSCANOUT_IN_LAB) return insideLab();
  if (!existsSync(join(root, 'bench/ref/build/ref-client'))) throw new Error('present-cost-dmabuf: bench/ref/build/ref-client is missing (make -C bench/ref)');
  try {
    execFileSync(join(root, 'lab/build-kernel.sh'), { stdio: ['ignore', 'ignore', 'inherit'] }); // ~7 min the first time
  } catch (e) {
    throw new Error(`present-cost-dmabuf: THE LAB KERNEL IS MISSING and could not be built (lab/build-kernel.sh): ${(e as Error).message}`);
  }
  const out = mkdtempSync(join(tmpdir(), 'wlscanout-bench-lab-'));
  const logPath = join(out, 'serial.log');
  const log = createWriteStream(logPath);
  const vm = spawn(join(root, 'lab/boot.sh'), ['--out', out, '--timeout', '600', '--',
    process.execPath, 'dist-bench/bench/run.js', 'present-cost-dmabuf', '--inside-lab'],
  { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  vm.stdout.on('data', (d: Buffer) => {
    log.write(d);
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) if (l.includes('dmabuf bench:')) console.log(`  (lab VM) ${l.slice(l.indexOf('dmabuf bench:') + 14)}`);
  });
  vm.stderr.pipe(log);
  const status = await new Promise<number | null>((resolve) => vm.once('exit', (code) => resolve(code)));
  await new Promise((r) => log.end(r));
  const file = join(out, RESULT);
  if (status !== 0 || !existsSync(file)) {
    const serial = readFileSync(logPath, 'utf8');
    throw new Error(`present-cost-dmabuf: THE LAB VM DID NOT RUN THE SCENARIO (lab/boot.sh exit ${status}; serial log ${logPath}):\n${serial.slice(-4000)}`);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as DmabufResult;
}

export function printDmabuf(result: DmabufResult): void {
  console.log(`\npresent cost, dmabuf path: ${result.compositor}, ${result.frames} frames per run, median of ${result.rounds} runs ` +
    'per client (alternating which goes first), pre-drawn XRGB8888 blob resources');
  console.table(result.rows.map((r) => ({ size: r.size, client: r.client, fps: r.fps.toFixed(1), 'CPU ms/frame': r.cpuMsPerFrame.toFixed(3),
    'runs, CPU ms/frame': r.cpuMsPerFrameRuns.map((v) => v.toFixed(2)).join(' '), 'weston CPU ms/frame': r.compositorCpuMsPerFrame.toFixed(1) })));
  for (const d of result.details) {
    const floor = result.rows.find((r) => r.size === d.size && r.client.startsWith('C floor'))!;
    const ours = result.rows.find((r) => r.size === d.size && r.client.startsWith('wlscanout'))!;
    console.log(`${d.size}: wlscanout CPU per frame = ${(ours.cpuMsPerFrame / floor.cpuMsPerFrame).toFixed(2)}× the C floor, fps ${(ours.fps / floor.fps).toFixed(2)}×; ` +
      `${d.imports} imports, ${d.shmBuffersCreated} wl_shm buffers, explicit sync ${d.explicitSync}`);
  }
}
