// QEMU's calls on our org.qemu.Display1.Listener, fuzzed: the real DisplayListener on a real DBusConnection,
// QEMU played by the FakePeer of the D-Bus tests. Cases run in batches of calls on one connection (sent back to
// back, as QEMU does, then every reply awaited); each batch varies the listener's set-up (paused, event
// listeners present or not, a console size read that fails or is slow, closed with calls still held).
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { close, fstat, ftruncate, listOpenFds, memfdCreate, socketpair } from '../../src/native/fds.js';
import { DBusConnection } from '../../src/source/qemu/dbus/connection.js';
import { MessageFlags, MessageType } from '../../src/source/qemu/dbus/message.js';
import type { DBusValue } from '../../src/source/qemu/dbus/values.js';
import { DisplayListener, LISTENER_INTERFACE, LISTENER_PATH, PixmanFormat, type ListenerEvents } from '../../src/source/qemu/listener.js';
import { FakePeer, closeFds } from '../dbus-peer.js';
import { FUZZ_ONLY, PAGE, Rng, reproduce, show } from './rng.js';

const BATCH = 50;
/** An UpdateDMABUF at this x is left undone by the test (the safety reply must come); at SAFETY_X - 1 the event listener throws. */
const SAFETY_X = -7777;
/** QEMU gives up on an UpdateDMABUF reply after 1 s; everything else must be answered at least as fast. */
const REPLY_DEADLINE_MS = 1000;

const I32 = [0, 1, -1, 2, 8, 64, 640, 16384, 16385, 0x7fffffff, -0x80000000, 0x40000000, -PAGE];
const U32 = [0, 1, 2, 3, 4, 8, 64, 640, PAGE - 1, PAGE, PAGE + 1, 16384, 16385, 0x7fffffff, 0x80000000, 0xffffffff];
const PIXMAN = [...Object.values(PixmanFormat), 0x10020565, 0x08000000, 0x18020888, 0x01000000, 0x07000000, 0, 0xffffffff, 0x20000000];

type Expect = 'return' | 'error' | 'return-or-error';

interface Call {
  path: string;
  iface: string | undefined;
  member: string;
  signature: string;
  body: DBusValue[];
  noReply: boolean;
  expect: Expect;
  /** An UpdateDMABUF whose reply only the safety timeout sends. */
  slow: boolean;
}

interface PeerFds { memfd: number; socket: number; socketPeer: number; devnull: number }

const bpp = (pixman: number): number => pixman >>> 24;
function pixelsOk(w: number, h: number, stride: number, pixman: number, length: number): boolean {
  const bits = bpp(pixman);
  if (w <= 0 || h <= 0 || bits === 0 || bits % 8 !== 0) return false;
  const row = w * (bits / 8);
  return stride >= row && length >= stride * (h - 1) + row;
}

function i32(rng: Rng, typical: number): number {
  return rng.weighted([[6, typical], [2, rng.pick(I32)], [1, rng.u32() | 0], [1, typical + rng.int(-2, 2)]]) | 0;
}
function u32(rng: Rng, typical: number): number {
  return rng.weighted([[6, typical], [2, rng.pick(U32)], [1, rng.u32()], [1, Math.max(0, typical + rng.int(-2, 2))]]) >>> 0;
}

let lastStamp = 0;

/**
 * Pixel data for a width x height image of stride-byte rows: usually the right length, sometimes short or empty.
 * Data of 8 bytes or more carries a stamp, increasing from call to call, in its first and last 4 bytes: an event
 * whose bytes were overwritten by a later message (a reused receive buffer) shows a stamp out of order.
 */
function pixelData(rng: Rng, stride: number, h: number, row: number): Buffer {
  const needed = Math.max(0, stride * (h - 1) + row);
  const length = rng.weighted([[6, needed], [1, needed - 1], [1, needed + rng.int(0, 64)], [1, rng.int(0, 256)], [1, 0]]);
  const data = Buffer.alloc(Math.max(0, Math.min(length, 4 << 20)));
  if (data.length >= 8) {
    lastStamp++;
    data.writeUInt32LE(lastStamp, 0);
    data.writeUInt32LE(lastStamp, data.length - 4);
  }
  return data;
}

