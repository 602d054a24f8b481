// Lab tier, end to end with real QEMU and zero copy: Debian's QEMU 7.2 runs inside the lab VM with virtio-gpu
// blob resources on a memfd memory backend and -display dbus,gl=on on the vgem render node. Its guest (the lab
// kernel with the KMS test-pattern guest as init) scans out a dumb buffer, which is a blob resource; QEMU hands
// it over as a udmabuf (ScanoutDMABUF) and `wlscanout show --qmp` gives it to weston --use-gl as a linux-dmabuf
// buffer. Weston's screenshot must be the guest's picture, pixel for pixel.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../../src/embedded/compositors.js';
import { kmsGuestBootArgs, rgbMismatches, waitForQmp } from '../../test/qemu-helpers.js';
import { renderKmsGuestPattern } from '../../src/source/kms-guest-pattern.js';
import { decodePng } from '../../src/capture/png.js';

const root = path.join(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/cli/main.js');
const W = 1280;
const H = 800;
const FRAMES = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('real QEMU: virtio-gpu blob scan-out → udmabuf → linux-dmabuf, zero copy', () => {
  let weston: Compositor;
  let qemu: ChildProcess;
  const dir = fs.mkdtempSync('/tmp/wlscanout-qemu-');
  const qmp = `${dir}/qmp.sock`;
  const qmp2 = `${dir}/qmp2.sock`; // a second client: `screenshot` beside `show`

  beforeAll(async () => {
    const kernel = process.env.WLSCANOUT_LAB_KERNEL;
    if (!kernel || !fs.existsSync(kernel)) throw new Error(`WLSCANOUT_LAB_KERNEL (${kernel}) is not the lab kernel: run this through lab/boot.sh`);
    weston = await startWeston({ width: W, height: H, renderer: 'gl' });
    qemu = spawn('qemu-system-x86_64', ['-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot',
      '-object', 'memory-backend-memfd,id=mem,size=256M,share=on', '-machine', 'memory-backend=mem',
      '-device', 'virtio-gpu-pci,blob=true', '-display', 'dbus,p2p=yes,gl=on,rendernode=/dev/dri/renderD128',
      '-qmp', `unix:${qmp},server=on,wait=off`, '-qmp', `unix:${qmp2},server=on,wait=off`, '-serial', `file:${dir}/guest.log`, '-monitor', 'none',
      ...kmsGuestBootArgs(kernel, `wlscanout.frames=${FRAMES} wlscanout.interval_ms=300`)],
    { stdio: ['ignore', 'ignore', fs.openSync(`${dir}/qemu.log`, 'w')], env: { ...process.env, LIBGL_ALWAYS_SOFTWARE: '1' } });
    await waitForQmp(qmp, 30_000, () => qemu.exitCode === null).catch((e: Error) => {
      throw new Error(`QEMU did not start (${e.message}): ${fs.readFileSync(`${dir}/qemu.log`, 'utf8')}`);
    });
  });
  afterAll(async () => {
    qemu?.kill('SIGKILL'); // never let the guest reboot: QEMU 7.2 aborts on that under gl=on
    await weston?.stop();
  });

  it('shows the guest\'s scan-out pixel-exact from QEMU\'s udmabuf, answering every UpdateDMABUF', async () => {
    const show = spawn(process.execPath, [cli, 'show', '--qmp', qmp, '--fullscreen', '--display', weston.socket],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...weston.env, WLSCANOUT_LOG_LEVEL: 'info' } });
    let stderr = '';
    show.stderr!.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((r) => show.once('exit', (code) => r(code)));
    try {
      const expected = renderKmsGuestPattern(W, H, FRAMES);
      let mismatches = -1;
      const deadline = Date.now() + 150_000; // nested TCG: the inner guest needs ~60 s to its first frame
      while (mismatches !== 0 && Date.now() < deadline && show.exitCode === null) {
        await sleep(2000);
        if (!/"dmabuf imported"|blob resource path/.test(stderr)) continue;
        mismatches = rgbMismatches(await weston.capture(), expected);
      }
      const guestLog = fs.readFileSync(`${dir}/guest.log`, 'utf8');
      expect(mismatches, `pixels differing from the guest's frame ${FRAMES}; guest: ${guestLog.slice(-500)}; show: ${stderr.slice(-3000)}`).toBe(0);
      expect(stderr).toMatch(/"path":"dmabuf"/);
      // The capture path from the same dmabuf (a second D-Bus client of the same console): mapped, synced, copied.
      const shot = await new Promise<{ code: number | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, [cli, 'screenshot', '--qmp', qmp2, '--timeout', '60', '-o', `${dir}/shot.png`],
          { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr!.on('data', (d) => { err += d; });
        child.once('exit', (code) => resolve({ code, err }));
      });
      expect(shot.code, shot.err).toBe(0);
      const png = decodePng(fs.readFileSync(`${dir}/shot.png`));
      expect(rgbMismatches(png, expected), 'screenshot --qmp of the dmabuf scan-out').toBe(0);
      qemu.kill('SIGKILL');
      expect(await exited).toBe(3); // QEMU went away
      const summary = /QEMU closed the display.*/.exec(stderr)?.[0] ?? stderr.slice(-1000);
      expect(summary).toMatch(/[1-9]\d* dmabuf scan-outs, [1-9]\d* dmabuf updates, 0 scan-outs, 0 updates \(0 bytes copied\)/);
      expect(summary).toMatch(/[1-9]\d* dmabuf imports/);
      // Every UpdateDMABUF is answered when its frame is committed, or by the listener's safety reply before
      // QEMU's one-second budget runs out (while weston imports a new dmabuf, seconds under nested TCG):
      // QEMU itself must never report a missing answer.
      const late = stderr.match(/UpdateDMABUF not done within/g)?.length ?? 0;
      const updates = Number(/(\d+) dmabuf updates/.exec(summary)?.[1]);
      console.log(`${updates} UpdateDMABUF, ${late} answered by the safety reply`);
      const qemuLog = fs.readFileSync(`${dir}/qemu.log`, 'utf8');
      expect(qemuLog).not.toMatch(/Failed to call update|gl-unblock/);
    } finally {
      show.kill('SIGKILL');
    }
  }, 240_000);
});
