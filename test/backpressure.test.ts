// Peers that stop reading. A compositor stopped (SIGSTOP) while a guest streams frames: the presenter sends
// nothing until the compositor asks for the next frame (frame callbacks), so nothing piles up in our process or
// in libwayland's 4 KB buffer; when it resumes, frames flow again. A D-Bus peer (QEMU) that stops reading while
// we keep sending (input, replies): the queue is bounded, then the connection is dropped with the reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSway, type Compositor } from '../src/embedded/compositors.js';
import { runGuest } from '../src/pipeline.js';
import { makeGuest, openPresenter, sleep, waitFor } from './helpers.js';
import { listOpenFds } from '../src/native/fds.js';
import { connectPair } from './dbus-peer.js';

describe('back-pressure: a compositor that stops reading (sway, SIGSTOP)', () => {
  let sway: Compositor;
  beforeAll(async () => { sway = await startSway({ width: 1280, height: 800, refreshHz: 240 }); }, 30_000);
  afterAll(async () => { await sway?.stop(); });

  it('holds still without growing while the compositor is stopped, and streams again when it continues', async () => {
    const presenter = await openPresenter(sway.socket, { fullscreen: true });
    const guest = makeGuest(1280, 800);
    const run = runGuest(guest, presenter);
    let error: Error | null = null;
    presenter.on('error', (e) => { error = e; });
    try {
      await waitFor('frames flowing', () => presenter.stats.framesCommitted > 50, 10_000);
      sway.kill('SIGSTOP');
      await sleep(300); // whatever was in flight settles
      const committed = presenter.stats.framesCommitted;
      const drawn = guest.stats.framesDrawn;
      const rss = process.memoryUsage().rss;
      await sleep(3000);
      // Stopped: no commits, at most a frame or two drawn, and no memory growth (a runaway queue of 240 frames a
      // second of 4 MB each would show at once).
      expect(presenter.stats.framesCommitted - committed).toBeLessThanOrEqual(1);
      expect(guest.stats.framesDrawn - drawn).toBeLessThanOrEqual(2);
      expect(process.memoryUsage().rss - rss).toBeLessThan(32 * 2 ** 20);
      expect(error).toBeNull();
      sway.kill('SIGCONT');
      await waitFor('frames flowing again', () => presenter.stats.framesCommitted > committed + 50, 10_000);
      expect(error).toBeNull();
    } finally {
      sway.kill('SIGCONT');
      run.stop();
      presenter.close();
      guest.close();
    }
  }, 30_000);
});

describe('back-pressure: a D-Bus peer that stops reading', () => {
  it('queues at most maxQueuedBytes, then drops the connection saying why; no fd left open', async () => {
    const baseline = listOpenFds();
    const { conn, peer } = await connectPair({ name: 'stalled peer', maxQueuedBytes: 4 * 2 ** 20 });
    const closed = new Promise<Error | null>((resolve) => conn.once('close', resolve));
    const rss = process.memoryUsage().rss;
    const chunk = Buffer.alloc(2 ** 20, 0x5a);
    let sent = 0;
    // The peer never reads again: the kernel's socket buffer fills, then our queue, then we give up.
    for (; sent < 64 && !conn.closed; sent++) {
      void conn.call({ path: '/org/qemu/Display1/Console_0', interface: 'org.qemu.Display1.Keyboard', member: 'Press',
        signature: 'ay', body: [chunk], noReply: true }).catch(() => {});
    }
    const reason = await closed;
    expect(reason?.message).toMatch(/^D-Bus stalled peer: the peer stopped reading \(\d+ bytes queued, more than 4194304\)$/);
    expect((reason as NodeJS.ErrnoException).code).toBe('EPEERSTALLED');
    expect(sent).toBeLessThan(64);
    expect(process.memoryUsage().rss - rss).toBeLessThan(32 * 2 ** 20);
    peer.close();
    await sleep(20);
    expect(listOpenFds()).toEqual(baseline);
  });
});
