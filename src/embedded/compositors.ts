// Headless Wayland compositors (weston, sway) that `wlscanout demo` and the tests start on private sockets.
// Each compositor runs in its own process group with a private runtime dir;
// stop() (or process exit) kills the whole group and removes the temp dirs.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePng, type RgbaImage } from '../capture/png.js';
import { captureOutput } from '../capture/output-capture.js';
import { Connection } from '../wayland/connection.js';
import { bindGlobals } from '../present/globals.js';

export type { RgbaImage } from '../capture/png.js';
const readPng = (source: string | Buffer): RgbaImage => decodePng(typeof source === 'string' ? readFileSync(source) : source);

export interface Compositor {
  kind: 'weston' | 'sway';
  /** Absolute socket path, usable as WAYLAND_DISPLAY. */
  socket: string;
  /** The compositor's XDG_RUNTIME_DIR. */
  runtimeDir: string;
  /** Environment for clients (WAYLAND_DISPLAY, XDG_RUNTIME_DIR, SWAYSOCK for sway). */
  env: NodeJS.ProcessEnv;
  width: number;
  height: number;
  pid: number;
  capture(): Promise<RgbaImage>;
  swaymsg?(...args: string[]): Promise<string>;
  /** Signal the compositor's process group. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after a timeout, then remove temp dirs. Idempotent. */
  stop(): Promise<void>;
  /** Exit code, or null when killed by a signal / failed to spawn. */
  exited: Promise<number | null>;
  /** Compositor stdout+stderr so far. */
  log(): string;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const UNPRIVILEGED = 65534; // nobody/nogroup, for sway when we are root
const LOG_CAP = 256 * 1024;

// Nothing may outlive the test process: compositors get PR_SET_PDEATHSIG=SIGKILL (via
// setpriv), and exit/SIGTERM/SIGINT/SIGHUP kill every live group and remove temp dirs.
// (vitest stops its fork workers with SIGTERM, so 'exit' alone is not enough.)
const live = new Map<number, string>(); // pgid -> temp base dir
function killAll(): void {
  for (const [pgid, base] of live) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
    try { rmSync(base, { recursive: true, force: true }); } catch { /* best effort */ }
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killAll();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig); // default action
  });
}
// Sweep temp dirs left by test processes that died by SIGKILL.
for (const d of readdirSync(tmpdir())) {
  const m = /^wlscanout-(?:weston|sway)-(\d+)-/.exec(d);
  if (m && !pidAlive(Number(m[1]))) rmSync(join(tmpdir(), d), { recursive: true, force: true });
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Live (non-zombie) pids in process group pgid, from /proc. Zombies are dead but may
 *  linger when PID 1 does not reap orphans (as in some containers). */
export function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') pids.push(Number(d));
    } catch { /* exited meanwhile */ }
  }
  return pids;
}

/** Run a program, resolve stdout; reject with stderr on failure. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: opts.env, cwd: opts.cwd, timeout: opts.timeoutMs ?? 10_000, encoding: 'buffer', maxBuffer: 256 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.toString()}`));
        else resolve(stdout);
      });
  });
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

interface Layout { base: string; runtimeDir: string; home: string; clientDir: string }

/** base (0711) / run (0700, owned by uid) + home (owned by uid) + client (0700, ours). */
function makeDirs(kind: string, uid?: number): Layout {
  const base = mkdtempSync(join(tmpdir(), `wlscanout-${kind}-${process.pid}-`));
  const mk = (name: string, mode: number, owner?: number) => {
    const p = join(base, name);
    mkdirSync(p, { mode });
    if (owner !== undefined) chownSync(p, owner, owner);
    return p;
  };
  const l = { base, runtimeDir: mk('run', 0o700, uid), home: mk('home', 0o755, uid), clientDir: mk('client', 0o700) };
  // mkdtemp makes 0700; an unprivileged compositor must be able to traverse base.
  if (uid !== undefined) chmodSync(base, 0o711);
  return l;
}

interface Launched {
  child: ChildProcess;
  exited: Promise<number | null>;
  log(): string;
  kill(signal?: NodeJS.Signals): void;
  stop(): Promise<void>;
}

function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv, base: string): Launched {
  let log = '';
  const append = (d: Buffer | string) => { log += d.toString(); if (log.length > LOG_CAP) log = log.slice(-LOG_CAP); };
  const child = spawn(cmd, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const pid = child.pid;
  if (pid !== undefined) live.set(pid, base);
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (e) => { append(`\n[harness] spawn error: ${e.message}\n`); resolve(null); });
    child.once('exit', (code) => resolve(code));
  });
  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    if (pid === undefined) return;
    try { process.kill(-pid, signal); } catch { /* already gone */ }
  };
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    kill('SIGTERM');
    const t = await Promise.race([exited.then(() => 'exited'), sleep(STOP_TIMEOUT_MS).then(() => 'timeout')]);
    if (t === 'timeout') append('\n[harness] SIGTERM timed out, sending SIGKILL\n');
    kill('SIGKILL'); // also reaps stray group members (swaybg, clients spawned by the shell)
    await exited;
    for (let i = 0; pid !== undefined && i < 40 && groupMembers(pid).length; i++) await sleep(25);
    if (pid !== undefined) live.delete(pid);
    rmSync(base, { recursive: true, force: true });
  })());
  return { child, exited, log: () => log, kill, stop };
}

/** Poll until probe() succeeds; fail early if the compositor exits, or after 15 s. */
async function waitReady(name: string, l: Launched, probe: () => Promise<boolean>): Promise<void> {
  let dead = false;
  void l.exited.then(() => { dead = true; });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!dead) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      await l.stop();
      throw new Error(`${name} not ready after ${READY_TIMEOUT_MS} ms. Log:\n${l.log()}`);
    }
    await sleep(50);
  }
  const code = await l.exited;
  await l.stop();
  throw new Error(`${name} exited early (code ${code}). Log:\n${l.log()}`);
}

