import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errorOf, expectNoFdLeaksPerTest } from './native-helpers.js';
import {
  FdWatcher, addSeals, close, constants, dup, fstat, ftruncate, getSeals, isMemfd, listOpenFds, memfdCreate, mmap,
  munmap, openFdCount, pread, pwrite, recvmsg, recvmsgInto, sendmsg, socketpair,
} from '../src/native/fds.js';

const PAGE = constants.PAGE_SIZE;
const addonPath = fileURLToPath(new URL('../native/build/Release/wlscanout.node', import.meta.url));

expectNoFdLeaksPerTest();

function mapsMention(name: string): boolean {
  return fs.readFileSync('/proc/self/maps', 'utf8').includes(`/memfd:${name}`);
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 30));

// Runs an ES module script in a fresh node (for process-level behaviour: uncaughtException, exit, GC).
function runChild(script: string) {
  const result = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    env: { ...process.env, ADDON: addonPath }, encoding: 'utf8', timeout: 10_000,
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout.trim(), stderr: result.stderr };
}
const childPrelude = `
import { createRequire } from 'node:module';
const a = createRequire(import.meta.url)(process.env.ADDON);
`;

describe('openFdCount', () => {
  it('counts fds opened and closed', () => {
    const before = openFdCount();
    const fd = memfdCreate('count');
    expect(openFdCount()).toBe(before + 1);
    expect(listOpenFds()).toContain(fd);
    close(fd);
    expect(openFdCount()).toBe(before);
  });
});

