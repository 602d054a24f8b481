import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Connection } from '../wayland/connection.js';
import { bindGlobals } from '../present/globals.js';
import { captureOutput } from '../capture/output-capture.js';
import { encodePng } from '../capture/png.js';
import { parseCount } from './args.js';

export const screenshotHelp = `wlscanout screenshot [options]
  Saves what the compositor shows on an output as a PNG (wlr-screencopy, or weston_screenshooter
  when weston runs with --debug).

  -o, --output-file FILE   PNG to write (default: wlscanout-screenshot.png)
      --output N           output index, in the compositor's order (default: 0)
      --display NAME       Wayland display name or socket path (default: $WAYLAND_DISPLAY)

  Example: wlscanout screenshot -o desktop.png`;

export async function screenshotCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      'output-file': { type: 'string', short: 'o' },
      output: { type: 'string' },
      display: { type: 'string' },
    },
  });
  const file = resolve(values['output-file'] ?? 'wlscanout-screenshot.png');
  const index = parseCount('--output', values.output, 0, 0, 63);
  const connection = new Connection(values.display);
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
