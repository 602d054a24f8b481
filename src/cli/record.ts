import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CaptureSession } from '../capture/session.js';
import { recordFrames, type RecordStats } from '../capture/recorder.js';
import { VideoWriter } from '../capture/video-writer.js';
import { PatternVerifier, type VerifyReport } from '../capture/pattern-verifier.js';
import { formatByFourcc } from '../formats.js';
import { parseCount, UsageError } from './args.js';
import { captureSourceHelp, captureSourceOptions, openCaptureSource } from './capture-source.js';

export const recordHelp = `wlscanout record (--qmp SOCKET | --dbus-address ADDR | --guest WxH) [-o FILE] [options]
  Records the guest's frames at its own resolution, straight from its scan-out (no window needed).
  A QEMU guest is sampled at --fps (frames the guest drew in between count as dropped, unchanged
  ones as repeated); the built-in guest draws each frame after the previous one was recorded, so
  every one of its frames is in the file. Ctrl-C (SIGINT) or SIGTERM ends the file cleanly.

${captureSourceHelp}

  -o, --output-file FILE   .raw: the frames as captured (XRGB8888 rows, no header); .y4m: YUV 4:4:4
                           through ffmpeg; anything else through Debian's ffmpeg, by extension:
                           .mkv/.nut/.avi lossless RGB H.264 (libx264rgb), .mp4 H.264, .webm VP9
      --codec NAME         ffmpeg video codec instead of the extension's default (e.g. libx264rgb)
      --frames N|inf       stop after N frames (default: inf, until Ctrl-C)
      --fps F              sampling rate for QEMU, drawing rate for the built-in guest, and the
                           file's frame rate (default: 60)
      --verify             check each frame's test pattern (frame number and checksum, as the built-in
                           guest draws it): report mismatches, missing frames and flush-to-capture
                           latency; exit status 1 when any frame is wrong or missing. -o is optional.
      --inject LIST        faults for checking --verify, e.g. drop=10,corrupt=20: discard recorded
                           frame 10 and flip a pixel of frame 20 (counted from 0)
      --no-progress        no progress line on stderr (it is shown only on a terminal anyway)

  Examples: wlscanout record --qmp /tmp/vm.qmp -o guest.mkv
            wlscanout record --guest 1920x1080 --frames 600 -o pattern.mp4
            wlscanout record --guest 1280x800 --frames 300 --verify`;

function parseInject(value: string | undefined): { drop: Set<number>; corrupt: Set<number> } | undefined {
  if (value === undefined) return undefined;
  const inject = { drop: new Set<number>(), corrupt: new Set<number>() };
  for (const item of value.split(',')) {
    const m = /^(drop|corrupt)=(\d+)$/.exec(item.trim());
    if (!m) throw new UsageError(`--inject item '${item}' is not drop=N or corrupt=N`);
    inject[m[1] as 'drop' | 'corrupt'].add(Number(m[2]));
  }
  return inject;
}

function progressLine(stats: RecordStats): string {
  const seconds = stats.elapsedMs / 1000;
  const rate = seconds > 0 ? stats.recorded / seconds : 0;
  return `\r${stats.recorded} frames  ${stats.dropped} dropped  ${stats.repeated} repeated  ${rate.toFixed(1)} fps  ${seconds.toFixed(1)} s `;
}

function verifyLines(report: VerifyReport): string {
  const list = (xs: number[]): string => (xs.length > 10 ? `${xs.slice(0, 10).join(', ')}, …` : xs.join(', '));
  const lines = [`verified ${report.frames} frames: ${report.mismatches.length} mismatched, ${report.missing.length} missing, ` +
    `${report.repeated.length} repeated`];
  if (report.mismatches.length) lines.push(`  mismatched (checksum wrong): frame ${list(report.mismatches)}`);
  if (report.missing.length) lines.push(`  missing: frame ${list(report.missing)}`);
  if (report.repeated.length) lines.push(`  repeated or out of order: frame ${list(report.repeated)}`);
  if (report.latencyMs) {
    const l = report.latencyMs;
    lines.push(`  latency guest flush → captured: p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, max ${l.max.toFixed(2)} ms`);
  }
  return `${lines.join('\n')}\n`;
}

export async function recordCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      ...captureSourceOptions,
      'output-file': { type: 'string', short: 'o' }, codec: { type: 'string' }, frames: { type: 'string' },
      fps: { type: 'string' }, verify: { type: 'boolean' }, inject: { type: 'string' }, 'no-progress': { type: 'boolean' },
    },
  });
  const file = values['output-file'] ? resolve(values['output-file']) : null;
  if (!file && !values.verify) throw new UsageError('record needs -o FILE (or --verify to check frames without saving them)');
  const frames = parseCount('--frames', values.frames, Infinity);
  const fps = parseCount('--fps', values.fps, 60, 1, 1000);
  const inject = parseInject(values.inject);
  if (inject && !values.verify) throw new UsageError('--inject is for checking --verify: give --verify too');
  const verifier = values.verify ? new PatternVerifier() : undefined;
  const session = new CaptureSession();
  const source = await openCaptureSource(values, session, fps);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  void source.closed.then(() => stop.abort());
  const progress = process.stderr.isTTY && !values['no-progress'];
  try {
    const stats = await recordFrames(session, {
      mode: source.kind === 'guest' ? 'every-frame' : 'sample', fps, frames, verifier, inject, signal: stop.signal,
      openWriter: file ? (width, height, fourcc) => new VideoWriter({
        file, width, height, format: formatByFourcc(fourcc)!, fps, codec: values.codec,
      }) : undefined,
      onProgress: progress ? (s) => process.stderr.write(progressLine(s)) : undefined,
    });
    if (progress) process.stderr.write('\n');
    const rate = stats.elapsedMs > 0 ? (stats.recorded * 1000) / stats.elapsedMs : 0;
    process.stdout.write(`${file ?? 'no file'}: ${stats.recorded} frames, ${stats.dropped} dropped, ${stats.repeated} repeated, ` +
      `${rate.toFixed(1)} fps; ${stats.ended}\n`);
    if (!verifier) return 0;
    const report = verifier.report();
    process.stdout.write(verifyLines(report));
    return report.mismatches.length || report.missing.length || report.frames === 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    session.stop();
    source.close();
  }
}