describe('memfd and seals', () => {
  it('F_SEAL_SHRINK forbids shrinking (EPERM) but not growing', () => {
    const fd = memfdCreate('seal-test', true);
    try {
      ftruncate(fd, 2 * PAGE);
      expect(isMemfd(fd)).toBe(true);
      expect(getSeals(fd)).toBe(0);
      addSeals(fd, constants.F_SEAL_SHRINK);
      expect(getSeals(fd)).toBe(constants.F_SEAL_SHRINK);
      const error = errorOf(() => ftruncate(fd, PAGE));
      expect(error).toMatchObject({ code: 'EPERM', syscall: 'ftruncate', errno: -1 });
      expect(fstat(fd).size).toBe(2 * PAGE);
      ftruncate(fd, 3 * PAGE);
      expect(fstat(fd).size).toBe(3 * PAGE);
    } finally {
      close(fd);
    }
  });

  it('a memfd created without sealing is born sealed', () => {
    const fd = memfdCreate('no-sealing', false);
    try {
      expect(getSeals(fd)).toBe(constants.F_SEAL_SEAL);
      expect(errorOf(() => addSeals(fd, constants.F_SEAL_GROW))).toMatchObject({ code: 'EPERM' });
    } finally {
      close(fd);
    }
  });

  it('getSeals throws EINVAL on a regular file on disk and on a socket', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-'));
    const file = fs.openSync(path.join(dir, 'f'), 'w+');
    const [a, b] = socketpair();
    try {
      expect(errorOf(() => getSeals(file))).toMatchObject({ code: 'EINVAL', syscall: 'fcntl(F_GET_SEALS)' });
      expect(errorOf(() => getSeals(a))).toMatchObject({ code: 'EINVAL' });
      expect(isMemfd(file)).toBe(false);
      expect(() => isMemfd(9999)).toThrow(/EBADF/);
    } finally {
      fs.closeSync(file);
      close(a);
      close(b);
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('mmap', () => {
  it('shares memory with the file both ways (zero-copy)', () => {
    const fd = memfdCreate('mmap-rw');
    try {
      ftruncate(fd, PAGE);
      const view = new Uint8Array(mmap(fd, 0, PAGE, true));
      view.set([1, 2, 3], 100);
      expect([...pread(fd, 3, 100)]).toEqual([1, 2, 3]);
      pwrite(fd, Buffer.from([9, 8]), 200);
      expect([...view.subarray(200, 202)]).toEqual([9, 8]);
      munmap(view.buffer);
    } finally {
      close(fd);
    }
  });

  it('maps an unaligned offset, across a page boundary and above 4 GiB', () => {
    const fd = memfdCreate('mmap-unaligned');
    try {
      const high = 2 ** 32 + 5;
      ftruncate(fd, high + PAGE); // sparse: costs no memory
      pwrite(fd, Buffer.from('abcdefghij'), PAGE - 5);
      const cross = mmap(fd, PAGE - 5, 10, false);
      expect(cross.byteLength).toBe(10);
      expect(Buffer.from(cross).toString()).toBe('abcdefghij');

      const upper = new Uint8Array(mmap(fd, high, 4, true));
      upper.set([0xde, 0xad, 0xbe, 0xef]);
      expect(pread(fd, 4, high).toString('hex')).toBe('deadbeef');
      munmap(cross);
      munmap(upper.buffer);
    } finally {
      close(fd);
    }
  });

  it('refuses a range beyond the end of the file instead of risking SIGBUS', () => {
    const fd = memfdCreate('mmap-beyond');
    try {
      ftruncate(fd, PAGE + 10);
      const exact = mmap(fd, PAGE, 10, false); // ends exactly at the end: fine
      expect(exact.byteLength).toBe(10);
      munmap(exact);
      expect(() => mmap(fd, PAGE, 11, false)).toThrow(
        new RangeError(`mmap range [${PAGE}, ${PAGE + 11}) is beyond the end of fd ${fd} (size ${PAGE + 10})`));
      expect(() => mmap(fd, 2 * PAGE, 1, true)).toThrow(RangeError);
    } finally {
      close(fd);
    }
  });

  it('rejects bad arguments, naming them', () => {
    const fd = memfdCreate('mmap-args');
    try {
      ftruncate(fd, PAGE);
      expect(() => mmap(fd, 0, 0, false)).toThrow(RangeError);
      expect(() => mmap(fd, -1, 1, false)).toThrow(new RangeError('offset must be an integer in [0, 9007199254740991] (got -1)'));
      expect(() => mmap(fd, 0.5, 1, false)).toThrow(/offset .*\(got 0\.5\)/);
      expect(() => mmap(fd, 0, 2 ** 53, false)).toThrow(/length/);
      expect(() => mmap('3' as unknown as number, 0, 1, false)).toThrow(new TypeError('fd must be a number (got "3")'));
      expect(() => mmap(fd, 0, 1, 1 as unknown as boolean)).toThrow(TypeError);
      expect(errorOf(() => mmap(fd + 1000, 0, 1, false))).toMatchObject({ code: 'EBADF', syscall: 'fstat' });
    } finally {
      close(fd);
    }
  });

  it('munmap unmaps now, detaches the buffer and is idempotent', () => {
    const fd = memfdCreate('mmap-unmap-test');
    try {
      ftruncate(fd, PAGE);
      const buffer = mmap(fd, 0, PAGE, true);
      const view = new Uint8Array(buffer);
      view[0] = 7;
      expect(mapsMention('mmap-unmap-test')).toBe(true);
      munmap(buffer);
      expect(mapsMention('mmap-unmap-test')).toBe(false);
      expect(buffer.byteLength).toBe(0);
      expect(view.length).toBe(0);
      expect(view[0]).toBeUndefined(); // no access to the unmapped page
      munmap(buffer);
      expect(pread(fd, 1, 0)[0]).toBe(7);
      expect(() => munmap(new ArrayBuffer(8))).toThrow(TypeError);
    } finally {
      close(fd);
    }
  });

  it('unmaps dropped buffers on GC, and never twice', () => {
    const { status, stdout, stderr } = runChild(childPrelude + `
      import fs from 'node:fs';
      const mapped = () => fs.readFileSync('/proc/self/maps', 'utf8').includes('/memfd:gc-map');
      const collect = async () => { for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); } };
      const fd = a.memfdCreate('gc-map', true);
      a.ftruncate(fd, 4096);
      (() => { a.mmap(fd, 0, 4096, true); })();
      const dropped = mapped();
      await collect();
      const afterGc = mapped();
      (() => { a.munmap(a.mmap(fd, 0, 4096, true)); })();
      const keep = new Uint8Array(a.mmap(fd, 0, 4096, true)); // may reuse the address just unmapped
      await collect();
      keep[0] = 5; // finalizing the munmapped buffer must not have unmapped this one
      console.log(dropped, afterGc, keep[0], a.pread(fd, 1, 0)[0], mapped());
      a.munmap(keep.buffer);
      console.log(mapped());
    `);
    expect(stderr).toBe('');
    expect({ status, stdout }).toEqual({ status: 0, stdout: 'true false 5 5 true\nfalse' });
  });
});

describe('sockets and fd passing', () => {
  it('passes two memfds; the received fds are new and refer to the same files', () => {
    const [a, b] = socketpair();
    const m1 = memfdCreate('pass-1');
    const m2 = memfdCreate('pass-2');
    try {
      ftruncate(m1, 16);
      ftruncate(m2, 16);
      expect(sendmsg(a, Buffer.from('hello'), [m1, m2])).toBe(5);
      const got = recvmsg(b, 100, 4);
      expect(got).not.toBeNull();
      const { data, fds } = got!;
      expect(data.toString()).toBe('hello');
      expect(fds).toHaveLength(2);
      expect(fds).not.toContain(m1);
      expect(fds).not.toContain(m2);
      for (const [mine, theirs] of [[m1, fds[0]], [m2, fds[1]]]) {
        expect(fstat(theirs)).toMatchObject({ ino: fstat(mine).ino, dev: fstat(mine).dev });
      }
      pwrite(fds[1], Buffer.from('via received'), 0);
      expect(pread(m2, 12, 0).toString()).toBe('via received');
      expect(pread(m1, 12, 0)).toEqual(Buffer.alloc(12));
      fds.forEach(close);
    } finally {
      [a, b, m1, m2].forEach(close);
    }
  });

  it('recvmsg: null when empty, EOF after the peer closes; sendmsg then gets EPIPE', () => {
    const [a, b] = socketpair();
    try {
      expect(recvmsg(b, 100, 4)).toBeNull();
      sendmsg(a, Buffer.from('x'));
      close(a);
      expect(recvmsg(b, 100, 4)!.data.toString()).toBe('x');
      expect(recvmsg(b, 100, 4)).toEqual({ data: Buffer.alloc(0), fds: [] });
      expect(errorOf(() => sendmsg(b, Buffer.from('y'), []))).toMatchObject({ code: 'EPIPE', syscall: 'sendmsg' });
    } finally {
      close(b);
    }
  });

  it('sendmsg throws EAGAIN when the socket is full', () => {
    const [a, b] = socketpair();
    try {
      const chunk = Buffer.alloc(65536);
      let error: NodeJS.ErrnoException | undefined;
      for (let i = 0; i < 10_000 && !error; i++) {
        try {
          sendmsg(a, chunk);
        } catch (e) {
          error = e as NodeJS.ErrnoException;
        }
      }
      expect(error).toMatchObject({ code: 'EAGAIN', syscall: 'sendmsg' });
    } finally {
      close(a);
      close(b);
    }
  });

  it('closes the fds of a truncated control message and says so', () => {
    const [a, b] = socketpair();
    const m = memfdCreate('trunc');
    try {
      sendmsg(a, Buffer.from('z'), [m, m, m]);
      const error = errorOf(() => recvmsg(b, 10, 1));
      expect(error.message).toMatch(/control message truncated.*maxFds=1/);
      expect(error.code).toBe('ECTRUNC');
      // afterEach checks that the fd that did arrive was closed; the stream goes on after the lost message.
      sendmsg(a, Buffer.from('y'), [m]);
      const next = recvmsg(b, 10, 1)!;
      expect(next.data.toString()).toBe('y');
      expect(next.fds).toHaveLength(1);
      close(next.fds[0]);
    } finally {
      [a, b, m].forEach(close);
    }
  });

  it('rejects fds without data and non-fd entries', () => {
    const [a, b] = socketpair();
    try {
      expect(() => sendmsg(a, new Uint8Array(0), [a])).toThrow(RangeError);
      expect(() => sendmsg(a, Buffer.from('x'), [-1])).toThrow(new TypeError('fds[0] must be an fd (got -1)'));
      expect(() => sendmsg(a, 'x' as unknown as Uint8Array, [])).toThrow(/data must be a Uint8Array/);
      expect(() => recvmsg(b, 0, 0)).toThrow(RangeError);
    } finally {
      close(a);
      close(b);
    }
  });
});

describe('dup and close', () => {
  it('dup gives a new fd on the same file', () => {
    const m = memfdCreate('dup');
    const d = dup(m);
    try {
      expect(d).not.toBe(m);
      pwrite(d, Buffer.from('d'), 0);
      expect(pread(m, 1, 0).toString()).toBe('d');
    } finally {
      close(m);
      close(d);
    }
  });

  it('close of a bad fd throws EBADF', () => {
    const m = memfdCreate('bad');
    close(m);
    expect(errorOf(() => close(m))).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'close' });
  });
});

describe('FdWatcher', () => {
  it('fires READABLE when the peer writes, and not after stop() or close()', async () => {
    const [a, b] = socketpair();
    const calls: [number, number][] = [];
    const watcher = new FdWatcher(a, (status, events) => calls.push([status, events]));
    try {
      watcher.start(constants.POLL_READABLE);
      await tick();
      expect(calls).toEqual([]);

      sendmsg(b, Buffer.from('ping'));
      await tick();
      expect(calls.length).toBeGreaterThan(0); // level-triggered: fires until read
      expect(calls[0]).toEqual([0, constants.POLL_READABLE]);

      watcher.stop();
      calls.length = 0;
      await tick();
      expect(calls).toEqual([]);

      watcher.start(constants.POLL_READABLE); // restart
      await tick();
      expect(calls.length).toBeGreaterThan(0);
      expect(recvmsg(a, 10, 0)!.data.toString()).toBe('ping');

      watcher.start(constants.POLL_WRITABLE); // different mask
      calls.length = 0;
      await tick();
      expect(calls[0]).toEqual([0, constants.POLL_WRITABLE]);

      watcher.close();
      calls.length = 0;
      sendmsg(b, Buffer.from('more'));
      await tick();
      expect(calls).toEqual([]);
      watcher.close();
      expect(() => watcher.start(constants.POLL_READABLE)).toThrow(/closed/);
    } finally {
      watcher.close();
      close(a);
      close(b);
    }
  });

  it('rejects bad arguments and unpollable fds', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-'));
    const file = fs.openSync(path.join(dir, 'f'), 'w+');
    try {
      expect(errorOf(() => new FdWatcher(file, () => {}))).toMatchObject({ code: 'EPERM', syscall: 'uv_poll_init' });
      expect(() => new FdWatcher(-1, () => {})).toThrow(TypeError);
      expect(() => new FdWatcher(file, null as unknown as () => void)).toThrow(TypeError);
      const [a, b] = socketpair();
      const w = new FdWatcher(a, () => {});
      expect(() => w.start(8)).toThrow(TypeError);
      w.close();
      close(a);
      close(b);
    } finally {
      fs.closeSync(file);
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('keeps the process alive while started; a throwing callback becomes an uncaughtException', () => {
    const { status, signal, stdout, stderr } = runChild(childPrelude + `
      const [x, y] = a.socketpair();
      const w = new a.FdWatcher(x, (status, events) => {
        Promise.resolve().then(() => console.log('microtask ran'));
        throw new Error('boom ' + events);
      });
      w.start(a.constants.POLL_READABLE);
      process.on('uncaughtException', (e) => { console.log('caught', e.message); w.close(); a.close(x); a.close(y); });
      // Nothing else keeps the loop alive for these 200 ms: only the started watcher does.
      setTimeout(() => a.sendmsg(y, Buffer.from('!'), []), 200).unref();
    `);
    expect({ status, signal, stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(stdout.split('\n')).toEqual(['caught boom 1', 'microtask ran']);
  });

  it('runs the microtasks queued by the callback right after it', () => {
    // Level-triggered and never read: only the microtask can stop the watcher, so without it this would spin.
    const { status, stdout, stderr } = runChild(childPrelude + `
      const [x, y] = a.socketpair();
      let calls = 0;
      const w = new a.FdWatcher(x, () => {
        calls++;
        Promise.resolve().then(() => { w.close(); a.close(x); a.close(y); console.log('calls', calls); });
      });
      w.start(a.constants.POLL_READABLE);
      a.sendmsg(y, Buffer.from('!'), []);
    `);
    expect({ status, stdout, stderr }).toEqual({ status: 0, stdout: 'calls 1', stderr: '' });
  });

  it('a started watcher is not garbage-collected even when unreferenced', () => {
    const { status, stdout, stderr } = runChild(childPrelude + `
      const [x, y] = a.socketpair();
      (() => {
        const w = new a.FdWatcher(x, () => { w.close(); a.close(x); a.close(y); console.log('fired'); });
        w.start(a.constants.POLL_READABLE);
      })();
      for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); }
      a.sendmsg(y, Buffer.from('!'), []);
    `);
    expect({ status, stdout, stderr }).toEqual({ status: 0, stdout: 'fired', stderr: '' });
  });

  it('lets the process exit after stop(), and survives GC of unclosed watchers', () => {
    const { status, stdout, stderr } = runChild(childPrelude + `
      const [x, y] = a.socketpair();
      for (let i = 0; i < 100; i++) new a.FdWatcher(x, () => {});
      const w = new a.FdWatcher(y, () => console.log('never'));
      w.start(a.constants.POLL_READABLE);
      w.stop();
      gc();
      await new Promise((r) => setImmediate(r));
      gc();
      console.log('done');
    `);
    expect({ status, stdout, stderr }).toEqual({ status: 0, stdout: 'done', stderr: '' });
  });
});

describe('recvmsgInto', () => {
  it('receives bytes and fds straight into the given memory; null when empty, 0 bytes at EOF', () => {
    const [a, b] = socketpair();
    const memfd = memfdCreate('into', true);
    try {
      expect(recvmsgInto(b, new Uint8Array(8), 4)).toBe(null);
      sendmsg(a, Buffer.from('hello world'), [memfd]);
      const target = Buffer.alloc(32, 0x2e);
      const got = recvmsgInto(b, target.subarray(10, 15), 4)!;
      expect(got.bytes).toBe(5);
      expect(got.fds.length).toBe(1);
      expect(fstat(got.fds[0]).ino).toBe(fstat(memfd).ino);
      close(got.fds[0]);
      expect(target.toString('latin1', 8, 17)).toBe('..hello..');
      expect(recvmsgInto(b, target, 4)!.bytes).toBe(6); // " world", the rest of the stream
      close(a);
      expect(recvmsgInto(b, target, 4)).toEqual({ bytes: 0, fds: [] });
      expect(() => recvmsgInto(b, new Uint8Array(0), 4)).toThrow(/target must not be empty/);
    } finally {
      close(b);
      close(memfd);
    }
  });
});
