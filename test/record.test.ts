// `wlscanout screenshot` and `wlscanout record` from the guest's scan-out (no window): the built-in guest, and a
// real QEMU 7.2 running the lab kernel's KMS test-pattern guest (gl=off: pixels over D-Bus). Videos are checked
// with Debian's ffprobe/ffmpeg; pixels against the known pattern and QEMU's own screendump.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../src/capture/png.js';
import { decodePattern, renderExpected } from '../src/source/test-pattern.js';
import { renderKmsGuestPattern } from '../src/source/kms-guest-pattern.js';
import { kmsGuestBootArgs, rgbMismatches, waitForQmp } from './qemu-helpers.js';
import { readPpm } from './ppm.js';
import { labKernel } from './lab-kernel.js';
import { sleep, XRGB } from './helpers.js';

const cli = path.join(import.meta.dirname, '../dist/cli/main.js');

function run(args: string[], options: { signalAfterMs?: number } = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { err += d; });
    if (options.signalAfterMs) setTimeout(() => child.kill('SIGINT'), options.signalAfterMs);
    child.once('exit', (code) => resolve({ code, out, err }));
  });
}

function frameCount(file: string): number {
  const out = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file]).toString().trim();
  return Number(out);
}

/** Frame `n` of a video as RGBA. */
function videoFrame(file: string, n: number, width: number, height: number): { width: number; height: number; data: Uint8Array } {
  const rgb = execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-vf', `select=eq(n\\,${n})`, '-frames:v', '1',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { maxBuffer: 64 << 20 });
  expect(rgb.length).toBe(width * height * 3);
  const data = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) data.set([rgb[i], rgb[i + 1], rgb[i + 2], 255], j);
  return { width, height, data };
}

