// Command lines, fuzzed: the option parsers of src/cli/args.ts in-process, and the built command (dist/) run with
// random argument vectors. No run can reach a compositor: $WAYLAND_DISPLAY and every --display name a socket that
// does not exist, and --embedded (which would start a headless weston) is never generated.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FORMATS } from '../../src/formats.js';
import { UsageError, parseCount, parseFormat, parseSize } from '../../src/cli/args.js';
import { Rng, reproduce, show } from './rng.js';

const CLI = join(import.meta.dirname, '../../dist/cli/main.js');
const NOWHERE = '/nonexistent/wlscanout-fuzz/wayland-0';

const NUMBER_TOKENS = ['0', '1', '2', '3', '15', '16', '63', '64', '65', '255', '256', '800', '1280', '16384', '16385', '99999999999',
  '1e9', '1e3', '0x10', '-1', '+2', '1.5', '.5', '3.', ' 3', '3 ', '', ' ', 'inf', 'infinite', 'Infinity', 'NaN', 'x', 'X', '٣',
  '00064', '9007199254740993', '1_000', '\t2', '2\n'];

/** A random option value: glued tokens, often number-like. */
function value(rng: Rng): string {
  const parts = rng.weighted([[4, 1], [3, 2], [2, 3], [1, 0]]);
  let s = '';
  for (let i = 0; i < parts; i++) {
    s += rng.weighted<string>([[6, rng.pick(NUMBER_TOKENS)], [2, rng.pick(['x', 'X', '*', '-', ',', 'e', ' '])],
      [1, rng.pick(FORMATS).name], [1, rng.string(6, 'abcxyzRGBX0123456789-_.=é\u0000')]]);
  }
  return s;
}

function sizeValue(rng: Rng): string {
  return rng.weighted([[3, `${rng.pick(NUMBER_TOKENS)}x${rng.pick(NUMBER_TOKENS)}`], [3, `${rng.int(0, 20000)}x${rng.int(0, 20000)}`], [2, value(rng)]]);
}

function formatValue(rng: Rng): string {
  const name = rng.pick(FORMATS).name;
  return rng.weighted([[3, name], [2, rng.bool() ? name.toLowerCase() : ` ${name}`], [1, name.slice(0, -1)], [2, value(rng)]]);
}

const isWholeInRange = (n: unknown, min: number, max: number): boolean => typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;

/** In-process parser cases; returns a summary. Throws with the seed and case on a broken invariant. */
export function runCliParserFuzz(indices: number[]): string {
  let accepted = 0;
  let refused = 0;
  for (const index of indices) {
    const rng = Rng.forCase('cli', index);
    const parser = rng.pick(['size', 'count', 'format'] as const);
    const option = rng.pick(['--size', '--buffers', '--frames', '--console', '--output', '--format', '--x']);
    let input: unknown[] = [];
    const fail = (what: string): never => {
      throw new Error(`${reproduce('cli', index)}\n  ${parser}(${input.map((v) => show(v)).join(', ')}): ${what}`);
    };
    try {
      if (parser === 'size') {
        const v = sizeValue(rng);
        input = [option, v];
        const r = parseSize(option, v);
        if (!isWholeInRange(r.width, 64, 16384) || !isWholeInRange(r.height, 16, 16384)) fail(`accepted out of range: ${show(r)}`);
        if (`${r.width}x${r.height}` !== v.replace(/^0+(?=\d)/, '').replace(/x0+(?=\d)/, 'x')) fail(`${show(r)} is not what '${v}' says`);
      } else if (parser === 'count') {
        const [min, max] = rng.pick([[1, 1e9], [2, 16], [0, 255]] as const);
        const fallback = rng.int(min, max);
        const v = rng.bool(0.1) ? undefined : value(rng);
        input = [option, v, fallback, min, max];
        const r = parseCount(option, v, fallback, min, max);
        if (v === undefined) {
          if (r !== fallback) fail(`no value gave ${r}, not the fallback ${fallback}`);
        } else if (v === 'inf' || v === 'infinite') {
          if (r !== Infinity) fail(`'${v}' gave ${r}`);
        } else {
          if (!isWholeInRange(r, min, max)) fail(`accepted ${r}, outside ${min}..${max}`);
          if (v.trim() === '') fail(`an empty value was taken as ${r}`);
        }
      } else {
        const v = formatValue(rng);
        input = [option, v];
        const r = parseFormat(option, v);
        if (!FORMATS.includes(r) || r.name.toUpperCase() !== v.toUpperCase()) fail(`'${v}' gave ${r.name}`);
      }
      accepted++;
    } catch (e) {
      if (!(e instanceof UsageError)) {
        if ((e as Error).message.startsWith('fuzz seed')) throw e;
        fail(`threw ${(e as Error).name}: ${(e as Error).message}`);
      }
      if (!(e as Error).message.includes(option)) fail(`the UsageError does not name ${option}: ${(e as Error).message}`);
      refused++;
    }
  }
  return `${indices.length} cases: ${accepted} accepted, ${refused} UsageErrors`;
}

