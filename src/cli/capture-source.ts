// The frame source of `screenshot` and `record`: a running QEMU (--qmp) or the built-in guest (--guest), feeding
// a capture session with no window.
import { QemuDisplay } from '../source/qemu/display.js';
import { QemuSource } from '../source/qemu/qemu-source.js';
import { BuiltinGuest } from '../source/builtin-guest.js';
import { runGuestHeadless } from '../pipeline.js';
import type { CaptureSession } from '../capture/session.js';
import { log } from '../log.js';
import { parseCount, parseFormat, parseSize, UsageError } from './args.js';

export const captureSourceHelp = `  source (one of):
      --qmp SOCKET         a QEMU started with -display dbus,p2p=yes and -qmp unix:SOCKET,server=on,wait=off
      --dbus-address ADDR  a QEMU on a bus (-display dbus[,addr=ADDR]); "session": the session bus
      --console N          with --qmp or --dbus-address: the graphic console (default: 0)
      --guest WxH          the built-in guest's test pattern at this size
      --guest-format NAME  with --guest: XRGB8888, ARGB8888, XBGR8888 or ABGR8888 (default: XRGB8888)`;

export const captureSourceOptions = {
  qmp: { type: 'string' }, 'dbus-address': { type: 'string' }, console: { type: 'string' }, guest: { type: 'string' }, 'guest-format': { type: 'string' },
} as const;

export interface CaptureSourceValues {
  qmp?: string;
  'dbus-address'?: string;
  console?: string;
  guest?: string;
  'guest-format'?: string;
}

export interface OpenedSource {
  /** 'qemu' or 'built-in guest'. */
  kind: 'qemu' | 'guest';
  /** Resolves with a reason when the source goes away (QEMU exits). */
  closed: Promise<string>;
  close(): void;
}

export async function openCaptureSource(values: CaptureSourceValues, session: CaptureSession,
  guestFps: number): Promise<OpenedSource> {
  if ([values.qmp, values['dbus-address'], values.guest].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('give one source: --qmp, --dbus-address or --guest');
  }
  if (values.qmp || values['dbus-address']) {
    const display = await QemuDisplay.attach({
      qmpPath: values.qmp, dbusAddress: values['dbus-address'], console: parseCount('--console', values.console, 0, 0, 255),
    });
    const source = new QemuSource(display, session);
    log.info({ vm: display.vm.name, console: display.console }, 'attached to QEMU');
    const closed = new Promise<string>((resolve) => display.once('close', (reason) =>
      resolve(`QEMU closed the display${reason ? `: ${reason.message}` : ''}`)));
    return { kind: 'qemu', closed, close: () => { source.close(); display.close(); } };
  }
  if (values.guest) {
    const { width, height } = parseSize('--guest', values.guest);
    const format = parseFormat('--guest-format', values['guest-format'] ?? 'XRGB8888');
    if (format.bytesPerPixel !== 4) throw new UsageError(`--guest-format ${format.name}: captures take 32-bit formats only`);
    const guest = new BuiltinGuest({ width, height, format, buffers: 3 });
    const run = runGuestHeadless(guest, session, { fps: guestFps });
    return { kind: 'guest', closed: new Promise(() => {}), close: () => { run.stop(); guest.close(); } };
  }
  throw new UsageError('no source given: --qmp SOCKET or --dbus-address ADDR (a running QEMU), or --guest WxH (the built-in guest)');
}
