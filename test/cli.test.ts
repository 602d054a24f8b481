// The wlscanout command as a user runs it (the built dist/, as `make test` builds it first).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSway, startWeston, type Compositor } from '../src/embedded/compositors.js';
import { decodePng } from '../src/capture/png.js';
import { decodePattern, verifyPatternExact } from '../src/source/test-pattern.js';
import { runGuest } from '../src/pipeline.js';
import { makeGuest, openPresenter, waitFor, XRGB } from './helpers.js';

const cli = join(import.meta.dirname, '../dist/cli/main.js');

interface Result { code: number | null; stdout: string; stderr: string }

function wlscanout(args: string[], env: NodeJS.ProcessEnv = {}, cwd = tmpdir()): { result: Promise<Result>; kill(): void } {
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  const child = spawn(process.execPath, [cli, ...args], { env: childEnv, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const result = new Promise<Result>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { result, kill: () => child.kill('SIGKILL') };
}

describe('wlscanout CLI', () => {
  beforeAll(() => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (make test does)`);
  });

  it('prints help for the program and for each command', async () => {
    const top = await wlscanout(['--help']).result;
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/demo\s+show the built-in guest/);
    expect(top.stdout).toMatch(/screenshot\s+save a guest frame \(or what the compositor shows\) as a PNG/);
    expect(top.stdout).toMatch(/record\s+record the guest's frames/);
    const demo = await wlscanout(['demo', '--help']).result;
    expect(demo.stdout).toContain('--frames N|inf');
  });

  it.each([
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['demo', '--size', '10x10'], /--size 10x10 is out of range/],
    [['demo', '--size', 'big'], /--size 'big' is not WIDTHxHEIGHT/],
    [['demo', '--format', 'NV12'], /--format 'NV12' is not one of XRGB8888/],
    [['demo', '--frames=-3'], /--frames '-3' must be a whole number/],
    [['demo', '--bogus'], /Unknown option '--bogus'/],
    [['--log-level', 'loud', 'demo'], /unknown log level 'loud'/],
  ])('rejects %j with exit status 2 and a specific message', async (args, message) => {
    const r = await wlscanout(args).result;
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('demo without WAYLAND_DISPLAY starts its own compositor and saves a verified screenshot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wlscanout-demo-'));
    try {
      const r = await wlscanout(['demo', '--size', '640x400', '--frames', '30', '--screenshot', 'shot.png'],
        { WAYLAND_DISPLAY: undefined }, dir).result;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(join(dir, 'shot.png'));
      expect(r.stderr).toContain('screenshot shows guest frame 29: checksum matches');
      expect(r.stderr).toMatch(/wl_buffers on 1 pool\(s\) made on the guest memfd itself \(zero-copy\)/);
      const image = decodePng(readFileSync(join(dir, 'shot.png')));
      expect([image.width, image.height]).toEqual([640, 400]);
      const decoded = decodePattern(image, { x: 0, y: 0, width: 640, height: 400 });
      expect(decoded).toMatchObject({ ok: true, frame: 29 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  describe('against a running compositor', () => {
    let sway: Compositor;
    beforeAll(async () => { sway = await startSway({ width: 640, height: 480 }); }, 30_000);
    afterAll(async () => { await sway?.stop(); });

    it('screenshot saves exactly what sway shows', async () => {
      const presenter = await openPresenter(sway.socket, { fullscreen: true });
      const guest = makeGuest(640, 480);
      const dir = mkdtempSync(join(tmpdir(), 'wlscanout-shot-'));
      try {
        const run = runGuest(guest, presenter, 10);
        await run.done;
        const r = await wlscanout(['screenshot', '--compositor', '-o', 'out.png', '--display', sway.socket], {}, dir).result;
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toContain('(640x480, via wlr-screencopy)');
        const mine = decodePng(readFileSync(join(dir, 'out.png')));
        const full = { x: 0, y: 0, width: 640, height: 480 };
        expect(verifyPatternExact(mine, full, XRGB).mismatches).toBe(0);
        expect(Buffer.from(mine.data).equals(Buffer.from((await sway.capture()).data))).toBe(true);
      } finally {
        presenter.close();
        guest.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }, 30_000);
  });

  it('exits with status 1 and says so when the compositor goes away mid-stream', async () => {
    const weston = await startWeston({ width: 320, height: 240 });
    try {
      const demo = wlscanout(['demo', '--display', weston.socket, '--size', '320x240', '--frames', 'inf']);
      await waitFor('the demo window', () => existsSync(weston.socket)); // socket is up; give the demo time to map
      await new Promise((r) => setTimeout(r, 1500));
      weston.kill('SIGKILL');
      const started = Date.now();
      const r = await demo.result;
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/wlscanout: lost the compositor connection: .*(EPIPE|ECONNRESET)/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await weston.stop();
    }
  }, 30_000);
});

describe('wlscanout doctor on this host', () => {
  let weston: Compositor;
  beforeAll(async () => { weston = await startWeston({ width: 320, height: 240 }); }, 30_000);
  afterAll(async () => { await weston?.stop(); });

  it('reports what is really here and the wl_shm path it leads to', async () => {
    const json = await wlscanout(['doctor', '--json', '--display', weston.socket], weston.env).result;
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.udmabuf.available).toBe(existsSync('/dev/udmabuf'));
    expect(report.udmabuf.reason).toMatch(/\/dev\/udmabuf does not exist/);
    expect(report.drmNodes.length).toBe(existsSync('/dev/dri') ? readdirSync('/dev/dri').filter((n) => /^(card|renderD)\d+$/.test(n)).length : 0);
    expect(report.swSync.available).toBe(existsSync('/sys/kernel/debug/sync/sw_sync'));
    expect(report.egl.displays[0]).toMatchObject({ platform: 'surfaceless' });
    expect(report.compositor.globals.map((g: { interface: string }) => g.interface)).toContain('wl_compositor');
    expect(report.compositor.linuxDmabuf).toBe(null); // weston with pixman offers none
    expect(report.compositor.shmFormats).toEqual(['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888', 'RGB565']);
    const memory = report.decisions.find((d: { topic: string }) => d.topic === 'guest memory frames');
    expect(memory.choice).toMatch(/^wl_shm/);
    expect(memory.why).toMatch(/no udmabuf/);
    const text = await wlscanout(['doctor', '--display', weston.socket], weston.env).result;
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/udmabuf: +no — \/dev\/udmabuf does not exist/);
    expect(text.stdout).toMatch(/linux-dmabuf: not offered/);
    expect(text.stdout).toMatch(/guest memory frames: wl_shm \(zero-copy on the guest memfd\)\n +because no udmabuf/);
  }, 30_000);

  it('without a compositor, reports the host alone', async () => {
    const result = await wlscanout(['doctor'], { WAYLAND_DISPLAY: undefined }).result;
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/not probed: no --display and no \$WAYLAND_DISPLAY/);
  });
});
