// `wlscanout show` on headless sway against a real QEMU 7.2 with two graphic consoles (virtio-gpu, max_outputs=2,
// the lab kernel's KMS guest on the first): one window per console, titled with the VM's name and the console's
// label; exit 3 when QEMU goes away; with --wait, the windows say so and come back when QEMU does.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSway, type Compositor } from '../src/embedded/compositors.js';
import { kmsGuestBootArgs, waitForQmp } from './qemu-helpers.js';
import { labKernel } from './lab-kernel.js';
import { sleep } from './helpers.js';
import { QemuVm } from '../src/source/qemu/display.js';

const cli = path.join(import.meta.dirname, '../dist/cli/main.js');
/** Console 1's window: the guest drives only connector 0, so QEMU shows its own "not initialized" surface there,
 *  or nothing and we show the placeholder, depending on when the guest's driver takes over. */
const CONSOLE_1 = /^wlscanout: testvm — virtio-gpu-pci\.1( \((no display output yet|display disabled)\))?$/;

interface SwayNode { name: string | null; app_id?: string | null; nodes?: SwayNode[]; floating_nodes?: SwayNode[] }

/** Titles of the wlscanout windows sway has. */
async function titles(sway: Compositor): Promise<string[]> {
  const tree = JSON.parse(await sway.swaymsg!('-t', 'get_tree')) as SwayNode;
  const out: string[] = [];
  const walk = (n: SwayNode): void => {
    if (n.app_id === 'wlscanout' && n.name) out.push(n.name);
    for (const c of [...(n.nodes ?? []), ...(n.floating_nodes ?? [])]) walk(c);
  };
  walk(tree);
  return out.sort();
}

async function waitForTitles(sway: Compositor, want: (t: string[]) => boolean, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let seen: string[] = [];
  while (Date.now() < deadline) {
    seen = await titles(sway);
    if (want(seen)) return seen;
    await sleep(200);
  }
  throw new Error(`window titles never matched; last seen: ${JSON.stringify(seen)}`);
}

describe('wlscanout show: one window per graphic console (real QEMU, two heads)', () => {
  let sway: Compositor;
  let dir: string;
  const qemus: ChildProcess[] = [];
  const startQemu = (qmp: string): ChildProcess => {
    const qemu = spawn('qemu-system-x86_64', ['-name', 'testvm', '-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none',
      '-no-reboot', '-device', 'virtio-gpu-pci,max_outputs=2', '-display', 'dbus,p2p=yes', '-serial', 'null', '-monitor', 'none',
      '-qmp', `unix:${qmp},server=on,wait=off`, ...kmsGuestBootArgs(labKernel(), 'wlscanout.frames=1 wlscanout.interval_ms=100')],
    { stdio: 'ignore' });
    qemus.push(qemu);
    return qemu;
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-heads-'));
    sway = await startSway({ width: 1280, height: 800 });
  }, 30_000);
  afterAll(async () => {
    for (const q of qemus) q.kill('SIGKILL');
    await sway?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const show = (args: string[]) => {
    const child = spawn(process.execPath, [cli, 'show', ...args, '--display', sway.socket],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...sway.env, WLSCANOUT_LOG_LEVEL: 'warn' } });
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { child, exited, stderr: () => stderr };
  };

  it('opens a window per console, titled "VM — label", and exits 3 when QEMU goes away', async () => {
    const qmp = `${dir}/a.qmp`;
    const qemu = startQemu(qmp);
    await waitForQmp(qmp);
    const s = show(['--qmp', qmp]);
    try {
      const seen = await waitForTitles(sway, (t) => t.length === 2 && t[0] === 'wlscanout: testvm — virtio-gpu-pci.0' &&
        CONSOLE_1.test(t[1]), 60_000);
      expect(seen[1]).toMatch(CONSOLE_1);
      qemu.kill('SIGKILL');
      expect(await s.exited, s.stderr()).toBe(3);
      expect(s.stderr()).toMatch(/^QEMU closed the display: .*frames shown.*; .*frames shown/m);
    } finally {
      s.child.kill('SIGKILL');
    }
  }, 60_000);

  it('--console N shows only that console; --wait keeps the windows and re-attaches when QEMU is back', async () => {
    const qmp = `${dir}/b.qmp`;
    let qemu = startQemu(qmp);
    await waitForQmp(qmp);
    const s = show(['--qmp', qmp, '--console', '1', '--wait']);
    try {
      expect(await waitForTitles(sway, (t) => t.length === 1 && CONSOLE_1.test(t[0]), 20_000)).toHaveLength(1);
      qemu.kill('SIGKILL');
      expect(await waitForTitles(sway, (t) => t[0]?.endsWith('(disconnected, waiting for QEMU)'), 10_000))
        .toEqual(['wlscanout: testvm — virtio-gpu-pci.1 (disconnected, waiting for QEMU)']);
      fs.rmSync(qmp, { force: true });
      qemu = startQemu(qmp);
      await waitForQmp(qmp);
      expect(await waitForTitles(sway, (t) => t[0]?.startsWith('wlscanout: testvm — virtio-gpu-pci.1') && !t[0].includes('disconnected'), 15_000))
        .toHaveLength(1);
      expect(s.child.exitCode).toBeNull();
      s.child.kill('SIGINT');
      expect(await s.exited).toBe(0);
      expect(s.stderr()).toMatch(/waiting for QEMU to come back \(--wait\)/);
      expect(s.stderr()).toMatch(/interrupted/);
    } finally {
      s.child.kill('SIGKILL');
      qemu.kill('SIGKILL');
    }
  }, 90_000);

  it('the library attaches to several QEMUs in one process, each console with its own frames', async () => {
    const paths = [`${dir}/c.qmp`, `${dir}/d.qmp`];
    const vms = paths.map((p) => startQemu(p));
    try {
      for (const p of paths) await waitForQmp(p);
      const attached = await Promise.all(paths.map((qmpPath) => QemuVm.attach({ qmpPath })));
      const consoles = await Promise.all(attached.map((vm) => vm.openConsole(0)));
      const sizes = await Promise.all(consoles.map((c) => new Promise<string>((resolve) => c.once('scanout', (e) => resolve(`${e.width}x${e.height}`)))));
      expect(sizes).toHaveLength(2);
      expect(attached.map((vm) => vm.vm.name)).toEqual(['testvm', 'testvm']);
      consoles.forEach((c) => c.close());
      attached.forEach((vm) => vm.close());
      expect(attached.every((vm) => vm.closed)).toBe(true);
    } finally {
      vms.forEach((q) => q.kill('SIGKILL'));
    }
  }, 60_000);
});
