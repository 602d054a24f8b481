// Boots the lab kernel under QEMU (TCG) with lab/guest/build/kms-guest as init over a read-only 9p root, and
// checks QEMU's own screendump of the virtio-gpu scan-out against renderKmsGuestPattern, pixel for pixel; with
// wlscanout.input=1 and QEMU's virtio keyboard/tablet/mouse, input sent through QMP comes back on the serial line.
// Needs the cached lab kernel: without it this suite FAILS (it does not skip).
import { readPpm } from './ppm.js';
import { kmsGuestBootArgs } from './qemu-helpers.js';
import { labKernel as findLabKernel } from './lab-kernel.js';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderKmsGuestPattern } from '../src/source/kms-guest-pattern.js';

const guestDir = fileURLToPath(new URL('../lab/guest/', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface GuestOptions { gpu?: string | null; append?: string; extra?: string[] }

/** One QEMU running the guest: serial lines as they arrive, QMP commands, exit. */
class LabVm {
  readonly lines: string[] = [];
  readonly started = Date.now();
  exitCode: number | null | undefined = undefined;
  private readonly qemu: ChildProcess;
  private readonly qmpPath: string;
  private qmp?: { socket: Socket; pending: ((reply: any) => void)[]; buffer: string };

  constructor(kernel: string, dir: string, { gpu = 'virtio-gpu-pci', append = '', extra = [] }: GuestOptions) {
    this.qmpPath = join(dir, `qmp-${Math.random().toString(36).slice(2)}.sock`);
    const args = [
      '-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot', '-display', 'none',
      ...(gpu ? ['-device', gpu] : []), ...extra,
      '-qmp', `unix:${this.qmpPath},server=on,wait=off`, '-serial', 'stdio', '-monitor', 'none',
      ...kmsGuestBootArgs(kernel, append),
    ];
    this.qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    const onData = (chunk: Buffer): void => {
      const parts = (partial + chunk.toString('latin1')).split(/\r?\n/);
      partial = parts.pop()!;
      this.lines.push(...parts);
    };
    this.qemu.stdout!.on('data', onData);
    this.qemu.stderr!.on('data', onData);
    this.qemu.on('exit', (code) => { this.exitCode = code; });
  }

  get log(): string { return this.lines.join('\n'); }

  /** Resolves with the first serial line matching `re` (searching from line `from`). */
  async waitLine(re: RegExp, timeoutMs: number, from = 0): Promise<{ match: RegExpMatchArray; index: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        const failure = /kms-guest: .* failed|Kernel panic/.exec(this.lines[i]);
        if (failure && !re.test(this.lines[i])) throw new Error(`guest failed: ${this.lines[i]}\n${this.log}`);
        const match = re.exec(this.lines[i]);
        if (match) return { match, index: i };
      }
      if (this.exitCode !== undefined) throw new Error(`QEMU exited (${this.exitCode}) before ${re}:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${re}:\n${this.log}`);
      await sleep(20);
    }
  }

  async command(execute: string, args?: object): Promise<any> {
    if (!this.qmp) {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const s = connect(this.qmpPath, () => resolve(s)).once('error', reject);
      });
      const qmp = { socket, pending: [] as ((reply: any) => void)[], buffer: '' };
      socket.on('data', (chunk) => {
        const parts = (qmp.buffer + chunk.toString()).split('\n');
        qmp.buffer = parts.pop()!;
        for (const part of parts) {
          const msg = JSON.parse(part);
          if ('QMP' in msg || 'event' in msg) continue;
          qmp.pending.shift()?.(msg);
        }
      });
      socket.on('close', () => { for (const resolve of qmp.pending.splice(0)) resolve({ return: 'closed' }); });
      this.qmp = qmp;
      await this.command('qmp_capabilities');
    }
    const reply = await new Promise<any>((resolve) => {
      this.qmp!.pending.push(resolve);
      this.qmp!.socket.write(JSON.stringify({ execute, arguments: args }) + '\n');
    });
    if (reply.error) throw new Error(`QMP ${execute}: ${reply.error.class}: ${reply.error.desc}`);
    return reply.return;
  }

  async exited(timeoutMs: number): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.exitCode === undefined) {
      if (Date.now() > deadline) throw new Error(`QEMU still running after ${timeoutMs} ms:\n${this.log}`);
      await sleep(20);
    }
    return this.exitCode;
  }

  kill(): void {
    this.qmp?.socket.destroy();
    if (this.exitCode === undefined) this.qemu.kill('SIGKILL');
  }
}

/** Mismatching pixels of a screendump against the pattern of `frame`, with the first few for the message. */
function compare(shot: { width: number; height: number; pixels: Uint32Array }, frame: number): { mismatches: number; first: string[] } {
  const expected = renderKmsGuestPattern(shot.width, shot.height, frame);
  const first: string[] = [];
  let mismatches = 0;
  for (let i = 0; i < expected.length; i++) {
    if (shot.pixels[i] === expected[i]) continue;
    if (mismatches++ < 5) {
      first.push(`(${i % shot.width}, ${Math.floor(i / shot.width)}) got ${shot.pixels[i].toString(16)} want ${expected[i].toString(16)}`);
    }
  }
  return { mismatches, first };
}

