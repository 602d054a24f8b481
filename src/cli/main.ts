#!/usr/bin/env node
// wlscanout: show, use and record a virtual machine's display on Wayland.
import { readFileSync } from 'node:fs';
import { setLogLevel, log } from '../log.js';
import { UsageError } from './args.js';
import { demoCommand, demoHelp } from './demo.js';
import { screenshotCommand, screenshotHelp } from './screenshot.js';
import { doctorCommand, doctorHelp } from './doctor.js';
import { showCommand, showHelp } from './show.js';
import { recordCommand, recordHelp } from './record.js';

const commands: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  demo: { run: demoCommand, help: demoHelp },
  screenshot: { run: screenshotCommand, help: screenshotHelp },
  doctor: { run: doctorCommand, help: doctorHelp },
  show: { run: showCommand, help: showHelp },
  record: { run: recordCommand, help: recordHelp },
};

const usage = `usage: wlscanout [--log-level LEVEL] <command> [options]

commands:
  demo          show the built-in guest's test pattern in a window (zero-copy wl_shm)
  show          show a running QEMU's display (-display dbus) in a window per console, with input
  screenshot    save a guest frame (or what the compositor shows) as a PNG
  record        record the guest's frames to a video (ffmpeg) or raw file, or --verify them
  doctor        report what the host and compositor offer and which paths will be used

global options:
  --log-level LEVEL   fatal, error, warn (default), info, debug, trace or silent
                      (also $WLSCANOUT_LOG_LEVEL); logs go to stderr, pretty on a terminal, JSON otherwise
  -h, --help          this help; \`wlscanout <command> --help\` for a command's options
  --version           print the version

exit status: 0 success, 1 failure (e.g. the compositor went away), 2 bad command line, 3 (show) QEMU went away`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  while (args[0]?.startsWith('-')) {
    const flag = args.shift()!;
    if (flag === '-h' || flag === '--help') { process.stdout.write(`${usage}\n`); return 0; }
    if (flag === '--version') { process.stdout.write(`${version()}\n`); return 0; }
    if (flag === '--log-level' || flag.startsWith('--log-level=')) {
      const level = flag.includes('=') ? flag.slice(flag.indexOf('=') + 1) : args.shift();
      if (!level) throw new UsageError('--log-level needs a value');
      try { setLogLevel(level); } catch (e) { throw new UsageError((e as Error).message); }
      continue;
    }
    throw new UsageError(`unknown option '${flag}'`);
  }
  const name = args.shift();
  if (!name) throw new UsageError('no command given');
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command '${name}' (commands: ${Object.keys(commands).join(', ')})`);
  if (args.includes('-h') || args.includes('--help')) { process.stdout.write(`${command.help}\n`); return 0; }
  return command.run(args);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: Error & { code?: string }) => {
    const usageProblem = e instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`wlscanout: ${e.message}\n`);
    if (usageProblem) process.stderr.write(`run 'wlscanout --help' for usage\n`);
    else log.debug({ err: e }, 'failed');
    process.exitCode = usageProblem ? 2 : 1;
  },
);
