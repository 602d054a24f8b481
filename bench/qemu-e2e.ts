// qemu-e2e: the same QEMU 7.2 guest workload shown by QEMU's GTK UI and by -display dbus + `wlscanout show`.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSway } from '../src/embedded/compositors.js';
import { kmsGuestBootArgs } from '../test/qemu-helpers.js';
import { countOutputFrames } from './output-frames.js';
import { cpuTicks, minorFaults } from './proc.js';

const root = join(import.meta.dirname, '../..');

export interface E2eRow {
  display: string; guestFps: number; qemuMainPct: number;
  /** All of the viewer's threads (V8's GC helpers and libuv's pool included), and its main thread alone. */
  wlscanoutPct: number | null; wlscanoutMainPct: number | null;
  /** The viewer's minor page faults per guest frame: fresh receive buffers show up here. */
  wlscanoutFaultsPerFrame: number | null;
  compositorPct: number;
  /** New frames on sway's output per second (wlr-screencopy with damage), counted after the CPU window. */
  shownFps: number;
}

/** The lab kernel + KMS guest redrawing a full 1280x800 frame per DIRTYFB at a 60 fps target, shown by QEMU's GTK
 *  UI or by -display dbus + `wlscanout show`, both under the same headless sway at 60 Hz. */
export async function qemuEndToEnd(): Promise<E2eRow[]> {
  const SHOWN_SECONDS = 5;
  const seconds = Number(process.env.WLSCANOUT_BENCH_SECONDS ?? 20);
  const kernel = execFileSync(join(root, 'lab/build-kernel.sh'), { encoding: 'utf8' }).trim();
  const rows: E2eRow[] = [];
  const TICK = 100; // USER_HZ
  const modes = (process.env.WLSCANOUT_BENCH_E2E_MODES ?? 'gtk,dbus').split(',') as ('gtk' | 'dbus')[];
  for (const mode of modes) {
    const sway = await startSway({ width: 1280, height: 800, refreshHz: 60 });
    const qmp = join(tmpdir(), `wlscanout-bench-${process.pid}.qmp`);
    const display = mode === 'gtk' ? ['-display', 'gtk,gl=off'] : ['-display', 'dbus,p2p=yes', '-qmp', `unix:${qmp},server=on,wait=off`];
    const qemu = spawn('qemu-system-x86_64', ['-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot',
      '-device', 'virtio-gpu-pci', ...display, '-serial', 'stdio', '-monitor', 'none',
      ...kmsGuestBootArgs(kernel, 'wlscanout.full=1 wlscanout.interval_ms=16')],
    { env: { ...sway.env, GDK_BACKEND: 'wayland' }, stdio: ['ignore', 'pipe', 'ignore'] });
    let frames = 0;
    let serial = '';
    qemu.stdout!.on('data', (d: Buffer) => {
      serial += d.toString('latin1');
      const lines = serial.split('\n');
      serial = lines.pop()!;
      frames += lines.filter((l) => l.includes('kms-guest: frame')).length;
    });
    let show: ReturnType<typeof spawn> | null = null;
    try {
      if (mode === 'dbus') {
        for (let i = 0; i < 200 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 25));
        await new Promise((r) => setTimeout(r, 200));
        show = spawn(process.execPath, [join(root, 'dist/cli/main.js'), 'show', '--qmp', qmp, '--fullscreen', '--display', sway.socket],
          { env: sway.env, stdio: 'ignore' });
      }
      const warm = Date.now() + 60_000;
      while (frames < 30 && Date.now() < warm) await new Promise((r) => setTimeout(r, 100));
      if (frames < 30) throw new Error(`${mode}: the guest showed ${frames} frames within 60 s`);
      const f0 = frames;
      const q0 = cpuTicks(qemu.pid!, qemu.pid!);
      const s0 = show ? cpuTicks(show.pid!) : 0;
      const sm0 = show ? cpuTicks(show.pid!, show.pid!) : 0;
      const sf0 = show ? minorFaults(show.pid!) : 0;
      const c0 = cpuTicks(sway.pid);
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const elapsed = (Date.now() - t0) / 1000;
      const pct = (ticks: number) => (ticks / TICK / elapsed) * 100;
      rows.push({ display: mode === 'gtk' ? "QEMU's GTK UI (gl=off)" : '-display dbus + wlscanout show',
        guestFps: (frames - f0) / elapsed, qemuMainPct: pct(cpuTicks(qemu.pid!, qemu.pid!) - q0),
        wlscanoutPct: show ? pct(cpuTicks(show.pid!) - s0) : null, wlscanoutMainPct: show ? pct(cpuTicks(show.pid!, show.pid!) - sm0) : null,
        wlscanoutFaultsPerFrame: show ? (minorFaults(show.pid!) - sf0) / Math.max(1, frames - f0) : null,
        compositorPct: pct(cpuTicks(sway.pid) - c0), shownFps: (await countOutputFrames(sway.socket, SHOWN_SECONDS)) / SHOWN_SECONDS });
    } finally {
      show?.kill('SIGKILL');
      qemu.kill('SIGKILL');
      await sway.stop();
    }
  }
  return rows;
}
