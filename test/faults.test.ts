// Faults with a real QEMU 7.2 (-display dbus,p2p=yes, gl=off): QEMU killed (SIGKILL) or our side of its D-Bus
// display closed at seeded random moments while it is sending frames to a real presenter on weston. Each round
// must end with the display closed, the presenter still alive and the process's fds back to where they were.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { Presenter } from '../src/present/presenter.js';
import { QemuDisplay } from '../src/source/qemu/display.js';
import { QemuSource } from '../src/source/qemu/qemu-source.js';
import { waitForQmp } from './qemu-helpers.js';
import { listOpenFds } from '../src/native/fds.js';
import { sleep } from './helpers.js';

const ROUNDS = Number(process.env.WLSCANOUT_FAULT_ROUNDS ?? 100);
const SEED = Number(process.env.WLSCANOUT_FAULT_SEED ?? 20261121);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('QEMU faults (real QEMU, gl=off)', () => {
  let weston: Compositor;
  let dir: string;
  beforeAll(async () => {
    weston = await startWeston({ width: 720, height: 400 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-faults-'));
  }, 30_000);
  afterAll(async () => {
    await weston?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`survives ${ROUNDS} rounds of QEMU killed or its display closed mid-stream (seed ${SEED})`, async () => {
    const random = rng(SEED);
    const before = listOpenFds();
    const presenter = await Presenter.open({ display: weston.socket, title: 'faults', fullscreen: true });
    const baseline = listOpenFds();
    const outcomes = { killed: 0, closedByUs: 0, beforeAttach: 0, framesShown: 0 };
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const qmpPath = path.join(dir, `r${round}.qmp`);
        const qemu: ChildProcess = spawn('qemu-system-x86_64', ['-display', 'dbus,p2p=yes', '-vga', 'std', '-m', '32', '-nodefaults',
          '-no-user-config', '-net', 'none', '-qmp', `unix:${qmpPath},server=on,wait=off`], { stdio: 'ignore' });
        const exited = new Promise((r) => qemu.once('exit', r));
        const when = random() * 600; // ms after attach
        const closeOurSide = random() < 0.5;
        let display: QemuDisplay | null = null;
        let source: QemuSource | null = null;
        const where = `round ${round} (seed ${SEED}, ${closeOurSide ? 'close' : 'kill'} after ${when.toFixed(0)} ms)`;
        try {
          await waitForQmp(qmpPath);
          if (random() < 0.1) { // sometimes QEMU dies before we attach at all
            qemu.kill('SIGKILL');
            await exited;
            await expect(QemuDisplay.attach({ qmpPath, timeoutMs: 2000 }), where).rejects.toThrow();
            outcomes.beforeAttach++;
            continue;
          }
          display = await QemuDisplay.attach({ qmpPath, timeoutMs: 5000 });
          source = new QemuSource(display, presenter);
          const closed = new Promise((r) => display!.once('close', r));
          await sleep(when);
          if (closeOurSide) {
            display.close();
            outcomes.closedByUs++;
          } else {
            qemu.kill('SIGKILL');
            await Promise.race([closed, sleep(5000).then(() => { throw new Error(`${where}: no 'close' within 5 s`); })]);
            outcomes.killed++;
          }
          expect(display.closed, where).toBe(true);
          outcomes.framesShown += source.stats.scanouts + source.stats.updates;
        } finally {
          source?.close();
          display?.close();
          qemu.kill('SIGKILL');
          await exited;
        }
        expect(presenter.connection.failure, where).toBe(null);
      }
      await sleep(100);
      // The window still shows the last frame, so that frame's surface memfd stays open until the presenter lets
      // go of it (frames borrow their memory until released); nothing else may be left from 100 rounds.
      expect(listOpenFds().filter((fd) => !baseline.includes(fd)).length, 'fds left open').toBeLessThanOrEqual(2);
      console.log(`faults: ${JSON.stringify(outcomes)}`);
      expect(outcomes.killed + outcomes.closedByUs + outcomes.beforeAttach).toBe(ROUNDS);
    } finally {
      presenter.close();
    }
    await sleep(100);
    expect(listOpenFds().filter((fd) => !before.includes(fd)), 'fds left open after the presenter closed').toEqual([]);
  }, 600_000);
});