/** Why an event's pixel bytes are not those of a later call than the previous event's, or null. */
function stampProblem(data: Buffer, previous: { stamp: number }): string | null {
  if (data.length < 8) return null;
  const first = data.readUInt32LE(0);
  const last = data.readUInt32LE(data.length - 4);
  if (first !== last || first <= previous.stamp) return `pixels stamped ${first}/${last} after an event stamped ${previous.stamp}`;
  previous.stamp = first;
  return null;
}

function generateCall(rng: Rng, fds: PeerFds, allowSlow: boolean): Call {
  const call = (member: string, signature: string, body: DBusValue[], expect: Expect): Call =>
    ({ path: LISTENER_PATH, iface: LISTENER_INTERFACE, member, signature, body, noReply: false, expect, slow: false });
  let c: Call;
  switch (rng.weighted([[3, 'Scanout'], [4, 'Update'], [2, 'ScanoutDMABUF'], [4, 'UpdateDMABUF'], [1, 'Disable'], [1, 'MouseSet'],
    [2, 'CursorDefine'], [2, 'wrong-signature'], [1, 'unknown'], [1, 'builtin']] as const)) {
    case 'Scanout': {
      const large = rng.bool(0.1); // over 1 MiB: the connection's reused buffer for large messages
      const w = u32(rng, large ? 640 : rng.int(1, 64));
      const h = u32(rng, large ? rng.int(410, 800) : rng.int(1, 64));
      const fmt = rng.bool(0.85) ? rng.pick(Object.values(PixmanFormat)) : rng.pick(PIXMAN);
      const row = w * Math.max(1, bpp(fmt) >>> 3);
      const stride = u32(rng, row + rng.pick([0, 0, 4, 64]));
      const data = row > 1 << 20 || h > 1 << 12 ? Buffer.alloc(rng.int(0, 64)) : pixelData(rng, stride, h, row);
      c = call('Scanout', 'uuuuay', [w, h, stride, fmt, data], pixelsOk(w, h, stride, fmt, data.length) ? 'return' : 'error');
      break;
    }
    case 'Update': {
      const large = rng.bool(0.1);
      const x = i32(rng, large ? 0 : rng.int(0, 64));
      const y = i32(rng, large ? 0 : rng.int(0, 64));
      const w = i32(rng, large ? 640 : rng.int(1, 64));
      const h = i32(rng, large ? rng.int(410, 800) : rng.int(1, 64));
      const fmt = rng.bool(0.85) ? PixmanFormat.x8r8g8b8 : rng.pick(PIXMAN);
      const row = Math.max(0, w) * Math.max(1, bpp(fmt) >>> 3);
      const stride = u32(rng, row);
      const data = row > 1 << 20 || h > 1 << 12 ? Buffer.alloc(rng.int(0, 64)) : pixelData(rng, stride, h, row);
      const ok = x >= 0 && y >= 0 && pixelsOk(w, h, stride, fmt, data.length);
      c = call('Update', 'iiiiuuay', [x, y, w, h, stride, fmt, data], ok ? 'return' : 'error');
      break;
    }
    case 'ScanoutDMABUF': {
      const fd = rng.pick([fds.memfd, fds.memfd, fds.socket, fds.devnull]);
      const w = u32(rng, 64);
      const h = u32(rng, 32);
      const modifier = rng.pick([0n, 0x0100000000000001n, 0xffffffffffffffn, (1n << 64n) - 1n, rng.u64()]);
      c = call('ScanoutDMABUF', 'huuuutb', [fd, w, h, u32(rng, w * 4), u32(rng, 0x34325258), modifier, rng.bool()], 'return');
      break;
    }
    case 'UpdateDMABUF': {
      const slow = allowSlow && rng.bool(0.5);
      const x = slow ? SAFETY_X - rng.int(0, 1) : i32(rng, rng.int(0, 64));
      c = call('UpdateDMABUF', 'iiii', [x, i32(rng, 0), i32(rng, 64), i32(rng, 32)], 'return');
      c.slow = slow;
      break;
    }
    case 'Disable':
      c = call('Disable', '', [], 'return');
      break;
    case 'MouseSet':
      c = call('MouseSet', 'iii', [i32(rng, 10), i32(rng, 10), i32(rng, rng.int(0, 1))], 'return');
      break;
    case 'CursorDefine': {
      const w = i32(rng, rng.int(0, 64));
      const h = i32(rng, rng.int(0, 64));
      const needed = Math.max(0, w) * Math.max(0, h) * 4;
      const data = Buffer.alloc(needed > 1 << 20 ? rng.int(0, 64) : Math.max(0, rng.weighted([[6, needed], [1, needed - 1], [1, 0]])));
      const ok = w >= 0 && h >= 0 && data.length >= w * h * 4;
      c = call('CursorDefine', 'iiiiay', [w, h, i32(rng, 0), i32(rng, 0), data], ok ? 'return' : 'error');
      break;
    }
    case 'wrong-signature': {
      const [member, signature, body] = rng.pick<[string, string, DBusValue[]]>([
        ['Scanout', 'uuuay', [1, 1, 4, Buffer.alloc(4)]],
        ['Scanout', 'uuuuayh', [1, 1, 4, PixmanFormat.x8r8g8b8, Buffer.alloc(4), fds.memfd]],
        ['Update', 'iiiiuuas', [0, 0, 1, 1, 4, PixmanFormat.x8r8g8b8, ['x']]],
        ['ScanoutDMABUF', 'uuuuutb', [3, 64, 32, 256, 0x34325258, 0n, true]],
        ['ScanoutDMABUF', 'huuuut', [fds.memfd, 64, 32, 256, 0x34325258, 0n]],
        ['ScanoutDMABUF', 'hhuuuutb', [fds.memfd, fds.socket, 64, 32, 256, 0x34325258, 0n, true]],
        ['UpdateDMABUF', 'uuuu', [0, 0, 64, 32]],
        ['UpdateDMABUF', '', []],
        ['UpdateDMABUF', 'iiiih', [0, 0, 64, 32, fds.devnull]],
        ['Disable', 'h', [fds.socket]],
        ['MouseSet', 'iib', [1, 2, true]],
        ['CursorDefine', 'iiiiayay', [1, 1, 0, 0, Buffer.alloc(4), Buffer.alloc(4)]],
        ['CursorDefine', 'v', []],
      ]);
      // (a 'v' without a value is not encodable: send a string instead)
      c = member === 'CursorDefine' && signature === 'v' ? call(member, 's', ['no'], 'error') : call(member, signature, body, 'error');
      break;
    }
    case 'unknown': {
      const which = rng.int(0, 3);
      if (which === 0) c = call(rng.pick(['Scanout2', 'scanout', 'UpdateMap', 'ScanoutMap', 'CursorDefine_', 'X']), 'h', [fds.memfd], 'error');
      else if (which === 1) c = { ...call('Scanout', 'uuuuay', [1, 1, 4, PixmanFormat.x8r8g8b8, Buffer.alloc(4)], 'error'), path: '/org/qemu/Display1/Nope' };
      else if (which === 2) c = { ...call('Disable', '', [], 'error'), iface: 'org.qemu.Display1.Listener.Unix.Map' };
      else c = { ...call('Disable', '', [], 'return'), iface: undefined }; // no interface: the member is looked up on every one
      break;
    }
    default: {
      const props = 'org.freedesktop.DBus.Properties';
      c = rng.pick<Call>([
        { ...call('Ping', '', [], 'return'), iface: 'org.freedesktop.DBus.Peer' },
        { ...call('Introspect', '', [], 'return'), iface: 'org.freedesktop.DBus.Introspectable' },
        { ...call('GetAll', 's', [LISTENER_INTERFACE], 'return'), iface: props },
        { ...call('Get', 'ss', [LISTENER_INTERFACE, 'Interfaces'], 'return'), iface: props },
        { ...call('Get', 'ss', [LISTENER_INTERFACE, 'Nope'], 'error'), iface: props },
        { ...call('Get', 's', [LISTENER_INTERFACE], 'error'), iface: props },
        { ...call('GetAll', 's', ['org.qemu.Nope'], 'error'), iface: props },
        { ...call('Frob', '', [], 'error'), iface: props },
      ]);
    }
  }
  c.noReply = !c.slow && rng.bool(0.03);
  return c;
}

