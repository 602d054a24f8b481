// `wlscanout show` of a real QEMU 7.2 `-vga std` guest with no disk: SeaBIOS's text screen (after the switch from
// 640x480 to the 720x400 text mode, which QEMU 7.2 announces with Updates only, no new Scanout) shown fullscreen
// on a sway output of the same size must be pixel-identical to QEMU's own screendump.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSway, type Compositor } from '../src/embedded/compositors.js';
import { rgbMismatches, waitForQmp } from './qemu-helpers.js';
import { readPpm } from './ppm.js';
import { sleep } from './helpers.js';

const cli = path.join(import.meta.dirname, '../dist/cli/main.js');

describe('wlscanout show: SeaBIOS text mode (-vga std, real QEMU) pixel-identical to QEMU\'s screendump', () => {
  let sway: Compositor;
  let qemu: ChildProcess;
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-vga-'));
    sway = await startSway({ width: 720, height: 400 });
    // -S: paused until the test says `cont`, so the mode switch happens while wlscanout is attached.
    qemu = spawn('qemu-system-x86_64', ['-S', '-m', '64', '-vga', 'std', '-net', 'none',
      '-display', 'dbus,p2p=yes', '-serial', 'null', '-monitor', 'none',
      '-qmp', `unix:${dir}/a.qmp,server=on,wait=off`, '-qmp', `unix:${dir}/b.qmp,server=on,wait=off`], { stdio: 'ignore' });
    await waitForQmp(`${dir}/a.qmp`);
    await waitForQmp(`${dir}/b.qmp`);
  }, 30_000);
  afterAll(async () => {
    qemu?.kill('SIGKILL');
    await sway?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function qmp(command: object): Promise<void> {
    const socket = connect(`${dir}/b.qmp`);
    let data = '';
    socket.on('data', (d) => { data += d; });
    const until = async (re: RegExp): Promise<void> => { while (!re.test(data)) await sleep(10); };
    await until(/"QMP"/);
    socket.write('{"execute":"qmp_capabilities"}\n');
    await until(/"return"/);
    data = '';
    socket.write(JSON.stringify(command) + '\n');
    await until(/"return"|"error"/);
    socket.destroy();
  }

  async function screendump(): Promise<{ width: number; height: number; pixels: Uint32Array }> {
    await qmp({ execute: 'screendump', arguments: { filename: `${dir}/dump.ppm` } });
    return readPpm(`${dir}/dump.ppm`);
  }

  it('follows the 640x480 → 720x400 switch and shows every pixel as QEMU has it', async () => {
    const show = spawn(process.execPath, [cli, 'show', '--qmp', `${dir}/a.qmp`, '--fullscreen', '--display', sway.socket],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...sway.env, WLSCANOUT_LOG_LEVEL: 'warn' } });
    let stderr = '';
    show.stderr!.on('data', (d) => { stderr += d; });
    try {
      const before = await screendump();
      expect(`${before.width}x${before.height}`).toBe('640x480');
      await sleep(1500); // attached, showing the 640x480 surface
      // QEMU sends the paused guest's surface once, right at registration: missing it would leave the window on
      // the placeholder, titled so.
      const tree = await sway.swaymsg!('-t', 'get_tree');
      expect(tree).toMatch(/"name": "wlscanout: [^"]* — VGA"/); // no "(no display output yet)" suffix
      await qmp({ execute: 'cont' });
      // SeaBIOS ends on its "No bootable device" text screen; its cursor blinks, so compare the two captures
      // taken back to back, several times, until one pair agrees.
      let best = Infinity;
      let size = '';
      for (let attempt = 0; attempt < 60 && best !== 0; attempt++) {
        await sleep(250);
        const dump = await screendump();
        const ours = await sway.capture();
        size = `${dump.width}x${dump.height}, ours ${ours.width}x${ours.height}`;
        if (dump.width !== 720 || dump.height !== 400 || ours.width !== 720) continue;
        best = Math.min(best, rgbMismatches(ours, dump.pixels));
      }
      expect(best, `pixels differing from QEMU's screendump (${size}); show said: ${stderr}`).toBe(0);
    } finally {
      show.kill('SIGINT');
    }
  }, 60_000);
});
