import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Presenter } from '../present/presenter.js';
import { BuiltinGuest } from '../source/builtin-guest.js';
import { decodePattern } from '../source/test-pattern.js';
import { runGuest } from '../pipeline.js';
import { captureOutput } from '../capture/output-capture.js';
import { encodePng } from '../capture/png.js';
import { log } from '../log.js';
import { fstat } from '../native/fds.js';
import { parseCount, parseFormat, parseSize } from './args.js';

export const demoHelp = `wlscanout demo [options]
  Shows the built-in guest (an animated, self-checking test pattern drawn into a memfd) in a window,
  zero-copy through wl_shm. Without $WAYLAND_DISPLAY it starts a headless weston of its own, shows
  the guest fullscreen, saves a screenshot of what weston shows and checks the pattern in it.

      --size WxH           guest scan-out size (default: 1280x800)
      --format NAME        XRGB8888, ARGB8888, XBGR8888, ABGR8888 or RGB565 (default: XRGB8888)
      --buffers N          scan-out buffers in guest RAM, 2..16 (default: 3)
      --frames N|inf       frames to show (default: inf on your desktop, 120 on the embedded compositor)
      --fullscreen         ask for a fullscreen window
      --screenshot FILE    after the last frame, save the compositor's output as PNG
                           (default on the embedded compositor: wlscanout-demo.png)
      --display NAME       Wayland display name or socket path (default: $WAYLAND_DISPLAY)
      --embedded           start the headless compositor even when $WAYLAND_DISPLAY is set

  Examples: wlscanout demo
            wlscanout demo --size 1920x1080 --format RGB565 --frames 600 --fullscreen`;

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      size: { type: 'string' }, format: { type: 'string' }, buffers: { type: 'string' }, frames: { type: 'string' },
      fullscreen: { type: 'boolean' }, screenshot: { type: 'string' }, display: { type: 'string' },
      embedded: { type: 'boolean' },
    },
  });
  const size = parseSize('--size', values.size ?? '1280x800');
  const format = parseFormat('--format', values.format ?? 'XRGB8888');
  const buffers = parseCount('--buffers', values.buffers, 3, 2, 16);
  const embedded = values.embedded || (!values.display && !process.env.WAYLAND_DISPLAY);
  const frames = parseCount('--frames', values.frames, embedded ? 120 : Infinity);
  const screenshot = values.screenshot ?? (embedded ? 'wlscanout-demo.png' : undefined);
  if (screenshot && frames === Infinity) log.info('the screenshot is taken when the window is closed or interrupted');

  const compositor = embedded ? await (await import('../embedded/compositors.js')).startWeston(size) : null;
  if (compositor) process.stderr.write(`started headless weston ${size.width}x${size.height} at ${compositor.socket}\n`);
  const guest = new BuiltinGuest({ ...size, format, buffers });
  let presenter: Presenter | null = null;
  try {
    presenter = await Presenter.open({
      display: compositor?.socket ?? values.display, title: `wlscanout demo ${size.width}x${size.height} ${format.name}`,
      appId: 'wlscanout', fullscreen: values.fullscreen || embedded,
    });
    const p = presenter;
    // A lost compositor also surfaces through run.done or the capture below, which report it.
    p.on('error', (e) => log.debug({ err: e.message }, 'presenter error'));
    const run = runGuest(guest, p, frames);
    const stop = (): void => run.stop();
    process.once('SIGINT', stop);
    p.once('close', stop);
    try {
      await run.done;
    } finally {
      process.off('SIGINT', stop);
    }
    const ram = fstat(guest.memfd);
    const zeroCopy = [...p.buffers.pools.keys()].every((key) => key === `${ram.dev}:${ram.ino}`);
    process.stderr.write(`shown ${p.stats.framesCommitted} frames (${p.stats.framesPresented} presented), ` +
      `${p.buffers.stats.buffersCreated} wl_buffers on ${p.buffers.stats.poolsCreated} pool(s)` +
      `${zeroCopy ? ' made on the guest memfd itself (zero-copy)' : ''}\n`);
    if (!screenshot) return 0;
    const image = await captureOutput(p.connection, p.globals);
    const file = resolve(screenshot);
    writeFileSync(file, encodePng(image));
    process.stdout.write(`${file}\n`);
    if (!embedded) return 0;
    const decoded = decodePattern(image, { x: 0, y: 0, ...size });
    process.stderr.write(`screenshot shows guest frame ${decoded.frame}: checksum ${decoded.ok ? 'matches' : 'MISMATCH'}\n`);
    return decoded.ok ? 0 : 1;
  } finally {
    presenter?.close();
    guest.close();
    await compositor?.stop();
  }
}
