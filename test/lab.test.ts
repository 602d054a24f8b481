// The lab tier: boots the project's lab VM (lab/boot.sh: its own kernel with udmabuf, vgem, sw_sync, under QEMU
// TCG, the host root over 9p) and runs lab/tests/*.lab.test.ts inside, where dmabufs and fences are real.
// A lab that cannot run fails here, loudly: it is never skipped.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { labKernel } from './lab-kernel.js';

const root = path.join(import.meta.dirname, '..');

interface JsonReport {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  testResults: { name: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[];
}

describe('lab tier (inside the lab VM)', () => {
  it('passes every lab test, none skipped', async () => {
    labKernel(); // builds it if this machine has none yet (about 7 minutes), or fails saying why
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-lab-out-'));
    const logPath = path.join(out, 'serial.log');
    const log = fs.createWriteStream(logPath);
    const vm = spawn(path.join(root, 'lab/boot.sh'), ['--out', out, '--timeout', '1500', '--', 'lab/run-tests.sh'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    vm.stdout.pipe(log);
    vm.stderr.pipe(log);
    const status = await new Promise<number | null>((resolve) => vm.once('exit', (code) => resolve(code)));
    await new Promise((r) => log.end(r));
    const serial = fs.readFileSync(logPath, 'utf8');
    const resultsPath = path.join(out, 'lab-results.json');
    expect(fs.existsSync(resultsPath), `the lab wrote no results (status ${status}); serial log:\n${serial.slice(-6000)}`).toBe(true);
    const report = JSON.parse(fs.readFileSync(resultsPath, 'utf8')) as JsonReport;
    const lines = report.testResults.flatMap((f) => f.assertionResults.map((a) => `${a.status.padEnd(7)} ${a.fullName}` +
      (a.failureMessages.length ? `\n        ${a.failureMessages[0].split('\n')[0]}` : '')));
    process.stdout.write(`lab tier (serial log ${logPath}):\n${lines.join('\n')}\n`);
    expect(report.numFailedTests, lines.join('\n')).toBe(0);
    expect(report.numPendingTests, 'skipped lab tests').toBe(0);
    expect(report.numPassedTests).toBe(report.numTotalTests);
    expect(report.numPassedTests).toBeGreaterThanOrEqual(10);
    expect(status, serial.slice(-3000)).toBe(0);
  }, 30 * 60_000);
});
