import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Connection } from '../wayland/connection.js';
import { bindGlobals } from '../present/globals.js';
import { captureOutput } from '../capture/output-capture.js';
import { encodePng, toRgba } from '../capture/png.js';
import { CaptureSession } from '../capture/session.js';
import { allocateShmBuffer } from '../capture/shm-lender.js';
import { formatByName } from '../formats.js';
import { parseCount, UsageError } from './args.js';
import { captureSourceHelp, captureSourceOptions, openCaptureSource } from './capture-source.js';

export const screenshotHelp = `wlscanout screenshot (--qmp SOCKET | --dbus-address ADDR | --guest WxH | --compositor) [options]
  Saves a guest frame as a PNG, at the guest's own resolution, straight from the guest's scan-out (not
  from a window). With --compositor it saves what the compositor shows on an output instead
  (wlr-screencopy, or weston_screenshooter when weston runs with --debug).

${captureSourceHelp}
      --compositor         what the compositor shows (with --output N, --display NAME)

  -o, --output-file FILE   PNG to write (default: wlscanout-screenshot.png)
      --timeout SECONDS    how long to wait for the guest's first frame (default: 10)
      --output N           with --compositor: output index, in the compositor's order (default: 0)
      --display NAME       with --compositor: Wayland display (default: $WAYLAND_DISPLAY)

  Examples: wlscanout screenshot --qmp /tmp/vm.qmp -o guest.png
            wlscanout screenshot --guest 1280x800 -o pattern.png
            wlscanout screenshot --compositor -o desktop.png`;

export async function screenshotCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      ...captureSourceOptions,
      compositor: { type: 'boolean' },
      'output-file': { type: 'string', short: 'o' },
      timeout: { type: 'string' },
      output: { type: 'string' },
      display: { type: 'string' },
    },
  });
  const file = resolve(values['output-file'] ?? 'wlscanout-screenshot.png');
  if (values.compositor) {
    if (values.qmp || values.guest) throw new UsageError('--compositor takes no guest source (--qmp, --guest)');
    return compositorShot(file, parseCount('--output', values.output, 0, 0, 63), values.display);
  }
  if (values.output !== undefined || values.display !== undefined) throw new UsageError('--output and --display go with --compositor');
  const timeoutMs = parseCount('--timeout', values.timeout, 10, 1, 3600) * 1000;
  const session = new CaptureSession();
  const source = await openCaptureSource(values, session, 60);
  let timer: NodeJS.Timeout | undefined;
  try {
    const constraints = await Promise.race([
      session.waitForConstraints(),
      source.closed.then((why) => { throw new Error(`no frame: ${why}`); }),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no guest frame within ${timeoutMs / 1000} s`)), timeoutMs); }),
    ]);
    const format = formatByName('XRGB8888')!;
    const owned = allocateShmBuffer(constraints.width, constraints.height, format);
    try {
      const result = await session.capture(session.lend(owned.description));
      const data = toRgba(owned.bytes, result.width, result.height, result.width * 4, format);
      writeFileSync(file, encodePng({ width: result.width, height: result.height, data }));
      process.stdout.write(`${file} (${result.width}x${result.height}, guest frame ${result.seq})\n`);
    } finally {
      owned.close();
    }
    return 0;
  } finally {
    clearTimeout(timer);
    session.stop();
    source.close();
  }
}

async function compositorShot(file: string, index: number, display: string | undefined): Promise<number> {
  const connection = new Connection(display);
  try {
    const globals = await bindGlobals(connection);
    const image = await captureOutput(connection, globals, index);
    writeFileSync(file, encodePng(image));
    process.stdout.write(`${file} (${image.width}x${image.height}, via ${image.method})\n`);
    return 0;
  } finally {
    connection.close();
  }
}
