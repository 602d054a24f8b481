// Captures what the compositor shows on an output, through the compositor's own capture protocol:
// wlr-screencopy (sway, wlroots) or weston_screenshooter (weston --debug).
import type { Connection } from '../wayland/connection.js';
import type { Globals } from '../present/globals.js';
import type { WlBuffer, WlOutput, ZwlrScreencopyFrameV1 } from '../wayland/protocols/index.js';
import { ZwlrScreencopyFrameV1Flags } from '../wayland/protocols/index.js';
import { memfdCreate, ftruncate, pread, close } from '../native/fds.js';
import { formatByShm, formatByName, type PixelFormat } from '../formats.js';
import { toRgba, type RgbaImage } from './png.js';

export interface OutputCapture extends RgbaImage {
  method: 'wlr-screencopy' | 'weston-screenshooter';
}

export interface ShmTarget {
  fd: number;
  release(): void;
  buffer: WlBuffer;
}

/** A wl_shm buffer over a memfd of its own, for the compositor to copy an output into. */
export function shmTarget(globals: Globals, width: number, height: number, stride: number, format: PixelFormat): ShmTarget {
  const fd = memfdCreate('wlscanout-capture', true);
  try {
    ftruncate(fd, stride * height);
    const pool = globals.shm.createPool(fd, stride * height);
    const buffer = pool.createBuffer(0, width, height, stride, format.shm);
    pool.destroy();
    return { fd, buffer, release: () => { if (!buffer.destroyed) buffer.destroy(); close(fd); } };
  } catch (e) {
    close(fd);
    throw e;
  }
}

function readImage(target: ShmTarget, width: number, height: number, stride: number, format: PixelFormat,
  yInvert: boolean): RgbaImage {
  let bytes = pread(target.fd, stride * height, 0);
  if (yInvert) {
    const flipped = Buffer.alloc(bytes.length);
    for (let y = 0; y < height; y++) bytes.copy(flipped, y * stride, (height - 1 - y) * stride, (height - y) * stride);
    bytes = flipped;
  }
  return { width, height, data: toRgba(bytes, width, height, stride, format) };
}

export interface ScreencopyShm { width: number; height: number; stride: number; format: PixelFormat }

/** Calls `copy` once the compositor has offered the frame's buffer types (v3: at buffer_done), with the 32-bit
 *  wl_shm one, or null when it offered none. */
export function onShmOffered(frame: ZwlrScreencopyFrameV1, copy: (shm: ScreencopyShm | null) => void): void {
  let shm: ScreencopyShm | null = null;
  frame.on({
    buffer: (format, width, height, stride) => {
      const f = formatByShm(format);
      if (f && f.bytesPerPixel === 4) shm = { width, height, stride, format: f };
      if (frame.version < 3) copy(shm);
    },
    bufferDone: () => copy(shm),
  });
}

function screencopy(connection: Connection, globals: Globals, output: WlOutput): Promise<RgbaImage> {
  return new Promise((resolve, reject) => {
    const frame = globals.screencopyManager!.captureOutput(0, output);
    let shm: ScreencopyShm | null = null;
    let target: ShmTarget | null = null;
    let yInvert = false;
    onShmOffered(frame, (offered) => {
      if (!offered) return reject(new Error('wlr-screencopy offered no wl_shm buffer format we know'));
      shm = offered;
      target = shmTarget(globals, shm.width, shm.height, shm.stride, shm.format);
      frame.copy(target.buffer);
    });
    const onError = (e: Error): void => reject(e);
    connection.once('error', onError);
    frame.on({
      flags: (flags) => { yInvert = (flags & ZwlrScreencopyFrameV1Flags.y_invert) !== 0; },
      ready: () => {
        connection.off('error', onError);
        try {
          resolve(readImage(target!, shm!.width, shm!.height, shm!.stride, shm!.format, yInvert));
        } finally {
          frame.destroy();
          target!.release();
        }
      },
      failed: () => {
        connection.off('error', onError);
        frame.destroy();
        target?.release();
        reject(new Error('the compositor failed the wlr-screencopy capture'));
      },
    });
  });
}

function westonShot(connection: Connection, globals: Globals, output: WlOutput, width: number, height: number): Promise<RgbaImage> {
  return new Promise((resolve, reject) => {
    const format = formatByName('ARGB8888')!;
    const stride = width * 4;
    const target = shmTarget(globals, width, height, stride, format);
    const onError = (e: Error): void => { target.release(); reject(e); };
    connection.once('error', onError);
    const shooter = globals.screenshooter()!;
    shooter.on({
      done: () => {
        connection.off('error', onError);
        try {
          // weston writes opaque pixels but leaves alpha undefined: read them as XRGB.
          resolve(readImage(target, width, height, stride, formatByName('XRGB8888')!, false));
        } finally {
          target.release();
        }
      },
    });
    shooter.takeShot(output, target.buffer);
  });
}

/** Captures output `index` (in registry order) of the compositor behind `connection`. */
export async function captureOutput(connection: Connection, globals: Globals, index = 0): Promise<OutputCapture> {
  const outputs = [...globals.outputs.values()];
  const entry = outputs[index];
  if (!entry) throw new Error(`the compositor has ${outputs.length} output(s), no output ${index}`);
  if (globals.screencopyManager) {
    return { method: 'wlr-screencopy', ...(await screencopy(connection, globals, entry.output)) };
  }
  if (globals.all.some((g) => g.interface === 'weston_screenshooter')) {
    return { method: 'weston-screenshooter', ...(await westonShot(connection, globals, entry.output, entry.width, entry.height)) };
  }
  throw new Error('the compositor offers no capture protocol (zwlr_screencopy_manager_v1, or weston_screenshooter with weston --debug)');
}