describe('record and screenshot of the built-in guest', () => {
  const W = 320;
  const H = 200;
  let dir: string;
  beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-record-')); });
  afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  it('screenshot --guest saves the guest frame as a PNG, pixel for pixel', async () => {
    const file = path.join(dir, 'shot.png');
    const r = await run(['screenshot', '--guest', `${W}x${H}`, '-o', file]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/shot\.png \(320x200, guest frame 0\)/);
    const png = decodePng(fs.readFileSync(file));
    expect(Buffer.from(png.data).equals(Buffer.from(renderExpected(W, H, XRGB, 0)))).toBe(true);
  });

  it('record of N frames to .mkv: ffprobe counts N, and the first and last frames are the guest\'s, pixel for pixel', async () => {
    const file = path.join(dir, 'guest.mkv');
    const r = await run(['record', '--guest', `${W}x${H}`, '--frames', '40', '--fps', '120', '-o', file]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/40 frames, 0 dropped, 0 repeated/);
    expect(frameCount(file)).toBe(40);
    for (const n of [0, 39]) {
      const frame = videoFrame(file, n, W, H);
      expect(decodePattern(frame, { x: 0, y: 0, width: W, height: H })).toMatchObject({ frame: n, ok: true });
      expect(Buffer.from(frame.data).equals(Buffer.from(renderExpected(W, H, XRGB, n)))).toBe(true);
    }
  }, 60_000);

  it('record to .raw writes the captured frames as they are', async () => {
    const file = path.join(dir, 'guest.raw');
    const r = await run(['record', '--guest', `${W}x${H}`, '--frames', '5', '-o', file]);
    expect(r.code, r.err).toBe(0);
    const raw = fs.readFileSync(file);
    expect(raw.length).toBe(5 * W * H * 4);
    const last = raw.subarray(4 * W * H * 4);
    const rgba = new Uint8Array(W * H * 4);
    for (let i = 0; i < W * H * 4; i += 4) rgba.set([last[i + 2], last[i + 1], last[i], 255], i); // XRGB8888: B, G, R, X
    expect(Buffer.from(rgba).equals(Buffer.from(renderExpected(W, H, XRGB, 4)))).toBe(true);
  });

  it('Ctrl-C ends the recording with a complete file', async () => {
    const file = path.join(dir, 'interrupted.mkv');
    const r = await run(['record', '--guest', `${W}x${H}`, '-o', file], { signalAfterMs: 1500 });
    expect(r.code, r.err).toBe(0);
    const m = /(\d+) frames, 0 dropped, 0 repeated, [\d.]+ fps; interrupted/.exec(r.out);
    expect(m, r.out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(5);
    expect(frameCount(file)).toBe(Number(m![1]));
  }, 30_000);

  it('--verify passes a clean run, and finds an injected corrupted frame and an injected dropped frame', async () => {
    const clean = await run(['record', '--guest', `${W}x${H}`, '--frames', '60', '--verify']);
    expect(clean.code, clean.out + clean.err).toBe(0);
    expect(clean.out).toMatch(/verified 60 frames: 0 mismatched, 0 missing, 0 repeated/);
    expect(clean.out).toMatch(/latency guest flush → captured: p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms/);
    const faulty = await run(['record', '--guest', `${W}x${H}`, '--frames', '60', '--verify', '--inject', 'drop=17,corrupt=33']);
    expect(faulty.code).toBe(1);
    expect(faulty.out).toMatch(/verified 59 frames: 1 mismatched, 1 missing, 0 repeated/);
    expect(faulty.out).toMatch(/mismatched \(checksum wrong\): frame 33\n/);
    expect(faulty.out).toMatch(/missing: frame 17\n/);
  }, 30_000);

  it('bad command lines: exit 2 with the reason', async () => {
    const cases: [string[], RegExp][] = [
      [['record', '--guest', '320x200'], /record needs -o FILE/],
      [['record', '-o', 'x.mkv'], /no source given/],
      [['record', '--guest', '320x200', '--qmp', 'q', '-o', 'x.mkv'], /one source: --qmp, --dbus-address or --guest/],
      [['record', '--guest', '320x200', '--verify', '--inject', 'skip=3'], /--inject item 'skip=3'/],
      [['record', '--guest', '320x200', '-o', 'x.mkv', '--inject', 'drop=3'], /--inject is for checking --verify/],
      [['record', '--guest', '320x200', '-o', 'x.mkv', '--fps', '0'], /--fps '0' must be a whole number in 1..1000/],
      [['screenshot', '--guest', '320x200', '--guest-format', 'RGB565'], /captures take 32-bit formats only/],
      [['screenshot', '--compositor', '--guest', '320x200'], /--compositor takes no guest source/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err).toMatch(message);
    }
  }, 30_000);

  it('a file ffmpeg cannot write fails with ffmpeg\'s own reason, exit 1', async () => {
    const r = await run(['record', '--guest', `${W}x${H}`, '--frames', '3', '-o', path.join(dir, 'no-such-dir', 'x.mkv')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ffmpeg failed \(exit 1\) writing .*no-such-dir\/x\.mkv: .*No such file or directory/);
  }, 30_000);
});

describe('record and screenshot of a real QEMU 7.2 guest (-display dbus,p2p=yes, gl=off)', () => {
  const W = 1280;
  const H = 800;
  const FRAMES = 2;
  let qemu: ChildProcess;
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-record-qemu-'));
    // Two QMP sockets: one for wlscanout, one for the test's screendump.
    qemu = spawn('qemu-system-x86_64', ['-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot',
      '-device', 'virtio-gpu-pci', '-display', 'dbus,p2p=yes', '-serial', 'null', '-monitor', 'none',
      '-qmp', `unix:${dir}/a.qmp,server=on,wait=off`, '-qmp', `unix:${dir}/b.qmp,server=on,wait=off`,
      ...kmsGuestBootArgs(labKernel(), `wlscanout.frames=${FRAMES} wlscanout.interval_ms=200`)], { stdio: 'ignore' });
    await waitForQmp(`${dir}/a.qmp`);
    await waitForQmp(`${dir}/b.qmp`);
  }, 60_000);
  afterAll(() => {
    qemu?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function screendump(file: string): Promise<{ width: number; height: number; pixels: Uint32Array }> {
    const socket = connect(`${dir}/b.qmp`);
    let data = '';
    socket.on('data', (d) => { data += d; });
    const waitFor = async (re: RegExp): Promise<void> => { while (!re.test(data)) await sleep(20); };
    await waitFor(/"QMP"/);
    socket.write('{"execute":"qmp_capabilities"}\n');
    await waitFor(/"return"/);
    data = '';
    socket.write(JSON.stringify({ execute: 'screendump', arguments: { filename: file } }) + '\n');
    await waitFor(/"return"|"error"/);
    socket.destroy();
    return readPpm(file);
  }

  it('screenshot --qmp equals QEMU\'s own screendump and the guest\'s pattern, pixel for pixel', async () => {
    const expected = renderKmsGuestPattern(W, H, FRAMES);
    // Wait until the guest has drawn its last frame (QEMU's screendump shows it).
    let dump: { width: number; height: number; pixels: Uint32Array } = { width: 0, height: 0, pixels: new Uint32Array() };
    for (let attempt = 0; attempt < 240; attempt++) {
      dump = await screendump(`${dir}/dump.ppm`);
      if (dump.width === W && dump.pixels.every((p, i) => p === expected[i])) break;
      await sleep(250);
    }
    expect(dump.pixels.every((p, i) => p === expected[i]), 'the guest reached its last frame').toBe(true);
    const file = `${dir}/shot.png`;
    const r = await run(['screenshot', '--qmp', `${dir}/a.qmp`, '-o', file]);
    expect(r.code, r.err).toBe(0);
    const png = decodePng(fs.readFileSync(file));
    expect([png.width, png.height]).toEqual([W, H]);
    expect(rgbMismatches(png, dump.pixels)).toBe(0);
  }, 120_000);

  it('record --qmp samples the guest into a video whose frames equal its picture', async () => {
    const file = `${dir}/qemu.mkv`;
    const r = await run(['record', '--qmp', `${dir}/a.qmp`, '--frames', '10', '--fps', '20', '-o', file]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/10 frames, \d+ dropped, \d+ repeated/);
    expect(frameCount(file)).toBe(10);
    const last = videoFrame(file, 9, W, H);
    expect(rgbMismatches(last, renderKmsGuestPattern(W, H, FRAMES))).toBe(0);
  }, 60_000);
});
