// Input end to end: a "user" types and moves the pointer over `wlscanout show`'s fullscreen window in headless
// sway (virtual keyboard and pointer, src/embedded/input-injector.ts), and a real guest — the lab kernel's KMS
// guest on QEMU 7.2 with virtio keyboard and tablet, echoing its evdev events to the serial console
// (wlscanout.input=1) — receives them: keys with their codes (letters and E0-extended keys), the absolute
// position scaled to the tablet's range, buttons and the wheel.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { decodePng } from '../src/capture/png.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSway, type Compositor } from '../src/embedded/compositors.js';
import { InputInjector, BTN_LEFT } from '../src/embedded/input-injector.js';
import { kmsGuestBootArgs, waitForQmp } from './qemu-helpers.js';
import { labKernel } from './lab-kernel.js';
import { sleep } from './helpers.js';

const cli = path.join(import.meta.dirname, '../dist/cli/main.js');
const W = 1280;
const H = 800;
const KEY_A = 30;
const KEY_RIGHTCTRL = 97; // qnum 0x9d: an E0-prefixed key
const KEY_UP = 103; // qnum 0xc8

/** The lab kernel's KMS guest under QEMU with `devices`, shown fullscreen by `wlscanout show` on its own headless
 *  sway, a virtual keyboard and pointer on that sway, and the guest's serial lines as they arrive. */
class ShownGuest {
  readonly serial: string[] = [];
  private showErr = '';

  private constructor(readonly dir: string, readonly sway: Compositor, readonly qemu: ChildProcess,
    readonly show: ChildProcess, readonly injector: InputInjector) {}

