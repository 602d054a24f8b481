// Host tier: `wlscanout show --qmp` against a real QEMU 7.2 (-display dbus,p2p=yes, gl=off: no render node on
// this host, so QEMU sends pixels and they are copied once into a memfd surface) and headless weston, with the
// lab kernel and its KMS test-pattern guest: what weston shows must be the guest's known picture, pixel for pixel.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { kmsGuestBootArgs, rgbMismatches, waitForQmp } from './qemu-helpers.js';
import { sleep } from './helpers.js';
import { renderKmsGuestPattern } from '../src/source/kms-guest-pattern.js';
import { labKernel } from './lab-kernel.js';

const cli = path.join(import.meta.dirname, '../dist/cli/main.js');

describe('wlscanout show --qmp (real QEMU, gl=off)', () => {
  let weston: Compositor;
  let qemu: ChildProcess;
  let dir: string;
  const W = 1280;
  const H = 800;
  const FRAMES = 3;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-show-'));
    weston = await startWeston({ width: W, height: H });
    // The lab kernel with the KMS test-pattern guest as init, on virtio-gpu: a known picture, then it idles.
    qemu = spawn('qemu-system-x86_64', ['-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot',
      '-device', 'virtio-gpu-pci', '-display', 'dbus,p2p=yes', '-serial', 'null', '-monitor', 'none',
      '-qmp', `unix:${dir}/show.qmp,server=on,wait=off`,
      ...kmsGuestBootArgs(labKernel(), `wlscanout.frames=${FRAMES} wlscanout.interval_ms=300`)], { stdio: 'ignore' });
  }, 60_000);
  afterAll(async () => {
    qemu?.kill('SIGKILL');
    await weston?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('shows the guest\'s scan-out pixel-exact and exits 3 when QEMU goes away', async () => {
    await waitForQmp(`${dir}/show.qmp`);
    const show = spawn(process.execPath, [cli, 'show', '--qmp', `${dir}/show.qmp`, '--fullscreen', '--display', weston.socket],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...weston.env, WLSCANOUT_LOG_LEVEL: 'warn' } });
    let stderr = '';
    show.stderr!.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((r) => show.once('exit', (code) => r(code)));
    const expected = renderKmsGuestPattern(W, H, FRAMES);
    try {
      let mismatches = -1;
      for (let attempt = 0; attempt < 80 && mismatches !== 0; attempt++) {
        await sleep(250);
        mismatches = rgbMismatches(await weston.capture(), expected);
      }
      expect(mismatches, `pixels differing from the guest's frame ${FRAMES}; show said: ${stderr}`).toBe(0);
      qemu.kill('SIGKILL');
      expect(await exited).toBe(3);
      expect(stderr).toMatch(/QEMU closed the display/);
      expect(stderr).toMatch(/[1-9]\d* scan-outs, [1-9]\d* updates \([1-9]\d* bytes copied\)/);
    } finally {
      show.kill('SIGKILL');
    }
  }, 60_000);

  it('refuses to start without --qmp (exit 2) and fails clearly for a socket nobody serves (exit 1)', async () => {
    const run = (args: string[]) => new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: weston.env });
      let err = '';
      child.stderr!.on('data', (d) => { err += d; });
      child.once('exit', (code) => resolve({ code, err }));
    });
    const usage = await run(['show']);
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/show needs --qmp SOCKET/);
    const missing = await run(['show', '--qmp', `${dir}/nobody.qmp`, '--display', weston.socket]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nobody\.qmp/);
  }, 30_000);
});

describe('wlscanout show --dbus-address (bus mode: QEMU -display dbus on a private dbus-daemon, gl=off)', () => {
  let weston: Compositor;
  let qemu: ChildProcess;
  let bus: ChildProcess;
  let dir: string;
  const W = 1280;
  const H = 800;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-bus-'));
    bus = spawn('dbus-daemon', ['--session', '--nofork', `--address=unix:path=${dir}/bus`, '--print-address'], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise<void>((resolve, reject) => {
      bus.stdout!.once('data', () => resolve());
      bus.once('exit', (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
    });
    weston = await startWeston({ width: W, height: H });
    qemu = spawn('qemu-system-x86_64', ['-name', 'busvm', '-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot',
      '-device', 'virtio-gpu-pci', '-display', `dbus,addr=unix:path=${dir}/bus`, '-serial', 'null', '-monitor', 'none',
      ...kmsGuestBootArgs(labKernel(), 'wlscanout.frames=1 wlscanout.interval_ms=100')], { stdio: 'ignore' });
  }, 60_000);
  afterAll(async () => {
    qemu?.kill('SIGKILL');
    bus?.kill('SIGKILL');
    await weston?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('finds QEMU by its bus name, shows the guest pixel-exact, and exits 3 when QEMU goes away', async () => {
    await sleep(1500); // QEMU takes its name on the bus once it has started
    const show = spawn(process.execPath, [cli, 'show', '--dbus-address', `unix:path=${dir}/bus`, '--fullscreen', '--display', weston.socket],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...weston.env, WLSCANOUT_LOG_LEVEL: 'warn' } });
    let stderr = '';
    show.stderr!.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((r) => show.once('exit', (code) => r(code)));
    try {
      const expected = renderKmsGuestPattern(W, H, 1);
      let mismatches = -1;
      for (let attempt = 0; attempt < 120 && mismatches !== 0 && show.exitCode === null; attempt++) {
        await sleep(250);
        mismatches = rgbMismatches(await weston.capture(), expected);
      }
      expect(mismatches, `pixels differing from the guest's frame 1; show said: ${stderr}`).toBe(0);
      qemu.kill('SIGKILL');
      expect(await exited).toBe(3);
      expect(stderr).toMatch(/QEMU closed the display/);
    } finally {
      show.kill('SIGKILL');
    }
  }, 60_000);

  it('says clearly when nobody owns org.qemu on the bus (exit 1)', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-bus-empty-'));
    const empty = spawn('dbus-daemon', ['--session', '--nofork', `--address=unix:path=${other}/bus`, '--print-address'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      await new Promise<void>((resolve) => empty.stdout!.once('data', () => resolve()));
      const child = spawn(process.execPath, [cli, 'show', '--dbus-address', `unix:path=${other}/bus`, '--display', weston.socket],
        { stdio: ['ignore', 'ignore', 'pipe'], env: weston.env });
      let err = '';
      child.stderr!.on('data', (d) => { err += d; });
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(code).toBe(1);
      expect(err).toMatch(/no QEMU on the bus unix:path=.*: nobody owns org\.qemu/);
    } finally {
      empty.kill('SIGKILL');
      fs.rmSync(other, { recursive: true, force: true });
    }
  }, 30_000);
});
