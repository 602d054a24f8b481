// Lab tier: `wlscanout doctor` against what the lab VM really has, and bad blob parameters on a kernel and a
// compositor that do take dmabufs: specific errors, nothing leaked, the presenter still working.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../../src/embedded/compositors.js';
import { Presenter } from '../../src/present/presenter.js';
import { BlobResource } from '../../src/source/blob-resource.js';
import type { BlobFrame } from '../../src/source/frame.js';
import { memfdCreate, ftruncate, addSeals, close, constants, listOpenFds } from '../../src/native/fds.js';
import { udmabufCreate } from '../../src/native/dmabuf.js';
import { formatByName } from '../../src/formats.js';

const cli = path.join(import.meta.dirname, '../../dist/cli/main.js');
const PAGE = constants.PAGE_SIZE;
const XRGB = formatByName('XRGB8888')!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('doctor and bad input in the lab', () => {
  let weston: Compositor;
  beforeAll(async () => { weston = await startWeston({ width: 320, height: 240, renderer: 'gl' }); });
  afterAll(async () => { await weston?.stop(); });

  it('doctor reports the lab as it is and chooses the udmabuf → linux-dmabuf path', async () => {
    const out = await new Promise<string>((resolve, reject) => execFile(process.execPath, [cli, 'doctor', '--json', '--display', weston.socket],
      { env: weston.env, maxBuffer: 1 << 24 }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
    const report = JSON.parse(out);
    expect(report.udmabuf.available).toBe(true);
    const drivers = report.drmNodes.map((n: { path: string; driver: string }) => `${path.basename(n.path)}:${n.driver}`);
    for (const node of fs.readdirSync('/dev/dri')) expect(drivers.some((d: string) => d.startsWith(`${node}:`))).toBe(true);
    expect(drivers).toContain('renderD128:vgem');
    expect(drivers.some((d: string) => d.endsWith(':vkms'))).toBe(true);
    expect(report.dmaHeaps.map((h: { name: string }) => h.name)).toEqual(fs.readdirSync('/dev/dma_heap'));
    expect(report.swSync.available).toBe(true);
    expect(report.compositor.linuxDmabuf.version).toBe(3);
    expect(report.compositor.linuxDmabuf.formats.some((f: { fourcc: string }) => f.fourcc === 'XRGB8888')).toBe(true);
    expect(report.compositor.linuxDmabuf.takesLinearXrgb).toBe(true);
    expect(report.compositor.explicitSync).toBe(2);
    // weston 10's GL renderer on llvmpipe has no native fences: it advertises explicit sync but cannot use it.
    expect(report.egl.displays.every((d: { features?: Record<string, boolean> }) => !d.features?.EGL_ANDROID_native_fence_sync)).toBe(true);
    expect(report.compositor.explicitSyncProbe).toMatchObject({ usable: false, reason: expect.stringMatching(/^advertised, but/) });
    expect(report.decisions.find((d: { topic: string }) => d.topic === 'guest fences').choice).toMatch(/waited on here/);
    const decision = report.decisions.find((d: { topic: string }) => d.topic === 'guest memory frames');
    expect(decision.choice).toMatch(/udmabuf → linux-dmabuf/);
    const egl = report.egl.displays.find((d: { driver?: string }) => d.driver === 'kms_swrast');
    expect(egl?.features.EGL_EXT_image_dma_buf_import).toBe(true);
  });

  it('refuses bad blobs with specific errors, leaks nothing, and keeps presenting', async () => {
    const presenter = await Presenter.open({ display: weston.socket, title: 'lab', fullscreen: true });
    const before = listOpenFds();
    const memfd = memfdCreate('lab-bad', true);
    ftruncate(memfd, 64 * PAGE);
    addSeals(memfd, constants.F_SEAL_SHRINK);
    const base = { id: 50, width: 64, height: 64, fourcc: XRGB.fourcc, planes: [{ offset: 0, stride: 256 }] };
    expect(() => new BlobResource({ ...base, memory: [{ memfd, offset: 0, length: 2 * PAGE }, { memfd, offset: PAGE, length: 2 * PAGE }] }))
      .toThrow(/overlaps range 0/);
    expect(() => new BlobResource({ ...base, memory: [{ memfd, offset: 1000, length: 4 * PAGE }] })).toThrow(/multiples of the 4096-byte page/);
    expect(() => new BlobResource({ ...base, planes: [{ offset: 0, stride: 1024 }], memory: [{ memfd, offset: 0, length: 4 * PAGE }] }))
      .toThrow(/beyond the blob's 16384 bytes/);
    // A dmabuf with a modifier the compositor does not list: the compositor is never asked, the frame is refused.
    const dmabuf = udmabufCreate(memfd, 0, 4 * PAGE);
    const tiled = new BlobResource({ ...base, id: 51, modifier: 0x0100000000000001n, dmabufs: [dmabuf] });
    close(dmabuf);
    let released = 0;
    const frame: BlobFrame = { resource: tiled, damage: null, seq: 0, flushedAt: 0n, acquireFence: null, release: () => { released++; } };
    expect(() => presenter.present(frame)).toThrow(/blob resource 51 .* cannot go to wl_shm without a copy: it is a dmabuf/);
    expect(released).toBe(1);
    expect(presenter.paths.get(tiled)?.reason).toMatch(/does not list XRGB8888 with modifier 0x100000000000001/);
    tiled.unref();
    // A good blob still goes through afterwards.
    const good = new BlobResource({ ...base, id: 52, memory: [{ memfd, offset: 0, length: 4 * PAGE }] });
    let goodReleased = false;
    presenter.present({ resource: good, damage: null, seq: 1, flushedAt: 0n, acquireFence: null, release: () => { goodReleased = true; } });
    for (let i = 0; i < 200 && presenter.stats.framesCommitted < 1; i++) await sleep(50);
    expect(presenter.stats.framesCommitted).toBe(1);
    expect(presenter.paths.get(good)?.path).toBe('dmabuf');
    good.unref();
    presenter.close();
    expect(goodReleased).toBe(true);
    close(memfd);
    await sleep(100);
    expect(listOpenFds()).toEqual(before.filter((fd) => listOpenFds().includes(fd)));
    expect(listOpenFds().length).toBeLessThanOrEqual(before.length);
  });
});
