// Bytes of pixels our process copies per frame on each path, from the counters at the copy sites
// (src/copy-stats.ts): the zero-copy paths must read 0, the QEMU gl=off path one frame's worth, captures their damage.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSway } from '../src/embedded/compositors.js';
import { Presenter } from '../src/present/presenter.js';
import { BuiltinGuest } from '../src/source/builtin-guest.js';
import { BlobGuest } from '../src/source/blob-guest.js';
import { QemuDisplay } from '../src/source/qemu/display.js';
import { QemuSource } from '../src/source/qemu/qemu-source.js';
import { CaptureSession } from '../src/capture/session.js';
import { allocateShmBuffer } from '../src/capture/shm-lender.js';
import { runGuest, runGuestHeadless } from '../src/pipeline.js';
import { copyTotals } from '../src/copy-stats.js';
import { formatByName } from '../src/formats.js';
import { kmsGuestBootArgs } from '../test/qemu-helpers.js';

export interface BytesRow { path: string; frames: number; bytesPerFrame: number; fullFrameBytes: number }

const XRGB = formatByName('XRGB8888')!;

function copied(): number {
  return Object.values(copyTotals()).reduce((a, b) => a + b, 0);
}

export async function bytesCopied(root: string, frames: number): Promise<BytesRow[]> {
  const rows: BytesRow[] = [];
  const [W, H] = [1280, 800];
  const sway = await startSway({ width: W, height: H, refreshHz: 240 });
  try {
    const presenter = await Presenter.open({ display: sway.socket, title: 'bytes', fullscreen: true });
    try {
      const record = (path: string, frames: number, bytes: number): void => {
        rows.push({ path, frames, bytesPerFrame: bytes / frames, fullFrameBytes: W * H * 4 });
      };
      const measure = async (path: string, run: () => Promise<number>): Promise<void> => {
        const before = copied();
        const n = await run();
        record(path, n, copied() - before);
      };
      await measure('built-in guest (memfd) → wl_shm', async () => {
        const guest = new BuiltinGuest({ width: W, height: H, format: XRGB, buffers: 3 });
        await runGuest(guest, presenter, frames).done;
        guest.close();
        return frames;
      });
      await measure('virtio-gpu blob (memfd) → wl_shm (host: no udmabuf)', async () => {
        const guest = new BlobGuest({ width: W, height: H, format: XRGB, buffers: 3, firstResourceId: 100 });
        await runGuest(guest, presenter, frames).done;
        guest.close();
        return frames;
      });
      await measure('capture into a lent memfd (damage only)', async () => {
        const guest = new BuiltinGuest({ width: W, height: H, format: XRGB, buffers: 3 });
        const session = new CaptureSession();
        const run = runGuestHeadless(guest, session, { fps: 10_000 });
        const owned = allocateShmBuffer(W, H, XRGB);
        const buffer = session.lend(owned.description);
        for (let i = 0; i < frames; i++) await session.capture(buffer, 'next');
        run.stop();
        session.stop();
        owned.close();
        guest.close();
        return frames;
      });
      const qemu = await qemuFrames(root, presenter);
      record('QEMU 7.2 gl=off (Scanout ay → memfd surface), full frames', qemu.frames, qemu.bytes);
    } finally {
      presenter.close();
    }
  } finally {
    await sway.stop();
  }
  return rows;
}

/** The KMS guest rewriting its whole 1280×800 frame every 16 ms, shown through QemuSource for ~5 s. */
async function qemuFrames(root: string, presenter: Presenter): Promise<{ frames: number; bytes: number }> {
  const kernel = execFileSync(join(root, 'lab/build-kernel.sh'), { encoding: 'utf8' }).trim();
  const qmp = join(tmpdir(), `wlscanout-bytes-${process.pid}.qmp`);
  const qemu = spawn('qemu-system-x86_64', ['-m', '256', '-smp', '1', '-vga', 'none', '-net', 'none', '-no-reboot',
    '-device', 'virtio-gpu-pci', '-display', 'dbus,p2p=yes', '-qmp', `unix:${qmp},server=on,wait=off`, '-serial', 'null',
    '-monitor', 'none', ...kmsGuestBootArgs(kernel, 'wlscanout.full=1 wlscanout.interval_ms=16')], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 400 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 25));
    const display = await QemuDisplay.attach({ qmpPath: qmp });
    const source = new QemuSource(display, presenter);
    let scanouts = 0;
    display.on('scanout', () => scanouts++);
    const warm = Date.now() + 60_000;
    while (scanouts < 30 && Date.now() < warm) await new Promise((r) => setTimeout(r, 100));
    const start = copied();
    const s0 = scanouts + source.stats.updates;
    await new Promise((r) => setTimeout(r, 5000));
    const n = scanouts + source.stats.updates - s0;
    const bytes = copied() - start;
    source.close();
    display.close();
    if (n === 0) throw new Error('the QEMU guest sent no frames');
    return { frames: n, bytes };
  } finally {
    qemu.kill('SIGKILL');
  }
}