function baseEnv(l: Layout): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: l.home, XDG_RUNTIME_DIR: l.runtimeDir, LANG: 'C.UTF-8' };
}

function finish(kind: Compositor['kind'], l: Launched, lay: Layout, socket: string, width: number, height: number,
  capture: (env: NodeJS.ProcessEnv) => Promise<RgbaImage>, extraEnv: NodeJS.ProcessEnv = {}): Compositor {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: lay.clientDir, WAYLAND_DISPLAY: socket, ...extraEnv };
  delete env.DISPLAY;
  return {
    kind, socket, runtimeDir: lay.runtimeDir, env, width, height, pid: l.child.pid!,
    capture: () => capture(env), kill: l.kill, stop: l.stop, exited: l.exited, log: l.log,
  };
}

export interface WestonOptions {
  width?: number;
  height?: number;
  shell?: 'desktop' | 'kiosk';
  /** 'pixman' (default, no GPU needed) or 'gl' (Mesa; imports dmabufs, e.g. kms_swrast on vgem in the lab). */
  renderer?: 'pixman' | 'gl';
  /** Extra environment for weston (e.g. Mesa debug variables). */
  env?: NodeJS.ProcessEnv;
}

export async function startWeston(opts: WestonOptions = {}): Promise<Compositor> {
  const width = opts.width ?? 1024, height = opts.height ?? 768;
  const lay = makeDirs('weston');
  const socketName = 'wayland-0';
  const socket = join(lay.runtimeDir, socketName);
  // No animations and no panel: what a client commits is on screen at the next repaint, edge to edge.
  const config = join(lay.home, 'weston.ini');
  writeFileSync(config, ['[core]', 'idle-time=0', '[shell]', 'animation=none', 'close-animation=none',
    'startup-animation=none', 'focus-animation=none', 'panel-position=none', 'background-color=0xff000000', ''].join('\n'));
  const args = [
    // weston 10 headless renders nothing without a renderer option
    '--backend=headless-backend.so', opts.renderer === 'gl' ? '--use-gl' : '--use-pixman',
    `--socket=${socketName}`, `--width=${width}`, `--height=${height}`,
    '--idle-time=0', `--config=${config}`, '--debug', // --debug exposes weston_screenshooter
    `--shell=${opts.shell === 'kiosk' ? 'kiosk-shell.so' : 'desktop-shell.so'}`,
  ];
  const env = { ...baseEnv(lay), ...(opts.renderer === 'gl' ? { LIBGL_ALWAYS_SOFTWARE: '1' } : {}), ...opts.env };
  const l = launch('setpriv', ['--pdeathsig=KILL', 'weston', ...args], env, lay.base);
  await waitReady('weston', l, async () => existsSync(socket) && canConnect(socket));
  // weston_screenshooter through our own client: the weston-screenshooter tool writes the output through cairo
  // as premultiplied ARGB, so where a client's XRGB buffer has X = 0 (QEMU's x8r8g8b8 surfaces) it saves black.
  return finish('weston', l, lay, socket, width, height, async () => {
    const connection = new Connection(socket);
    try {
      return await captureOutput(connection, await bindGlobals(connection));
    } finally {
      connection.close();
    }
  });
}

export async function startSway(opts: { width?: number; height?: number; refreshHz?: number } = {}): Promise<Compositor> {
  const width = opts.width ?? 1024, height = opts.height ?? 768, hz = opts.refreshHz ?? 60;
  const root = process.getuid?.() === 0;
  const lay = makeDirs('sway', root ? UNPRIVILEGED : undefined);
  const config = join(lay.home, 'config');
  writeFileSync(config, [
    `output HEADLESS-1 mode ${width}x${height}@${hz}Hz`,
    'swaybg_command -', // no swaybg: it would outlive sway, and background stays black anyway
    'swaynag_command -',
    'default_border none',
    'default_floating_border none',
    'focus_follows_mouse no',
    'xwayland disable',
    '',
  ].join('\n'), { mode: 0o644 });
  const swaysock = join(lay.runtimeDir, 'sway-ipc.sock');
  const env = {
    ...baseEnv(lay), SWAYSOCK: swaysock,
    WLR_BACKENDS: 'headless', WLR_RENDERER: 'pixman', WLR_LIBINPUT_NO_DEVICES: '1',
  };
  const drop = root ? [`--reuid=${UNPRIVILEGED}`, `--regid=${UNPRIVILEGED}`, '--clear-groups'] : [];
  const l = launch('setpriv', ['--pdeathsig=KILL', ...drop, 'sway', '-c', config], env, lay.base);
  let socket = '';
  const swaymsg = async (...a: string[]) =>
    (await run('swaymsg', ['-s', swaysock, ...a], { env: { ...process.env, SWAYSOCK: swaysock } })).toString();
  await waitReady('sway', l, async () => {
    // sway picks its own wayland-N name; take the first socket that appears.
    const name = readdirSync(lay.runtimeDir).find((f) => /^wayland-\d+$/.test(f));
    if (!name || !existsSync(swaysock)) return false;
    socket = join(lay.runtimeDir, name);
    return (await canConnect(socket)) && (await swaymsg('-t', 'get_version').then(() => true, () => false));
  });
  const c = finish('sway', l, lay, socket, width, height,
    async (cenv) => readPng(await run('grim', ['-t', 'png', '-'], { env: cenv })), { SWAYSOCK: swaysock });
  c.swaymsg = swaymsg;
  return c;
}