  static async start(devices: string[], kernelParams: string): Promise<ShownGuest> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-input-'));
    const sway = await startSway({ width: W, height: H });
    // i8042=off: the virtio devices are the guest's only keyboard and pointer.
    const qemu = spawn('qemu-system-x86_64', ['-machine', 'pc,i8042=off', '-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none',
      '-no-reboot', '-device', 'virtio-gpu-pci', ...devices.flatMap((d) => ['-device', d]),
      '-display', 'dbus,p2p=yes', '-serial', 'stdio', '-monitor', 'none', '-qmp', `unix:${dir}/qmp,server=on,wait=off`,
      ...kmsGuestBootArgs(labKernel(), kernelParams)], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForQmp(`${dir}/qmp`);
    const show = spawn(process.execPath, [cli, 'show', '--qmp', `${dir}/qmp`, '--fullscreen', '--display', sway.socket],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...sway.env, WLSCANOUT_LOG_LEVEL: process.env.WLSCANOUT_LOG_LEVEL ?? 'warn' } });
    const guest = new ShownGuest(dir, sway, qemu, show, await InputInjector.open(sway.socket));
    let partial = '';
    qemu.stdout!.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString('latin1')).split(/\r?\n/);
      partial = parts.pop()!;
      guest.serial.push(...parts);
    });
    show.stderr!.on('data', (d) => { guest.showErr += d; });
    return guest;
  }

  /** The next serial line matching `re` from line `from` on. */
  async waitLine(re: RegExp, from = 0, timeoutMs = 10_000): Promise<{ match: RegExpMatchArray; index: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.serial.length; i++) {
        const match = re.exec(this.serial[i]);
        if (match) return { match, index: i };
      }
      if (Date.now() > deadline) {
        throw new Error(`no serial line ${re} after line ${from}; serial: ${this.serial.slice(-15).join(' | ')}; show: ${this.showErr}`);
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    await this.injector.close();
    this.show.kill('SIGKILL');
    this.qemu.kill('SIGKILL');
    await this.sway.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('wlscanout show forwards keyboard and pointer to a real guest (sway, QEMU virtio input)', () => {
  let guest: ShownGuest;
  beforeAll(async () => {
    guest = await ShownGuest.start(['virtio-keyboard-pci', 'virtio-tablet-pci'], 'wlscanout.frames=1 wlscanout.interval_ms=100 wlscanout.input=1');
    await guest.waitLine(/kms-guest: input QEMU Virtio Tablet/, 0, 90_000);
    await guest.waitLine(/kms-guest: frame 1 shown 1280x800/, 0, 30_000);
    await sleep(500); // the window is fullscreen and focused
  }, 150_000);
  afterAll(async () => { await guest?.stop(); });

  it('typing reaches the guest as the same evdev codes, extended keys included', async () => {
    const from = guest.serial.length;
    await guest.injector.type('a');
    let at = (await guest.waitLine(new RegExp(`kms-guest: key ${KEY_A} 1`), from)).index;
    at = (await guest.waitLine(new RegExp(`kms-guest: key ${KEY_A} 0`), at + 1)).index;
    for (const code of [KEY_RIGHTCTRL, KEY_UP]) {
      await guest.injector.key(code, true);
      await guest.injector.key(code, false);
      at = (await guest.waitLine(new RegExp(`kms-guest: key ${code} 1`), at + 1)).index;
      at = (await guest.waitLine(new RegExp(`kms-guest: key ${code} 0`), at + 1)).index;
    }
  }, 30_000);

  it('absolute pointer moves arrive at the tablet, scaled from guest pixels to its 0..32767 range', async () => {
    for (const [x, y] of [[640, 400], [1280 / 4, 800 * 3 / 4]] as const) {
      const from = guest.serial.length;
      await guest.injector.pointerMoveAbsolute(x, y, W, H);
      // QEMU scales SetAbsPosition by the console size: value × 32767 / size.
      const ax = Number((await guest.waitLine(/kms-guest: abs 0 (\d+)/, from)).match[1]);
      const ay = Number((await guest.waitLine(/kms-guest: abs 1 (\d+)/, from)).match[1]);
      expect(Math.abs(ax - Math.floor((x * 32767) / W)), `x ${ax}`).toBeLessThanOrEqual(1);
      expect(Math.abs(ay - Math.floor((y * 32767) / H)), `y ${ay}`).toBeLessThanOrEqual(1);
    }
  }, 30_000);

  it('buttons and the wheel arrive', async () => {
    const from = guest.serial.length;
    await guest.injector.pointerButton(BTN_LEFT, true);
    await guest.injector.pointerButton(BTN_LEFT, false);
    let at = (await guest.waitLine(new RegExp(`kms-guest: key ${BTN_LEFT} 1`), from)).index;
    at = (await guest.waitLine(new RegExp(`kms-guest: key ${BTN_LEFT} 0`), at + 1)).index;
    await guest.injector.axis(1);
    await guest.waitLine(/kms-guest: rel 8 -1/, at + 1); // REL_WHEEL, one notch down
  }, 30_000);
});

describe('wlscanout show with a relative guest mouse: a click locks the pointer, its motion is forwarded (sway)', () => {
  let guest: ShownGuest;
  beforeAll(async () => {
    guest = await ShownGuest.start(['virtio-mouse-pci'], 'wlscanout.frames=1 wlscanout.interval_ms=100 wlscanout.input=1');
    await guest.waitLine(/kms-guest: input QEMU Virtio Mouse/, 0, 90_000);
    await guest.waitLine(/kms-guest: frame 1 shown 1280x800/, 0, 30_000);
    await sleep(500);
  }, 150_000);
  afterAll(async () => { await guest?.stop(); });

  it('moves before the click do not reach the guest; after it, relative motion does', async () => {
    const start = guest.serial.length;
    await guest.injector.pointerMoveAbsolute(600, 400, W, H); // refused by QEMU as absolute: we switch to relative
    await guest.injector.pointerMoveAbsolute(700, 450, W, H); // not locked yet: not forwarded
    await sleep(300);
    const from = guest.serial.length;
    expect(guest.serial.slice(start, from).filter((l) => /kms-guest: (rel|abs) /.test(l))).toEqual([]);
    await guest.injector.pointerButton(BTN_LEFT, true); // locks the pointer
    await guest.injector.pointerButton(BTN_LEFT, false);
    await guest.waitLine(new RegExp(`kms-guest: key ${BTN_LEFT} 0`), from);
    await sleep(300);
    const moved = guest.serial.length;
    await guest.injector.pointerMoveRelative(7, -4);
    const x = await guest.waitLine(/kms-guest: rel 0 (-?\d+)/, moved);
    const y = await guest.waitLine(/kms-guest: rel 1 (-?\d+)/, moved);
    expect(Number(x.match[1])).toBe(7);
    expect(Number(y.match[1])).toBe(-4);
  }, 30_000);
});

describe('wlscanout show: the guest\'s cursor is the pointer image over the window, hidden when the guest hides it (sway)', () => {
  let guest: ShownGuest;
  beforeAll(async () => {
    guest = await ShownGuest.start(['virtio-tablet-pci'], 'wlscanout.frames=2 wlscanout.interval_ms=2500 wlscanout.cursor=1');
  }, 60_000);
  afterAll(async () => { await guest?.stop(); });

  /** The screen with the cursor drawn in (grim -c), as RGBA. */
  async function screenWithCursor(): Promise<{ width: number; data: Uint8Array<ArrayBufferLike> }> {
    return decodePng(execFileSync('grim', ['-c', '-t', 'png', '-'], { env: guest.sway.env, maxBuffer: 64 << 20 }));
  }

  const pixel = (shot: { width: number; data: Uint8Array }, x: number, y: number): number[] =>
    [...shot.data.subarray((y * shot.width + x) * 4, (y * shot.width + x) * 4 + 3)];

  it('draws the guest cursor at the pointer, by its hotspot, then hides it', async () => {
    await guest.waitLine(/kms-guest: cursor shown/, 0, 90_000);
    const [px, py] = [400, 300];
    // The cursor (hotspot 8,8): opaque red from (px-8, py-8) to (px+23, py+23), green below it.
    let shot: { width: number; data: Uint8Array<ArrayBufferLike> } = { width: 0, data: new Uint8Array() };
    for (let attempt = 0; attempt < 20; attempt++) {
      await guest.injector.pointerMoveAbsolute(px + (attempt % 2), py, W, H);
      await guest.injector.pointerMoveAbsolute(px, py, W, H);
      await sleep(100);
      shot = await screenWithCursor();
      if (pixel(shot, px + 8, py + 8).join() === '255,0,0') break;
    }
    expect(pixel(shot, px + 8, py + 8)).toEqual([255, 0, 0]);
    expect(pixel(shot, px - 8, py - 8)).toEqual([255, 0, 0]); // the hotspot's offset: the top-left corner
    expect(pixel(shot, px + 8, py + 40)).toEqual([0, 255, 0]);
    expect(guest.serial.some((l) => /kms-guest: cursor hidden/.test(l)), 'the guest had not hidden it yet').toBe(false);
    await guest.waitLine(/kms-guest: cursor hidden/, 0, 15_000);
    let hidden = false;
    for (let attempt = 0; attempt < 20 && !hidden; attempt++) {
      await guest.injector.pointerMoveAbsolute(px + 1, py, W, H);
      await guest.injector.pointerMoveAbsolute(px, py, W, H);
      await sleep(100);
      shot = await screenWithCursor();
      hidden = pixel(shot, px + 8, py + 8).join() !== '255,0,0' && pixel(shot, px + 8, py + 40).join() !== '0,255,0';
    }
    expect(hidden, 'no cursor drawn once the guest hid it').toBe(true);
  }, 120_000);
});