const COMMANDS = ['demo', 'show', 'screenshot', 'doctor', 'bogus', 'Demo', '', '-', 'help'];
const OPTIONS: readonly (readonly [string, ((rng: Rng) => string) | null])[] = [
  ['--size', sizeValue], ['--format', formatValue], ['--buffers', value], ['--frames', value], ['--fullscreen', null],
  ['--screenshot', () => 'fuzz-shot.png'], ['--qmp', () => '/nonexistent/wlscanout-fuzz/qmp.sock'], ['--console', value],
  ['--no-dmabuf', null], ['--json', null], ['-o', () => 'fuzz-out.png'], ['--output', value], ['--output-file', () => 'x.png'],
  ['--display', () => NOWHERE], ['--log-level', (rng) => rng.pick(['debug', 'silent', 'warn', 'loud', '', 'TRACE'])],
  ['--help', null], ['-h', null], ['--version', null], ['--bogus', null], ['--', null], ['-x', null], ['--size=', sizeValue],
  ['--frames=', value], ['--log-level=', (rng) => rng.pick(['info', 'nope', ''])],
];

function argv(rng: Rng): string[] {
  const args: string[] = [];
  if (rng.bool(0.2)) args.push(...rng.pick([['--log-level', rng.pick(['error', 'silent', 'bad'])], ['--log-level=fatal'], ['--version'], ['-h'], ['--zap']]));
  if (rng.bool(0.95)) args.push(rng.pick(COMMANDS));
  const n = rng.weighted([[2, 0], [4, 1], [3, 2], [2, 3], [1, 5]]);
  for (let i = 0; i < n; i++) {
    const [name, val] = rng.pick(OPTIONS);
    if (name.endsWith('=')) args.push(name + (val ? val(rng) : ''));
    else if (val && rng.bool(0.9)) args.push(name, val(rng));
    else args.push(name);
    if (rng.bool(0.1)) args.push(value(rng)); // a stray positional
  }
  return args.map((a) => a.replaceAll('\0', '')); // an argv string cannot hold NUL

}

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }

function run(args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, WAYLAND_DISPLAY: NOWHERE, WLSCANOUT_LOG_LEVEL: 'error' };
  delete env.WAYLAND_SOCKET;
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
  }));
}

/** Spawned runs of the built command, two at a time; returns a summary. */
export async function runCliSpawnFuzz(indices: number[]): Promise<string> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (make test does; or npx tsc -p tsconfig.json)`);
  const cwd = mkdtempSync(join(tmpdir(), 'wlscanout-fuzz-cli-'));
  const statuses = new Map<string, number>();
  let slowest = 0;
  try {
    const queue = [...indices];
    const worker = async (): Promise<void> => {
      for (let index = queue.shift(); index !== undefined; index = queue.shift()) {
        const args = argv(Rng.forCase('cli-run', index));
        const r = await run(args, cwd, 20_000);
        slowest = Math.max(slowest, r.ms);
        const fail = (what: string): never => {
          throw new Error(`${reproduce('cli-run', index)}\n  wlscanout ${args.map((a) => show(a)).join(' ')}\n  ${what}\n` +
            `  exit ${r.code} signal ${r.signal} after ${r.ms} ms\n  stdout: ${show(r.stdout.slice(0, 500))}\n  stderr: ${show(r.stderr.slice(0, 2000))}`);
        };
        if (r.code === null || ![0, 1, 2].includes(r.code)) fail('exit status not 0, 1 or 2');
        const lines = r.stderr.split('\n').filter((l) => l !== '');
        const ours = lines.filter((l) => l.startsWith('wlscanout: '));
        if (r.code === 2) {
          if (/^\s+at /m.test(r.stderr)) fail('a stack trace for a usage error');
          if (ours.length !== 1 || lines[0] !== ours[0]) fail('not one `wlscanout: ...` line first');
          if (lines.some((l) => !l.startsWith('wlscanout: ') && l !== "run 'wlscanout --help' for usage")) fail('more than the message and the hint');
        }
        if (r.code === 1) {
          if (ours.length !== 1) fail('a failure without exactly one `wlscanout: ...` line');
          if (/^\s+at /m.test(r.stderr)) fail('a stack trace on stderr');
        }
        if (r.code === 0 && r.stdout === '' && !args.includes('doctor')) fail('success with nothing on stdout');
        statuses.set(`exit ${r.code}`, (statuses.get(`exit ${r.code}`) ?? 0) + 1);
      }
    };
    await Promise.all([worker(), worker()]);
    // nothing may be written where it runs: no compositor was reachable, so no screenshot either
    const left = readdirSync(cwd);
    if (left.length) throw new Error(`fuzz seed: the command runs left files behind: ${left.join(', ')}`);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
  return `${indices.length} runs, slowest ${slowest} ms: ${[...statuses].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`;
}
