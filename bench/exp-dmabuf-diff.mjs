// Experiment (lab VM only): weston's CPU per frame for ref-client dmabuf variants (one difference from wlscanout
// added at a time) and for wlscanout's presenter with differences removed. Run inside the lab:
//   lab/boot.sh --out DIR --timeout 600 -- node bench/exp-dmabuf-diff.mjs 1920x1080 100 2 [variant...]
// Variants: ref:<flags,comma-separated or 'base'>, ours:<removals: noviewport,linear,nopresentation or 'base'>.
import { execFile } from 'node:child_process';
import { readFileSync, appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startWeston } from '../dist-bench/src/embedded/compositors.js';
import { Presenter } from '../dist-bench/src/present/presenter.js';
import { DmabufFormats } from '../dist-bench/src/present/dmabuf-formats.js';
import { BlobGuest } from '../dist-bench/src/source/blob-guest.js';
import { formatByName } from '../dist-bench/src/formats.js';
import { waitFence } from '../dist-bench/src/sync/fence.js';
import { close } from '../dist-bench/src/native/fds.js';

const root = join(import.meta.dirname, '..');
const [size = '1920x1080', framesArg = '100', repeatsArg = '2', ...variantArgs] = process.argv.slice(2);
const [width, height] = size.split('x').map(Number);
const FRAMES = Number(framesArg), REPEATS = Number(repeatsArg), WARMUP = 10;
const variants = variantArgs.length ? variantArgs : ['ref:base', 'ours:base', 'ref:viewport', 'ref:create', 'ref:presentation',
  'ref:invalid', 'ref:feedback', 'ref:geometry', 'ref:decoration', 'ref:viewport,create,presentation,invalid,feedback,geometry,decoration',
  'ours:noviewport', 'ours:linear', 'ours:nopresentation'];
const out = (line) => { console.log(`EXP ${line}`); try { appendFileSync('/mnt/exp.txt', `${line}\n`); } catch { /* no /mnt */ } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const threads = (pid) => Object.fromEntries(readdirSync(`/proc/${pid}/task`).map((t) => {
  const f = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return [`${t}:${f.slice(f.indexOf('(') + 1, f.lastIndexOf(')'))}`, [Number(x[11]) * 10, Number(x[12]) * 10]];
}));
const minflt = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8'); return Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[7]); };
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(x[11]) + Number(x[12])) * 10;
};

function ref(weston, frames, flags) {
  return new Promise((resolve, reject) => {
    execFile(join(root, 'bench/ref/build/ref-client'), [String(width), String(height), String(frames), 'dmabuf', String(WARMUP), ...flags],
      { env: weston.env, timeout: 300_000 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`${err.message}\n${stderr}`));
        const r = JSON.parse(stdout);
        resolve({ fps: r.frames / r.seconds });
      });
  });
}

