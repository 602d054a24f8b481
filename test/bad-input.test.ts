// Bad frames from a source: each is refused with a specific error, released, and leaks nothing.
import { openSync, closeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeston, type Compositor } from '../src/embedded/compositors.js';
import { fourcc } from '../src/formats.js';
import { memfdCreate, ftruncate, close, openFdCount, listOpenFds, socketpair } from '../src/native/fds.js';
import type { MemfdFrame } from '../src/source/frame.js';
import { ImportError } from '../src/import/errors.js';
import { verifyPatternExact } from '../src/source/test-pattern.js';
import { makeGuest, openPresenter, showNext, XRGB } from './helpers.js';

const W = 320;
const H = 240;

describe('bad frames given to the wl_shm presenter (weston)', () => {
  let weston: Compositor;
  beforeAll(async () => { weston = await startWeston({ width: W, height: H }); }, 30_000);
  afterAll(async () => { await weston?.stop(); });

  it('refuses each with a specific error, releases it, leaks no fd, and keeps working', async () => {
    const presenter = await openPresenter(weston.socket, { fullscreen: true });
    const guest = makeGuest(W, H);
    try {
    const baseline = listOpenFds();
    const [socketA, socketB] = socketpair();
    const regular = openSync('/proc/self/exe', 'r');
    const huge = memfdCreate('huge', true);
    ftruncate(huge, 3 * 2 ** 30); // sparse: nothing is allocated
    const closedFd = memfdCreate('closed', true);
    close(closedFd);
    const good: Omit<MemfdFrame, 'release'> = {
      fd: guest.memfd, offset: 0, width: W, height: H, stride: W * 4, fourcc: XRGB.fourcc, damage: null, seq: 0,
      flushedAt: process.hrtime.bigint(),
    };
    const cases: [string, Partial<MemfdFrame>, string, RegExp][] = [
      ['zero width', { width: 0 }, 'bad-size', /width 0 is out of range \(1\.\.16384\)/],
      ['huge height', { height: 100_000 }, 'bad-size', /height 100000 is out of range/],
      ['fractional width', { width: 10.5 }, 'bad-size', /width 10\.5/],
      ['stride too small', { stride: W * 4 - 4 }, 'bad-stride', /stride 1276 is smaller than width 320 × 4 bytes \(1280\) of XRGB8888/],
      ['negative offset', { offset: -4096 }, 'bad-offset', /offset -4096 is out of range/],
      ['beyond the memfd', { offset: guest.ramSize - 4096 }, 'out-of-bounds', /beyond the end of memfd fd \d+ \(size \d+\)/],
      ['beyond what wl_shm addresses', { fd: huge, offset: 2 ** 31 }, 'out-of-bounds', /beyond the 2 GiB that wl_shm can address/],
      ['unknown format', { fourcc: fourcc('ZZ99') }, 'unknown-format', /unknown pixel format 'ZZ99'/],
      ['a socket', { fd: socketA }, 'not-memfd', new RegExp(`fd ${socketA} is not a memfd`)],
      ['a regular file', { fd: regular }, 'not-memfd', new RegExp(`fd ${regular} is not a memfd`)],
      ['a closed fd', { fd: closedFd }, 'bad-fd', new RegExp(`fd ${closedFd} cannot be used: .*EBADF`)],
    ];
    for (const [what, change, code, message] of cases) {
      let released = 0;
      let error: unknown;
      try {
        presenter.present({ ...good, ...change, release: () => { released++; } });
      } catch (e) {
        error = e;
      }
      expect(error, what).toBeInstanceOf(ImportError);
      expect((error as ImportError).code, what).toBe(code);
      expect((error as ImportError).message, what).toMatch(message);
      expect(released, `${what}: released exactly once`).toBe(1);
    }
    for (const fd of [socketA, socketB, regular, huge]) closeSync(fd);
    expect(listOpenFds()).toEqual(baseline);
    expect(presenter.buffers.stats.poolsCreated).toBe(0);

    // Still alive: a good frame is shown exactly.
    await showNext(guest, presenter);
    await showNext(guest, presenter);
    expect(verifyPatternExact(await weston.capture(), { x: 0, y: 0, width: W, height: H }, XRGB).mismatches).toBe(0);
    } finally {
      presenter.close();
      guest.close();
    }
  }, 30_000);

  it('closes every fd it opened once the presenter and guest are closed', async () => {
    const before = openFdCount();
    for (let i = 0; i < 3; i++) {
      const presenter = await openPresenter(weston.socket, { fullscreen: true });
      const guest = makeGuest(W, H);
      await showNext(guest, presenter);
      await showNext(guest, presenter);
      presenter.close();
      guest.close();
    }
    expect(openFdCount()).toBe(before);
  }, 30_000);
});