describe('KMS guest on the lab kernel (QEMU TCG, virtio-gpu)', () => {
  let dir: string;
  const vms: LabVm[] = [];
  const boot = (options: GuestOptions): LabVm => {
    const vm = new LabVm(findLabKernel(), dir, options); // every test fails, none skips, without the kernel
    vms.push(vm);
    return vm;
  };

  beforeAll(() => {
    execFileSync('make', ['-s', '-C', guestDir], { stdio: 'inherit' });
    dir = mkdtempSync(join(tmpdir(), 'wlscanout-kms-guest-'));
  });
  afterAll(() => {
    for (const vm of vms) vm.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // 1366x771: an odd mode (pitch 5464; QEMU pads the PPM rows, see readPpm).
  it.each([
    { gpu: 'virtio-gpu-pci', frames: 3 },
    { gpu: 'virtio-gpu-pci,xres=1366,yres=771', frames: 1 },
  ])('shows every frame pixel-exact in QEMU screendumps ($gpu)', async ({ gpu, frames }) => {
    const vm = boot({ gpu, append: `wlscanout.frames=${frames} wlscanout.interval_ms=700` });
    let from = 0;
    for (let frame = 0; frame <= frames; frame++) {
      const { match, index } = await vm.waitLine(new RegExp(`kms-guest: frame ${frame} shown (\\d+)x(\\d+)`), frame ? 10_000 : 90_000, from);
      from = index + 1;
      if (frame === 0) console.log(`${gpu}: QEMU start → frame 0 shown ${Date.now() - vm.started} ms (${match[0]})`);
      // The flush is asynchronous in QEMU: retry briefly (the next frame is 700 ms away).
      let result = { mismatches: -1, first: [] as string[] };
      for (let attempt = 0; attempt < 5 && result.mismatches !== 0; attempt++) {
        if (attempt) await sleep(60);
        const file = join(dir, `frame-${frame}.ppm`);
        await vm.command('screendump', { filename: file });
        const shot = readPpm(file);
        expect(`${shot.width}x${shot.height}`).toBe(`${match[1]}x${match[2]}`);
        result = compare(shot, frame);
      }
      expect(result, `frame ${frame}`).toEqual({ mismatches: 0, first: [] });
    }
    await vm.waitLine(new RegExp(`kms-guest: done after ${frames} frames, idling`), 5000, from);
    await vm.command('quit');
    expect(await vm.exited(10_000)).toBe(0);
  }, 180_000);

  it('reboots after the last frame with wlscanout.exit=reboot (QEMU exits through -no-reboot)', async () => {
    const vm = boot({ append: 'wlscanout.frames=1 wlscanout.interval_ms=10 wlscanout.exit=reboot' });
    await vm.waitLine(/kms-guest: done after 1 frames, rebooting/, 90_000);
    expect(await vm.exited(20_000)).toBe(0);
  }, 180_000);

  it('says what failed and idles (no panic) when there is no virtio-gpu', async () => {
    const vm = boot({ gpu: null, append: 'wlscanout.frames=1' });
    await vm.waitLine(/kms-guest: finding the virtio_gpu card in \/dev\/dri failed: errno 19/, 90_000);
    await sleep(1000);
    expect(vm.log).not.toMatch(/Kernel panic|Attempted to kill init/);
    expect(vm.exitCode).toBeUndefined();
    await vm.command('quit');
    await vm.exited(10_000);
  }, 180_000);

  // wlscanout.input=1: QEMU's virtio input devices, driven through QMP input-send-event, echoed by the guest.
  const inputDevices = ['-device', 'virtio-keyboard-pci', '-device', 'virtio-tablet-pci', '-device', 'virtio-mouse-pci'];

  // With the PC's i8042 (QEMU's default) the guest also has a PS/2 keyboard and mouse, but QEMU routes input to the
  // virtio devices once their driver is up; without it, the virtio devices are the only ones.
  const virtioNames = ['QEMU Virtio Keyboard', 'QEMU Virtio Tablet', 'QEMU Virtio Mouse'];
  it.each([
    { machine: 'pc', names: [...virtioNames, 'AT Translated Set 2 keyboard', 'ImExPS/2 Generic Explorer Mouse'] },
    { machine: 'pc,i8042=off', names: virtioNames },
  ])('echoes virtio keyboard, tablet and mouse events with wlscanout.input=1, and keeps drawing (-machine $machine)', async ({ machine, names }) => {
    const vm = boot({ append: 'wlscanout.input=1 wlscanout.interval_ms=300', extra: ['-machine', machine, ...inputDevices] });
    const { index: shown } = await vm.waitLine(/kms-guest: frame 0 shown/, 90_000);
    const frame0At = Date.now();
    for (const name of names) await vm.waitLine(new RegExp(`^kms-guest: input ${name}$`), 15_000, shown);
    const inputLines = (): string[] => vm.lines.filter((l) => l.startsWith('kms-guest: input '));
    console.log(`${machine}: input devices seen ${Date.now() - frame0At} ms after frame 0: ${inputLines().join(' | ')}`);

    const send = (...events: object[]): Promise<unknown> => vm.command('input-send-event', { events });
    const key = (qcode: string, down: boolean): object => ({ type: 'key', data: { down, key: { type: 'qcode', data: qcode } } });
    /** Sends `events` and waits for `expected` serial lines in that order (other lines may come between). */
    const expectLines = async (events: object[], expected: string[]): Promise<void> => {
      let from = vm.lines.length;
      await send(...events);
      for (const line of expected) from = (await vm.waitLine(new RegExp(`^${line}$`), 10_000, from)).index + 1;
    };

    await expectLines([key('a', true)], ['kms-guest: key 30 1']); // KEY_A
    await expectLines([key('a', false)], ['kms-guest: key 30 0']);
    await expectLines([key('shift', true), key('ret', true), key('ret', false), key('shift', false)],
      ['kms-guest: key 42 1', 'kms-guest: key 28 1', 'kms-guest: key 28 0', 'kms-guest: key 42 0']); // KEY_LEFTSHIFT, KEY_ENTER
    // The tablet's axes are 0..32767 (ABS_X = 0, ABS_Y = 1), passed through unscaled; the kernel drops repeated values.
    await expectLines([{ type: 'abs', data: { axis: 'x', value: 1000 } }, { type: 'abs', data: { axis: 'y', value: 32767 } }],
      ['kms-guest: abs 0 1000', 'kms-guest: abs 1 32767']);
    await expectLines([{ type: 'abs', data: { axis: 'x', value: 32767 } }, { type: 'abs', data: { axis: 'y', value: 0 } }],
      ['kms-guest: abs 0 32767', 'kms-guest: abs 1 0']);
    await expectLines([{ type: 'rel', data: { axis: 'x', value: 5 } }, { type: 'rel', data: { axis: 'y', value: -3 } }],
      ['kms-guest: rel 0 5', 'kms-guest: rel 1 -3']); // REL_X, REL_Y (virtio mouse)
    await expectLines([{ type: 'btn', data: { down: true, button: 'left' } }], ['kms-guest: key 272 1']); // BTN_LEFT
    await expectLines([{ type: 'btn', data: { down: false, button: 'left' } }], ['kms-guest: key 272 0']);

    // The display went on: frames kept coming at the interval, and the latest one is on screen pixel-exact.
    const shownLines = vm.lines.map((l) => /kms-guest: frame (\d+) shown \d+x\d+ t=([\d.]+)/.exec(l)).filter((m) => m !== null);
    const frames = shownLines.map((m) => Number(m[1]));
    expect(frames).toEqual(frames.map((_, i) => i));
    // Absolute deadlines every 300 ms: no frame early, none late by more than a TCG hiccup.
    const t0 = Number(shownLines[0][2]);
    for (const m of shownLines) {
      const late = Number(m[2]) - t0 - Number(m[1]) * 0.3;
      expect(late, m[0]).toBeGreaterThan(-0.01);
      expect(late, m[0]).toBeLessThan(2);
    }
    const { match } = await vm.waitLine(new RegExp(`kms-guest: frame ${frames.length} shown`), 5000);
    let result = { mismatches: -1, first: [] as string[] };
    for (let attempt = 0; attempt < 5 && result.mismatches !== 0; attempt++) {
      const last = Math.max(...vm.lines.map((l) => Number(/kms-guest: frame (\d+) shown/.exec(l)?.[1] ?? -1)));
      const file = join(dir, `input-${attempt}.ppm`);
      await vm.command('screendump', { filename: file });
      result = compare(readPpm(file), last);
      if (result.mismatches) await sleep(50); // a frame boundary raced the screendump
    }
    expect(result, `screen after ${match[0]}`).toEqual({ mismatches: 0, first: [] });
    expect(inputLines().sort()).toEqual(names.map((name) => `kms-guest: input ${name}`).sort()); // each once, none gone
    await vm.command('quit');
    expect(await vm.exited(10_000)).toBe(0);
  }, 180_000);

  it('prints no input lines without wlscanout.input, even with input devices attached', async () => {
    const vm = boot({ append: 'wlscanout.frames=2 wlscanout.interval_ms=200 wlscanout.exit=reboot', extra: inputDevices });
    await vm.waitLine(/kms-guest: frame 0 shown/, 90_000);
    await vm.command('input-send-event', { events: [{ type: 'key', data: { down: true, key: { type: 'qcode', data: 'a' } } }] });
    await vm.waitLine(/kms-guest: done after 2 frames, rebooting/, 10_000);
    expect(await vm.exited(20_000)).toBe(0);
    expect(vm.lines.filter((l) => l.startsWith('kms-guest:'))
      .map((l) => l.replace(/t=\d+\.\d{3}$/, 't=T').replace(/\d+x\d+/, 'WxH'))).toEqual([
      'kms-guest: frame 0 shown WxH t=T', 'kms-guest: frame 1 shown WxH t=T', 'kms-guest: frame 2 shown WxH t=T',
      'kms-guest: done after 2 frames, rebooting',
    ]);
  }, 180_000);
});