function openPeerFds(): PeerFds {
  const memfd = memfdCreate('fuzz-peer');
  ftruncate(memfd, 8 * PAGE);
  const [socket, socketPeer] = socketpair();
  return { memfd, socket, socketPeer, devnull: fs.openSync('/dev/null', 'r') };
}

export interface ListenerFuzzStats { calls: number; summary: string }

/** Runs the given dbus case indices (batched by BATCH consecutive indices); throws with the seed and case on a violation. */
export async function runListenerFuzz(indices: number[], total: number): Promise<ListenerFuzzStats> {
  // a call's outcome can depend on the calls before it on the same connection: one case is re-run with its whole batch
  if (FUZZ_ONLY?.section === 'dbus') {
    const first = Math.floor(FUZZ_ONLY.index / BATCH) * BATCH;
    indices = Array.from({ length: Math.max(1, Math.min(BATCH, total - first)) }, (_, i) => first + i);
  }
  const baseline = listOpenFds();
  const counts = new Map<string, number>();
  const count = (key: string): void => void counts.set(key, (counts.get(key) ?? 0) + 1);
  const batches = new Map<number, number[]>();
  for (const i of indices) batches.set(Math.floor(i / BATCH), [...(batches.get(Math.floor(i / BATCH)) ?? []), i]);
  let calls = 0;
  let slowest = 0;
  for (const [batch, cases] of batches) {
    const r = await runBatch(batch, cases, count);
    calls += r.calls;
    slowest = Math.max(slowest, r.slowest);
    const fds = listOpenFds();
    if (show(fds) !== show(baseline)) {
      throw new Error(`${reproduce('dbus', cases[0])} (batch ${batch}, cases ${cases[0]}..${cases[cases.length - 1]}): ` +
        `open fds ${show(fds)}, before the batch ${show(baseline)}`);
    }
  }
  const summary = `${calls} calls in ${batches.size} batches, slowest reply ${slowest} ms: ` +
    [...counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  return { calls, summary };
}

async function runBatch(batch: number, cases: number[], count: (key: string) => void): Promise<{ calls: number; slowest: number }> {
  const brng = Rng.forCase('dbus-batch', batch);
  // a few batches (every 8th, and 1 in 20 of the others) carry UpdateDMABUFs that nobody finishes: the 750 ms
  // safety reply (most UpdateDMABUFs are finished by the test's event listener at once, or soon)
  const safetyBatch = batch % 8 === 3;
  const dmabufListeners = safetyBatch || brng.bool(0.85);
  const allowSlow = safetyBatch || (dmabufListeners && brng.bool(0.05));
  const paused = !safetyBatch && brng.bool(0.2);
  const closeHeld = paused && brng.bool(0.5);
  const consoleReads = brng.pick(['ok', 'ok', 'fails', 'slow'] as const);
  const throwingListeners = brng.bool(0.15);
  const setup = { allowSlow, paused, closeHeld, consoleReads, dmabufListeners, throwingListeners };

  const [a, b] = socketpair();
  const peer = new FakePeer(b);
  const conn = new DBusConnection(a, { name: 'fuzz' });
  const peerFds = openPeerFds();
  const violations: string[] = [];
  const sink = new EventEmitter<ListenerEvents>();
  let listener: DisplayListener | null = null;
  try {
    await peer.acceptAuth();
    await conn.ready;
    let consoleSize = { width: brng.int(1, 128), height: brng.int(1, 128) };
    listener = new DisplayListener(conn, sink, async () => {
      if (consoleReads === 'fails') throw new Error('console gone');
      if (consoleReads === 'slow') await new Promise((r) => setTimeout(r, 5));
      consoleSize = { width: Math.max(consoleSize.width, 64), height: Math.max(consoleSize.height, 64) };
      return consoleSize;
    }, paused);
    const l = listener;
    const previous = { stamp: 0 };
    sink.on('scanout', (e) => {
      if (!pixelsOk(e.width, e.height, e.stride, e.pixmanFormat, e.data.length)) violations.push(`scanout event with bad pixels ${show(e)}`);
      const stamp = stampProblem(e.data, previous);
      if (stamp) violations.push(`scanout ${e.width}x${e.height}: ${stamp}`);
    });
    sink.on('update', (e) => {
      const s = l.surface;
      if (!s || e.x < 0 || e.y < 0 || e.x + e.w > s.width || e.y + e.h > s.height) violations.push(`update ${show(e)} outside the surface ${show(s)}`);
      if (!pixelsOk(e.w, e.h, e.stride, e.pixmanFormat, e.data.length)) violations.push(`update event with bad pixels ${show(e)}`);
      const stamp = stampProblem(e.data, previous);
      if (stamp) violations.push(`update ${e.w}x${e.h}: ${stamp}`);
    });
    sink.on('cursor-define', (e) => {
      if (e.width < 0 || e.height < 0 || e.data.length < e.width * e.height * 4) violations.push(`cursor ${show(e)}`);
    });
    sink.on('mouse-set', () => {
      if (throwingListeners) throw new Error('a buggy mouse-set listener');
    });
    if (dmabufListeners) {
      sink.on('scanout-dmabuf', (e) => {
        try {
          fstat(e.fd);
        } catch (err) {
          violations.push(`scanout-dmabuf handed over fd ${e.fd} that is not open: ${(err as Error).message}`);
        }
        close(e.fd);
        if (throwingListeners) throw new Error('a buggy scanout-dmabuf listener');
      });
      sink.on('update-dmabuf', (e) => {
        if (e.x === SAFETY_X) return; // never done: the safety reply answers
        if (e.x === SAFETY_X - 1) throw new Error('a buggy update-dmabuf listener');
        const how = (e.w >>> 0) % 4;
        if (how === 0) e.done();
        else if (how === 1) setImmediate(e.done);
        else if (how === 2) { e.done(); e.done(); } else setTimeout(e.done, 2);
      });
    }

    // send every call back to back, then wait for the replies
    const pending = new Map<number, { index: number; call: Call; sent: number }>();
    const generated: { index: number; call: Call }[] = [];
    for (const index of cases) {
      const call = generateCall(Rng.forCase('dbus', index), peerFds, allowSlow);
      generated.push({ index, call });
      count(`${call.member}${call.expect === 'error' ? ' (refused)' : ''}`);
      const serial = await peer.call(call.path, call.iface as string, call.member, call.signature, call.body,
        call.noReply ? MessageFlags.noReplyExpected : 0);
      if (!call.noReply) pending.set(serial, { index, call, sent: Date.now() });
    }
    if (paused) {
      if (closeHeld) l.close();
      else l.resume();
    }
    let slowest = 0;
    const fail = (index: number, call: Call, what: string): never => {
      throw new Error(`${reproduce('dbus', index)}\n  batch ${batch} set-up ${show(setup)}\n  call ${call.member}(${call.signature}) ` +
        `${show(call.body)} on ${call.path} ${call.iface ?? '(no interface)'}: ${what}`);
    };
    while (pending.size > 0) {
      const oldest = Math.min(...[...pending.values()].map((p) => p.sent));
      // a held batch is answered once resumed: its wait starts from then, like QEMU's would after attach
      const waitMs = Math.max(50, oldest + REPLY_DEADLINE_MS - Date.now()) + (paused ? REPLY_DEADLINE_MS : 0);
      let message;
      try {
        message = await peer.nextMessage(waitMs);
      } catch {
        const [serial, p] = [...pending][0];
        fail(p.index, p.call, `no reply to serial ${serial} within ${REPLY_DEADLINE_MS} ms (${pending.size} calls unanswered)`);
      }
      closeFds(message!.fds);
      const p = pending.get(message!.replySerial ?? -1);
      if (!p) continue;
      pending.delete(message!.replySerial!);
      const elapsed = Date.now() - p.sent;
      slowest = Math.max(slowest, elapsed);
      if (!paused && elapsed > REPLY_DEADLINE_MS) fail(p.index, p.call, `answered after ${elapsed} ms`);
      const type = message!.type === MessageType.methodReturn ? 'return' : message!.type === MessageType.error ? 'error' : 'other';
      // calls still in the socket when a held listener is closed find no object any more
      const lateForClosed = closeHeld && type === 'error' && message!.errorName === 'org.freedesktop.DBus.Error.UnknownObject';
      if (lateForClosed) count('(listener closed first)');
      if (type === 'other' || (p.call.expect !== 'return-or-error' && type !== p.call.expect && !lateForClosed)) {
        fail(p.index, p.call, `expected a ${p.call.expect}, got ${type} ${message!.errorName ?? ''} ${show(message!.body)}`);
      }
      if (p.call.slow && !closeHeld && elapsed < 700) fail(p.index, p.call, `an UpdateDMABUF nobody finished was answered after ${elapsed} ms, before the safety timeout`);
      if (p.call.slow && !closeHeld) count('UpdateDMABUF (safety reply)');
    }
    if (violations.length) fail(cases[0], generated[0].call, `event invariants broken in this batch:\n    ${violations.join('\n    ')}`);
    return { calls: cases.length, slowest };
  } finally {
    listener?.close();
    conn.close();
    peer.close();
    close(peerFds.memfd);
    close(peerFds.socket);
    close(peerFds.socketPeer);
    fs.closeSync(peerFds.devnull);
    await new Promise((r) => setTimeout(r, 5));
  }
}