async function ours(weston, frames, removals) {
  const XRGB = formatByName('XRGB8888');
  const restore = DmabufFormats.prototype.wireModifier;
  if (removals.includes('linear')) {
    DmabufFormats.prototype.wireModifier = function (fourcc, modifier) { return this.modifiers.has(fourcc) ? modifier : null; };
  }
  const guest = new BlobGuest({ width, height, format: XRGB, buffers: 3 });
  const presenter = await Presenter.open({ display: weston.socket, title: 'bench', fullscreen: true });
  try {
    if (removals.includes('noviewport') && presenter.window.viewport) { presenter.window.viewport.destroy(); presenter.window.viewport = null; }
    if (removals.includes('nopresentation')) presenter.globals.presentation = null;
    const dests = [];
    const vp = presenter.window.viewport;
    if (vp) { const orig = vp.setDestination.bind(vp); vp.setDestination = (w, h) => { dests.push(`${w}x${h}`); orig(w, h); }; }
    const geo = [];
    const xs = presenter.window.xdgSurface;
    { const orig = xs.setWindowGeometry.bind(xs); xs.setWindowGeometry = (...a) => { geo.push(a.join(',')); orig(...a); }; }
    for (let i = 0; i < 3; i++) guest.ram.drawNext().release();
    while (!presenter.window.configured) await sleep(5);
    guest.gpu.on('frame', (frame) => presenter.present(frame));
    const ids = [...guest.resourceIds.values()];
    const busy = new Set();
    let next = 0, wanted = false;
    const flush = () => {
      const id = [0, 1, 2].map((k) => ids[(next + k) % 3]).find((r) => !busy.has(r));
      wanted = id === undefined;
      if (id === undefined) return;
      busy.add(id);
      next = ids.indexOf(id) + 1;
      guest.gpu.setScanoutBlob(0, id);
      const free = () => { busy.delete(id); if (wanted) flush(); };
      void guest.gpu.resourceFlush(id).then(({ releaseFence }) => {
        if (releaseFence === null) return free();
        void waitFence(releaseFence, 5000).result.then(() => { close(releaseFence); free(); });
      });
    };
    let shown = 0, start = 0n;
    await new Promise((resolve, reject) => {
      presenter.on('error', reject);
      presenter.on('frame-done', () => {
        shown++;
        if (shown === WARMUP) start = process.hrtime.bigint();
        if (shown >= WARMUP + frames) resolve(); else flush();
      });
      flush();
    });
    return { fps: frames / (Number(process.hrtime.bigint() - start) / 1e9), mods: `${presenter.globals.dmabufFormats.describe().filter((d) => d.startsWith('XR24')).join(' ')} dest ${dests.join(' ')} geometry ${geo.join(' ')} configured ${JSON.stringify(presenter.window.configuredSize)} v${presenter.globals.linuxDmabuf.version}` };
  } finally {
    presenter.close();
    guest.close();
    DmabufFormats.prototype.wireModifier = restore;
  }
}

out(`size ${size} frames ${FRAMES} repeats ${REPEATS}`);
for (let rep = 0; rep < REPEATS; rep++) {
  const weston = await startWeston({ width, height, renderer: 'gl' });
  try {
    await ref(weston, 10, []); // shader compilation
    for (const [n, v] of variants.entries()) {
      const [who, what] = v.split(':');
      const opts = what === 'base' ? [] : what.split(',');
      const c0 = cpuMs(weston.pid); const t0 = threads(weston.pid); const f0 = minflt(weston.pid);
      const dump = sleep(1500).then(() => new Promise((resolve) => execFile('timeout', ['25', 'weston-debug', 'scene-graph'],
        { env: weston.env }, (err, stdout) => resolve(stdout))));
      const r = who === 'ref' ? await ref(weston, FRAMES, opts) : await ours(weston, FRAMES, opts);
      const graph = await dump;
      appendFileSync('/mnt/graphs.txt', `===== rep ${rep} #${n} ${v}\n${graph}\n`);
      const westonMs = (cpuMs(weston.pid) - c0) / (FRAMES + WARMUP);
      const t1 = threads(weston.pid);
      const per = Object.entries(t1).map(([k, [u, s]]) => [k, u - (t0[k]?.[0] ?? 0), s - (t0[k]?.[1] ?? 0)]).filter(([, u, s]) => u + s > 0)
        .map(([k, u, s]) => `${k} u${u} s${s}`).join('; ');
      out(`   threads (ms over the run): ${per}; minor faults/frame ${((minflt(weston.pid) - f0) / (FRAMES + WARMUP)).toFixed(0)}`);
      out(`rep ${rep} #${n} ${v.padEnd(40)} weston ${westonMs.toFixed(1).padStart(6)} ms/frame  fps ${r.fps.toFixed(1)} ${r.mods ?? ''}`);
    }
  } catch (e) {
    out(`rep ${rep} failed: ${e.message}\n${weston.log().slice(-2000)}`);
  } finally {
    await weston.stop();
  }
}
out('done');
process.exit(0);
