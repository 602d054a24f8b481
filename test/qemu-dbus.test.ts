import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { close, fstat, listOpenFds, socketpair } from '../src/native/fds.js';
import { SaslClient } from '../src/source/qemu/dbus/auth.js';
import { DBusConnection } from '../src/source/qemu/dbus/connection.js';
import { DBusAuthError, DBusError, DBusWireError } from '../src/source/qemu/dbus/errors.js';
import { MessageType, decodeMessage, encodeMessage, messageSize, type MessageHeader } from '../src/source/qemu/dbus/message.js';
import { Variant, variant, type DBusValue } from '../src/source/qemu/dbus/values.js';
import { WireReader, checkSignature, marshallValues, type SigNode } from '../src/source/qemu/dbus/wire.js';
import {
  DisplayListener, LISTENER_INTERFACE, LISTENER_PATH, PixmanFormat, QemuDisplay, type ListenerEvents, type UpdateEvent,
} from '../src/source/qemu/display.js';
import { QmpClient, QmpError } from '../src/source/qemu/qmp.js';
import { FakePeer, closeFds, closeListenerPair, connectPair, openListenerPair } from './dbus-peer.js';
import { memfdOfSize } from './native-helpers.js';
import { sleep, waitFor } from './helpers.js';

// The marshalling boundary: dbus-native marshals (little endian) and reads (either byte order), wire.ts checks.
function encode(sig: string, values: DBusValue[], littleEndian = true): { bytes: Buffer; fds: number[] } {
  const { bytes, fds } = marshallValues(sig, values);
  return { bytes: littleEndian ? Buffer.from(bytes) : toBigEndian(sig, bytes), fds };
}

function decode(sig: string, bytes: Buffer, littleEndian = true, fds: number[] = []): DBusValue[] {
  return new WireReader(bytes, { littleEndian, fds }).readAll(sig);
}

/**
 * The big-endian twin of a little-endian encoding (dbus-native writes only little endian; peers may send either).
 * The layout is the same in both byte orders, so every multi-byte field is reversed where it lies.
 */
function toBigEndian(sig: string, le: Buffer, start = 0): Buffer {
  const out = Buffer.from(le);
  let pos = start;
  const align = (n: number): void => { pos = Math.ceil(pos / n) * n; };
  const swap = (n: number): void => { align(n); out.subarray(pos, pos + n).reverse(); pos += n; };
  const length = (): number => { align(4); const n = le.readUInt32LE(pos); swap(4); return n; };
  const walk = (node: SigNode): void => {
    switch (node.type) {
      case 'y': pos += 1; return;
      case 'n': case 'q': return swap(2);
      case 'b': case 'i': case 'u': case 'h': return swap(4);
      case 'x': case 't': case 'd': return swap(8);
      case 's': case 'o': { const n = length(); pos += n + 1; return; }
      case 'g': pos += le[pos] + 2; return;
      case 'v': {
        const inner = le.toString('latin1', pos + 1, pos + 1 + le[pos]);
        pos += le[pos] + 2;
        return walk(checkSignature(inner)[0]);
      }
      case '(': case '{': align(8); return node.child.forEach(walk);
      case 'a': {
        const n = length();
        if ('xtd({'.includes(node.child[0].type)) align(8);
        const end = pos + n;
        while (pos < end) walk(node.child[0]);
        return;
      }
    }
  };
  checkSignature(sig).forEach(walk);
  return out;
}

/** A whole little-endian message as the same message in big endian. */
function messageToBigEndian(data: Buffer, bodySignature: string): Buffer {
  const bodyStart = Math.ceil((16 + data.readUInt32LE(12)) / 8) * 8;
  const out = Buffer.concat([toBigEndian('yyyyuua(yv)', data).subarray(0, bodyStart), toBigEndian(bodySignature, data, bodyStart).subarray(bodyStart)]);
  out[0] = 0x42;
  return out;
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

const le32 = (...words: number[]): Buffer => Buffer.concat(words.map((w) => { const b = Buffer.alloc(4); b.writeUInt32LE(w); return b; }));

describe('D-Bus marshalling', () => {
  const cases: [string, DBusValue[], DBusValue[]?][] = [
    ['y', [255]], ['b', [true]], ['b', [false]], ['n', [-32768]], ['q', [65535]], ['i', [-2147483648]], ['u', [4294967295]],
    ['x', [-(2n ** 63n)]], ['t', [2n ** 64n - 1n]], ['t', [7], [7n]], ['d', [-1.5e300]], ['s', ['héllo ✓ wörld']], ['s', ['']],
    ['o', ['/org/qemu/Display1/Console_0']], ['o', ['/']], ['g', ['a{sv}(iiay)h']], ['h', [42]],
    ['v', [variant('t', 0x0100000000000001n)]], ['v', [variant('av', [variant('s', 'deep')])]],
    ['as', [['a', 'bc', '']]], ['au', [[0, 1, 0xffffffff]]], ['aay', [[Buffer.from([1, 2]), Buffer.alloc(0)]]],
    ['(ybt)', [[1, true, 3n]]], ['a(ii)', [[[1, -1], [2, -2]]]], ['a(ii)', [[]]],
    ['a{sv}', [new Map<DBusValue, DBusValue>([['Width', variant('u', 720)], ['Label', variant('s', 'VGA')]])]],
    ['a{sv}', [{ Interfaces: variant('as', ['x']) }], [new Map([['Interfaces', variant('as', ['x'])]])]],
    ['a{ua{st}}', [new Map([[1, new Map([['k', 2n]])]])]],
    ['yhuuuutb', [1, 9, 640, 480, 2560, 0x34325258, 0x0100000000000001n, true]],
  ];
  for (const littleEndian of [true, false]) {
    it.each(cases)(`round-trips '%s' (${littleEndian ? 'little' : 'big'} endian)`, (sig, values, expected) => {
      const { bytes, fds } = encode(sig, values, littleEndian);
      const decoded = decode(sig, bytes, littleEndian, fds);
      expect(decoded).toEqual(expected ?? values);
      if (sig.includes('h')) expect(fds).toEqual([values.find((v) => v === 42 || v === 9)]);
    });
  }

  it('encodes values in the exact little-endian layout', () => {
    expect(encode('yq', [1, 0x0203]).bytes).toEqual(Buffer.from([1, 0, 3, 2]));
    expect(encode('s', ['ab']).bytes).toEqual(Buffer.from([2, 0, 0, 0, 0x61, 0x62, 0]));
    expect(encode('g', ['ai']).bytes).toEqual(Buffer.from([2, 0x61, 0x69, 0]));
    expect(encode('b', [true]).bytes).toEqual(Buffer.from([1, 0, 0, 0]));
    expect(encode('u', [0x01020304], false).bytes).toEqual(Buffer.from([1, 2, 3, 4]));
  });

  it('reads big-endian data in its exact layout', () => {
    const bytes = Buffer.from([7, 0, 1, 2, 0, 0, 0, 3, /* t */ 1, 0, 0, 0, 0, 0, 0, 2, /* s */ 0, 0, 0, 2, 0x61, 0x62, 0, 0,
      /* b */ 0, 0, 0, 1, /* a{yq} */ 0, 0, 0, 4, 9, 0, 0x01, 0x02]);
    expect(decode('yqutsba{yq}', bytes, false))
      .toEqual([7, 0x0102, 3, 0x0100000000000002n, 'ab', true, new Map([[9, 0x0102]])]);
  });

  it('pads each value to its alignment from the start of the message', () => {
    const yt = encode('yt', [1, 2n]).bytes;
    expect(yt.length).toBe(16);
    expect([...yt.subarray(0, 9)]).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 2]);
    // a variant's value is aligned like any other: 't' after the 3 signature bytes starts at 8
    const yv = encode('yv', [1, variant('t', 9n)]).bytes;
    expect([...yv.subarray(0, 9)]).toEqual([1, 1, 0x74, 0, 0, 0, 0, 0, 9]);
    expect(yv.length).toBe(16);
    // dict entries are 8-aligned; the array length counts from the first entry, after the padding
    const dict = encode('ya{yt}', [1, new Map([[2, 3n]])]).bytes;
    expect(dict.length).toBe(24);
    expect(dict.readUInt32LE(4)).toBe(16);
    expect(dict[8]).toBe(2);
    expect(dict.readBigUInt64LE(16)).toBe(3n);
  });

  it('pads an empty array to its element alignment, and requires that padding when reading', () => {
    const bytes = encode('ta(t)', [1n, []]).bytes;
    expect(bytes.length).toBe(16);
    expect(bytes.readUInt32LE(8)).toBe(0);
    expect(decode('ta(t)', bytes)).toEqual([1n, []]);
    expect(() => decode('ta(t)', bytes.subarray(0, 12))).toThrow(/truncated inside alignment padding/);
  });

  it("decodes 'ay' as one view into the received buffer, not a copy (dbus-native's ayBuffer: 'view')", () => {
    const frame = Buffer.alloc(4 * 1024 * 1024, 0xab);
    const { bytes } = encode('uay', [1, frame]);
    const started = performance.now();
    const [, data] = decode('uay', bytes) as [number, Buffer];
    expect(performance.now() - started).toBeLessThan(50);
    expect(data.buffer).toBe(bytes.buffer);
    expect(data.byteOffset).toBe(bytes.byteOffset + 8);
    expect(data.equals(frame)).toBe(true);
  });

  it('refuses values that do not fit their type when encoding', () => {
    expect(() => encode('y', [256])).toThrow(DBusWireError);
    expect(() => encode('y', [256])).toThrow("values [256] do not fit D-Bus signature 'y': Number outside range");
    expect(() => encode('u', [-1])).toThrow(/do not fit D-Bus signature 'u'/);
    expect(() => encode('t', [-1n])).toThrow(/do not fit D-Bus signature 't': .*out of range/);
    expect(() => encode('x', [2 ** 60])).toThrow(/do not fit D-Bus signature 'x': .*53 bit/);
    expect(() => encode('o', ['no/slash'])).toThrow(/do not fit D-Bus signature 'o': .*not a valid object path/);
    expect(() => encode('s', ['a\0b'])).toThrow(/do not fit D-Bus signature 's': String contains null byte/);
    expect(() => encode('g', ['a{vs}'])).toThrow(DBusWireError);
    expect(() => encode('v', [5])).toThrow("value 5 does not fit D-Bus type 'v' (a Variant)");
    expect(() => encode('v', [variant('ii', [1, 2])])).toThrow(/must be a single complete type/);
    expect(() => encode('(ii)', [[1]])).toThrow("value [1] does not fit D-Bus type '(ii)' (an array of 2 fields)");
    expect(() => encode('a{sv}', [[['k', variant('u', 1)]]])).toThrow(/does not fit D-Bus type 'a\{sv\}' \(a Map or a plain object\)/);
    expect(() => encode('h', [-1])).toThrow("value -1 does not fit D-Bus type 'h' (an fd)");
    expect(() => encode('uu', [1])).toThrow(/needs 2 values, got 1/);
    expect(() => encode('ay', [Buffer.alloc(2 ** 26 + 1)])).toThrow(/array 'ay' is 67108865 bytes \(max 67108864\)/);
  });

  describe('malformed input gives a specific error', () => {
    it('truncated body', () => {
      const error = thrown(() => decode('uu', encode('uu', [1, 2]).bytes.subarray(0, 6)));
      expect(error).toBeInstanceOf(DBusWireError);
      expect(error.message).toBe("body at offset 4: truncated: 'u' needs 4 bytes, 2 left");
    });
    it('bad signatures', () => {
      // dbus-native's parser is lenient (GVariant codes, empty structs, any key type, any depth): these are ours
      expect(() => checkSignature('a')).toThrow(new DBusWireError("bad signature 'a': ends inside a container"));
      expect(() => checkSignature('(ii')).toThrow(/bad signature '\(ii': ends inside a container/);
      expect(() => checkSignature('ii)')).toThrow(/'\)' closes no container/);
      expect(() => checkSignature('()')).toThrow(/empty struct/);
      expect(() => checkSignature('{ss}')).toThrow(/dict entry outside an array/);
      expect(() => checkSignature('a{vs}')).toThrow(/key must be a basic type, not 'v'/);
      expect(() => checkSignature('a{(i)s}')).toThrow(/key must be a basic type, not '\(i\)'/);
      expect(() => checkSignature('a{sss}')).toThrow(/exactly one key and one value/);
      expect(() => checkSignature('iz')).toThrow(/bad signature 'iz': unknown type code 'z' at 1/);
      expect(() => checkSignature('ar')).toThrow(/unknown type code 'r' at 1/); // GVariant's struct code
      expect(() => checkSignature('a'.repeat(33) + 'y')).toThrow(/arrays nested deeper than 32/);
      expect(() => checkSignature('('.repeat(33) + 'y' + ')'.repeat(33))).toThrow(/structs nested deeper than 32/);
      expect(() => checkSignature('y'.repeat(256))).toThrow(/256 characters long/);
      expect(checkSignature('a{sv}(ii)ah').map((n) => n.type)).toEqual(['a', '(', 'a']);
      // a variant carrying a bad signature
      expect(() => decode('v', Buffer.from([2, 0x61, 0x7a, 0]))).toThrow("body at offset 4: variant: bad signature 'az': unknown type code 'z' at 1");
      expect(() => decode('v', Buffer.from([2, 0x69, 0x69, 0]))).toThrow(/must be a single complete type/);
      // the body's signature, from a message, read as a 'g'
      expect(() => decode('g', Buffer.from([2, 0x28, 0x29, 0]))).toThrow("body at offset 4: bad signature '()': empty struct");
    });
    it('array length beyond the body', () => {
      const bytes = Buffer.concat([le32(100), le32(1)]);
      expect(thrown(() => decode('au', bytes)).message).toBe("body at offset 4: array 'au' length 100 goes beyond the end of the body (4 bytes left)");
      expect(() => decode('ay', Buffer.concat([le32(2 ** 27)]))).toThrow(/array length 134217728 exceeds the maximum 67108864/);
    });
    it('an array element that overruns the array', () => {
      expect(() => decode('auy', Buffer.concat([le32(2), le32(7), Buffer.from([1])]))).toThrow(/array 'au' at offset 4: truncated: 'u' needs 4 bytes, 2 left/);
    });
    it('too many fds referenced', () => {
      const bytes = encode('hh', [10, 11]).bytes;
      expect(thrown(() => decode('hh', bytes, true, [10])).message).toBe('body at offset 4: handle refers to unix fd #1 but the message carries 1');
    });
    it('bad booleans, padding, strings and object paths', () => {
      expect(() => decode('b', le32(2))).toThrow(/boolean is 2 \(must be 0 or 1\)/);
      expect(() => decode('yu', Buffer.from([1, 0, 7, 0, 1, 0, 0, 0]))).toThrow(/alignment padding byte is 7, not 0/);
      expect(() => decode('s', Buffer.concat([le32(2), Buffer.from('abX')]))).toThrow(/'s' is not NUL-terminated/);
      expect(() => decode('s', Buffer.concat([le32(2), Buffer.from([0xc3, 0x28, 0])]))).toThrow(/'s' is not valid UTF-8/);
      expect(() => decode('s', Buffer.concat([le32(2), Buffer.from([0x61, 0, 0])]))).toThrow(/'s' contains a NUL byte/);
      expect(() => decode('s', Buffer.concat([le32(50), Buffer.from('ab\0')]))).toThrow(/'s' of 50 bytes goes beyond the end of the body/);
      expect(() => decode('o', Buffer.concat([le32(3), Buffer.from('/a/\0')]))).toThrow(/invalid object path '\/a\/'/);
      expect(() => decode('u', Buffer.concat([le32(1), le32(2)]))).toThrow(/body has 4 bytes left over after its signature 'u'/);
    });
    it('variants nested too deep', () => {
      let value: DBusValue = 1;
      for (let i = 0; i < 70; i++) value = variant(i === 0 ? 'y' : 'v', value);
      const { bytes } = encode('v', [value]);
      expect(() => decode('v', bytes)).toThrow(/containers nested deeper than 64/);
    });
  });
});

describe('D-Bus messages', () => {
  const call: MessageHeader = {
    type: MessageType.methodCall, flags: 0, serial: 7, path: '/org/qemu/Display1/Listener', interface: LISTENER_INTERFACE,
    member: 'ScanoutDMABUF', signature: 'huuuutb',
  };

  it('round-trip with every header field and fds, in both byte orders', () => {
    for (const littleEndian of [true, false]) {
      const encoded = encodeMessage({ ...call, destination: 'x.y', sender: ':1.2' }, [33, 640, 480, 2560, 1, 5n, true]);
      const { fds } = encoded;
      const data = littleEndian ? encoded.data : messageToBigEndian(encoded.data, call.signature);
      expect(data[0]).toBe(littleEndian ? 0x6c : 0x42);
      expect(fds).toEqual([33]);
      expect(messageSize(data.subarray(0, 16))).toBe(data.length);
      const queue = [50, 51];
      const message = decodeMessage(data, queue);
      expect(queue).toEqual([51]);
      expect(message).toMatchObject({ ...call, destination: 'x.y', sender: ':1.2', fds: [50], body: [50, 640, 480, 2560, 1, 5n, true] });
      expect([...message.referencedFds]).toEqual([0]);
    }
  });

  it("a Scanout's pixels come out as a view of the received message: no copy between the socket and the listener", () => {
    const frame = Buffer.alloc(1280 * 800 * 4, 0x5a);
    const { data } = encodeMessage({ type: MessageType.methodCall, flags: 0, serial: 9, path: LISTENER_PATH, interface: LISTENER_INTERFACE,
      member: 'Scanout', signature: 'uuuuay' }, [1280, 800, 5120, 0x20020888, frame]);
    const started = performance.now();
    const message = decodeMessage(data, []);
    const elapsed = performance.now() - started;
    const pixels = message.body[4] as Buffer;
    expect(pixels.buffer).toBe(data.buffer);
    expect(pixels.byteOffset).toBe(data.byteOffset + data.length - frame.length);
    expect(pixels.equals(frame)).toBe(true);
    expect(elapsed).toBeLessThan(20);
  });

  it('malformed headers give specific errors', () => {
    const { data } = encodeMessage(call, [0, 1, 1, 4, 1, 0n, false]);
    const bad = (patch: (b: Buffer) => void, fds: number[] = [3]): string => {
      const copy = Buffer.from(data);
      patch(copy);
      return thrown(() => decodeMessage(copy, [...fds])).message;
    };
    expect(bad((b) => { b[0] = 0x58; })).toBe("message starts with endianness byte 0x58 (must be 'l' or 'B')");
    expect(bad((b) => { b[3] = 2; })).toBe('message has protocol version 2 (only 1 exists)');
    expect(bad((b) => b.writeUInt32LE(0, 8))).toBe('message has serial 0');
    expect(bad(() => {}, [])).toBe('message declares 1 unix fds but 0 arrived');
    expect(() => messageSize(Object.assign(Buffer.from(data.subarray(0, 16)), {}).fill(0xff, 4, 8))).toThrow(/message claims \d+ bytes .* max 134217728/);
    const noMember = encodeMessage({ type: MessageType.methodCall, flags: 0, serial: 1, path: '/', signature: '' }, []).data;
    expect(() => decodeMessage(noMember, [])).toThrow('message of type 1 lacks header field(s) member');
    const bodyless = encodeMessage({ ...call, signature: 'u' }, [1]).data;
    // drop the signature field by renaming its code to an unknown one (unknown fields are ignored)
    const sigField = bodyless.indexOf(Buffer.from([8, 1, 0x67, 0]));
    bodyless[sigField] = 200;
    expect(() => decodeMessage(bodyless, [])).toThrow('message has a 4-byte body but no signature');
    const typed = Buffer.from(bodyless);
    typed[sigField] = 3; // the member field, now holding a signature
    expect(() => decodeMessage(typed, [])).toThrow("header field member has type 'g', must be 's'");
  });
});

describe('SASL client', () => {
  it('sends AUTH EXTERNAL with the hex uid, negotiates fds, begins', () => {
    const sasl = new SaslClient(1000);
    expect(sasl.start().toString('latin1')).toBe('\0AUTH EXTERNAL 31303030\r\n');
    expect(sasl.receive(Buffer.from(`OK ${'a'.repeat(32)}\r\nAGR`))).toEqual({ send: 'NEGOTIATE_UNIX_FD\r\n', done: null });
    const last = sasl.receive(Buffer.from('EE_UNIX_FD\r\nl\x01'));
    expect(last.send).toBe('BEGIN\r\n');
    expect(last.done).toMatchObject({ guid: 'a'.repeat(32), unixFds: true });
    expect([...last.done!.rest]).toEqual([0x6c, 1]);
  });
  it('fails with what the server said', () => {
    expect(() => new SaslClient(5).receive(Buffer.from('REJECTED ANONYMOUS\r\n'))).toThrow(new DBusAuthError('the server rejected AUTH EXTERNAL for uid 5 (it offers: ANONYMOUS)'));
    expect(() => new SaslClient(5).receive(Buffer.from('DATA\r\n'))).toThrow(/unexpected authentication reply 'DATA' while authenticating/);
    expect(() => new SaslClient(5).receive(Buffer.alloc(17000, 0x41))).toThrow(/longer than 16384 bytes/);
  });
});

// Connection and listener tests run against a FakePeer on the other end of a socketpair (connectPair).

describe('D-Bus connection', () => {
  let baseline: number[];
  const cleanup: (() => void)[] = [];
  beforeEach(() => {
    baseline = listOpenFds();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0)) fn();
    await sleep(20);
    expect(listOpenFds()).toEqual(baseline);
  });
  async function pair(options = {}): Promise<{ conn: DBusConnection; peer: FakePeer }> {
    const p = await connectPair(options);
    cleanup.push(() => p.conn.close(), () => p.peer.close());
    return p;
  }

  it('authenticates with EXTERNAL and our uid, with fd passing', async () => {
    const { conn, peer } = await pair();
    expect(peer.authLine).toBe(`\0AUTH EXTERNAL ${Buffer.from(String(process.getuid!())).toString('hex')}`);
    expect(conn.guid).toBe('0123456789abcdef0123456789abcdef');
    expect(conn.unixFds).toBe(true);
  });

  it('a rejected handshake rejects ready and closes', async () => {
    const [a, b] = socketpair();
    const peer = new FakePeer(b);
    cleanup.push(() => peer.close());
    const conn = new DBusConnection(a);
    const closed = new Promise<Error | null>((r) => conn.once('close', r));
    await peer.acceptAuth('REJECTED ANONYMOUS');
    await expect(conn.ready).rejects.toThrow(DBusAuthError);
    expect(await closed).toBeInstanceOf(DBusAuthError);
  });

  it('calls queued before the handshake go after BEGIN; replies match by serial; fds come back owned', async () => {
    const [a, b] = socketpair();
    const peer = new FakePeer(b);
    const conn = new DBusConnection(a);
    cleanup.push(() => conn.close(), () => peer.close());
    const sent = memfdOfSize(4096);
    const first = conn.call({ path: '/o', interface: 'i.f', member: 'One', signature: 'h', body: [sent] });
    const second = conn.call({ path: '/o', interface: 'i.f', member: 'Two' });
    close(sent); // the connection keeps its own copy until it is sent
    await peer.acceptAuth();
    const m1 = await peer.nextMessage();
    const m2 = await peer.nextMessage();
    expect([m1.member, m2.member]).toEqual(['One', 'Two']);
    expect(fstat(m1.fds[0]).size).toBe(4096);
    // answer out of order, the second one with an fd
    await peer.reply(m2, 'hs', [m1.fds[0], 'two']);
    await peer.reply(m1, 's', ['one']);
    closeFds(m1.fds);
    const [fd, text] = await second as [number, string];
    expect(text).toBe('two');
    expect(fstat(fd).size).toBe(4096);
    close(fd);
    expect(await first).toEqual(['one']);
  });

  it('error replies reject with the D-Bus error name and message', async () => {
    const { conn, peer } = await pair();
    const pending = conn.call({ path: '/o', interface: 'i.f', member: 'M' });
    const m = await peer.nextMessage();
    await peer.send({ type: MessageType.error, flags: 0, serial: 5, replySerial: m.serial, errorName: 'org.qemu.Display1.Error.Invalid', signature: 's' }, ['Mouse is not absolute']);
    await expect(pending).rejects.toMatchObject({ name: 'DBusError', errorName: 'org.qemu.Display1.Error.Invalid', message: 'Mouse is not absolute' });
  });

  it('times out a call, and closes the fds of a reply that comes too late', async () => {
    const { conn, peer } = await pair();
    const pending = conn.call({ path: '/o', member: 'Slow', timeoutMs: 50 });
    await expect(pending).rejects.toMatchObject({ errorName: 'org.freedesktop.DBus.Error.NoReply', message: 'no reply to .Slow on /o within 50 ms' });
    const m = await peer.nextMessage();
    const fd = memfdOfSize(10);
    await peer.reply(m, 'h', [fd]);
    close(fd);
    await sleep(30); // the fd must be closed again, which afterEach checks
  });

  it('serves methods: a Promise reply goes when it resolves; errors for unknown and wrong calls', async () => {
    const { conn, peer } = await pair();
    let release!: (v: number) => void;
    conn.exportInterface('/obj', 'test.Iface', {
      methods: {
        Later: { in: 'u', out: 'u', handler: ([n]) => new Promise<number>((r) => { release = (v) => r((n as number) + v); }) },
        Now: { in: '', out: 'su', handler: () => ['pair', 2] },
        Fails: { in: '', handler: () => { throw new DBusError('test.Error.Nope', 'nope'); } },
        Broken: { in: '', out: 'u', handler: () => 'not a number' },
      },
      properties: { Size: { signature: 'u', get: () => 99 }, Name: { signature: 's', get: () => 'obj' } },
    });
    const later = await peer.call('/obj', 'test.Iface', 'Later', 'u', [40]);
    const now = await peer.call('/obj', 'test.Iface', 'Now');
    expect((await peer.replyTo(now)).body).toEqual(['pair', 2]);
    await sleep(50);
    release(2); // the Later reply must not have been sent before this
    const laterReply = await peer.nextMessage();
    expect(laterReply).toMatchObject({ type: MessageType.methodReturn, replySerial: later, body: [42] });

    const errorOf = async (...args: Parameters<FakePeer['call']>) => {
      const reply = await peer.replyTo(await peer.call(...args));
      return [reply.errorName, reply.body[0]];
    };
    expect(await errorOf('/obj', 'test.Iface', 'Fails')).toEqual(['test.Error.Nope', 'nope']);
    expect(await errorOf('/obj', 'test.Iface', 'Broken')).toEqual(['org.freedesktop.DBus.Error.Failed',
      'values ["not a number"] do not fit D-Bus signature \'u\': Data: not a number was not of type number']);
    expect(await errorOf('/obj', 'test.Iface', 'Missing')).toEqual(['org.freedesktop.DBus.Error.UnknownMethod', '/obj has no method test.Iface.Missing']);
    expect(await errorOf('/obj', 'other.Iface', 'Now')).toEqual(['org.freedesktop.DBus.Error.UnknownInterface', '/obj has no interface other.Iface']);
    expect(await errorOf('/nothing', 'test.Iface', 'Now')).toEqual(['org.freedesktop.DBus.Error.UnknownObject', 'no object at /nothing']);
    expect(await errorOf('/obj', 'test.Iface', 'Later', 's', ['x'])).toEqual(['org.freedesktop.DBus.Error.InvalidArgs', 'Later takes (u), got (s)']);

    const props = 'org.freedesktop.DBus.Properties';
    expect((await peer.replyTo(await peer.call('/obj', props, 'GetAll', 's', ['test.Iface']))).body)
      .toEqual([new Map([['Size', variant('u', 99)], ['Name', variant('s', 'obj')]])]);
    expect((await peer.replyTo(await peer.call('/obj', props, 'Get', 'ss', ['test.Iface', 'Size']))).body).toEqual([variant('u', 99)]);
    expect(await errorOf('/obj', props, 'Get', 'ss', ['test.Iface', 'Nope'])).toEqual(['org.freedesktop.DBus.Error.UnknownProperty', 'test.Iface has no property Nope']);
    expect(await errorOf('/obj', props, 'Set', 'ssv', ['test.Iface', 'Size', variant('u', 1)])).toEqual(['org.freedesktop.DBus.Error.PropertyReadOnly', 'test.Iface.Size is read-only']);
    expect((await peer.replyTo(await peer.call('/obj', 'org.freedesktop.DBus.Peer', 'Ping'))).type).toBe(MessageType.methodReturn);
    const xml = (await peer.replyTo(await peer.call('/obj', 'org.freedesktop.DBus.Introspectable', 'Introspect'))).body[0];
    expect(xml).toContain('<interface name="test.Iface">');
    expect(xml).toContain('<method name="Later"><arg type="u" direction="in"/><arg type="u" direction="out"/></method>');
    // no reply at all when the caller asked for none
    await peer.call('/obj', 'test.Iface', 'Now', '', [], 1);
    const ping = await peer.call('/obj', 'org.freedesktop.DBus.Peer', 'Ping');
    expect((await peer.nextMessage()).replySerial).toBe(ping);
  });

  it("hands a handler its 'h' fds and closes the fds no value refers to", async () => {
    const { conn, peer } = await pair();
    let got = -1;
    conn.exportInterface('/obj', 'test.Iface', { methods: { Take: { in: 'h', handler: ([fd]) => { got = fd as number; } } } });
    const referenced = memfdOfSize(123);
    const extra = memfdOfSize(7);
    // two fds come with the call, its body refers to the first
    const call = rawMessage(MessageType.methodCall, [[1, variant('o', '/obj')], [2, variant('s', 'test.Iface')],
      [3, variant('s', 'Take')], [8, variant('g', 'h')], [9, variant('u', 2)]], le32(0));
    await peer.sendAll(call, [referenced, extra]);
    closeFds([referenced, extra]);
    await peer.replyTo(77);
    expect(fstat(got).size).toBe(123);
    close(got);
  });

  it('moves multi-megabyte messages both ways, whole', async () => {
    const { conn, peer } = await pair();
    const big = Buffer.alloc(6 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i / 4096;
    let received: Buffer | null = null;
    conn.exportInterface('/obj', 'test.Iface', { methods: { Frame: { in: 'ay', handler: ([data]) => { received = data as Buffer; } } } });
    const call = conn.call({ path: '/obj', member: 'Put', signature: 'ay', body: [big] });
    const m = await peer.nextMessage(10_000);
    expect((m.body[0] as Buffer).equals(big)).toBe(true);
    await peer.reply(m);
    await call;
    const serial = await peer.call('/obj', 'test.Iface', 'Frame', 'ay', [big]);
    await peer.replyTo(serial, 10_000);
    expect(received!.equals(big)).toBe(true);
  });

  it('malformed data from the peer: a specific error, then close; pending calls fail; fds closed', async () => {
    const { conn, peer } = await pair();
    const errors: Error[] = [];
    conn.on('error', (e) => errors.push(e));
    const closed = new Promise<Error | null>((r) => conn.once('close', r));
    const pending = conn.call({ path: '/o', member: 'M' });
    // the reply: its body claims 'u' but holds 2 bytes, and it carries an fd
    const reply = rawMessage(MessageType.methodReturn, [[5, variant('u', 1)], [8, variant('g', 'u')], [9, variant('u', 1)]], Buffer.from([1, 0]));
    const fd = memfdOfSize(1);
    await peer.sendAll(reply, [fd]);
    close(fd);
    const reason = await closed;
    expect(reason).toBeInstanceOf(DBusWireError);
    expect(reason!.message).toMatch(/^body at offset \d+: truncated: 'u' needs 4 bytes, 2 left$/);
    expect(errors).toEqual([reason]);
    await expect(pending).rejects.toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Disconnected' });
    expect(conn.closed).toBe(true);
    expect(await peer.sawHangUp()).toBe(true);
  });

  it('a bad fixed header closes with its own error, and without an error listener nothing throws', async () => {
    const { conn, peer } = await pair();
    const closed = new Promise<Error | null>((r) => conn.once('close', r));
    await peer.sendAll(Buffer.from('Xhello, this is not D-Bus'));
    expect((await closed)!.message).toBe("message starts with endianness byte 0x58 (must be 'l' or 'B')");
  });

  it('a peer that disappears mid-message: close with ECONNRESET, no error event, fds closed', async () => {
    const { conn, peer } = await pair();
    const errors: Error[] = [];
    conn.on('error', (e) => errors.push(e));
    const closed = new Promise<Error | null>((r) => conn.once('close', r));
    const pending = conn.call({ path: '/o', member: 'M' });
    const call = rawMessage(MessageType.methodCall, [[1, variant('o', '/x')], [3, variant('s', 'Y')], [8, variant('g', 'ay')],
      [9, variant('u', 1)]], Buffer.concat([le32(500_000), Buffer.alloc(500_000)]));
    const fd = memfdOfSize(1);
    await peer.sendAll(call.subarray(0, 1000), [fd]);
    close(fd);
    peer.close();
    expect(await closed).toMatchObject({ code: 'ECONNRESET' });
    expect(errors).toEqual([]);
    await expect(pending).rejects.toThrow(DBusError);
    await expect(conn.call({ path: '/o', member: 'M' })).rejects.toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Disconnected' });
  });

  it('close() is clean: close(null), calls rejected, no further events', async () => {
    const { conn } = await pair();
    const reasons: (Error | null)[] = [];
    conn.on('close', (r) => reasons.push(r));
    const pending = conn.call({ path: '/o', member: 'M' });
    conn.close();
    conn.close();
    expect(reasons).toEqual([null]);
    await expect(pending).rejects.toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Disconnected' });
  });
});

/** A message built by hand: header fields as given (code, variant), then the body bytes as they are. */
function rawMessage(type: number, fields: [number, Variant][], body: Buffer): Buffer {
  const { bytes } = marshallValues('yyyyuua(yv)', [0x6c, type, 0, 1, body.length, 77, fields]);
  return Buffer.concat([bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8), body]);
}

describe('QEMU listener (against a fake QEMU)', () => {
  let baseline: number[];
  let conn: DBusConnection;
  let peer: FakePeer;
  let sink: EventEmitter<ListenerEvents>;
  let listener: DisplayListener;
  let consoleSize = { width: 720, height: 400 };
  const events: string[] = [];
  beforeEach(async () => {
    events.length = 0;
    consoleSize = { width: 720, height: 400 };
    ({ baseline, conn, peer, sink, listener } = await openListenerPair(async () => consoleSize));
  });
  afterEach(() => closeListenerPair({ baseline, conn, peer, listener }));
  const callListener = (member: string, signature = '', body: DBusValue[] = []) => peer.call(LISTENER_PATH, LISTENER_INTERFACE, member, signature, body);

  it("answers QEMU's Properties.GetAll", async () => {
    const reply = await peer.replyTo(await peer.call(LISTENER_PATH, 'org.freedesktop.DBus.Properties', 'GetAll', 's', [LISTENER_INTERFACE]));
    expect(reply.body).toEqual([new Map([['Interfaces', variant('as', ['org.qemu.Display1.Listener.Unix.Map', 'org.qemu.Display1.Listener.Unix.ScanoutDMABUF2'])]])]);
  });

  it('scanout, then updates that fit; an update beyond the surface is a resize read from the console', async () => {
    const seen: unknown[] = [];
    sink.on('scanout', (e) => seen.push(['scanout', e.width, e.height, e.data.length]));
    sink.on('resize', (e) => seen.push(['resize', e.width, e.height]));
    sink.on('update', (e) => seen.push(['update', e.x, e.y, e.w, e.h]));
    sink.on('disable', () => seen.push(['disable']));
    const fmt = PixmanFormat.x8r8g8b8;
    await callListener('Scanout', 'uuuuay', [640, 480, 2560, fmt, Buffer.alloc(2560 * 480)]);
    await callListener('Update', 'iiiiuuay', [0, 0, 16, 16, 64, fmt, Buffer.alloc(64 * 16)]);
    await callListener('Update', 'iiiiuuay', [0, 0, 720, 16, 2880, fmt, Buffer.alloc(2880 * 16)]);
    await callListener('Update', 'iiiiuuay', [0, 384, 720, 16, 2880, fmt, Buffer.alloc(2880 * 16)]);
    const last = await callListener('Disable');
    await peer.replyTo(last);
    await waitFor('the events', () => seen.length === 6);
    expect(seen).toEqual([['scanout', 640, 480, 2560 * 480], ['update', 0, 0, 16, 16], ['resize', 720, 400],
      ['update', 0, 0, 720, 16], ['update', 0, 384, 720, 16], ['disable']]);
    expect(listener.surface).toEqual({ width: 720, height: 400, pixmanFormat: fmt });
  });

  it('a paused listener answers QEMU at once but keeps its events, in order, until resume()', async () => {
    listener.close();
    listener = new DisplayListener(conn, sink, async () => consoleSize, true);
    const seen: string[] = [];
    sink.on('scanout', () => seen.push('scanout'));
    sink.on('disable', () => seen.push('disable'));
    await callListener('Scanout', 'uuuuay', [4, 4, 16, PixmanFormat.x8r8g8b8, Buffer.alloc(64)]);
    await peer.replyTo(await callListener('Disable'));
    expect(seen).toEqual([]);
    listener.resume();
    expect(seen).toEqual(['scanout', 'disable']);
  });

  it('large frames reuse one receive buffer, and each arrives intact', async () => {
    const fills: number[] = [];
    const buffers = new Set<ArrayBufferLike>();
    sink.on('update', (e) => {
      fills.push(e.data[0], e.data[e.data.length - 1]);
      buffers.add(e.data.buffer);
    });
    await callListener('Scanout', 'uuuuay', [1280, 800, 5120, PixmanFormat.x8r8g8b8, Buffer.alloc(5120 * 800)]);
    for (const fill of [1, 2, 3]) await callListener('Update', 'iiiiuuay', [0, 0, 1280, 800, 5120, PixmanFormat.x8r8g8b8, Buffer.alloc(5120 * 800, fill)]);
    await peer.replyTo(await callListener('Disable'));
    expect(fills).toEqual([1, 1, 2, 2, 3, 3]);
    expect(buffers.size).toBe(1);
  });

  it('a frame that has to wait keeps its own copy of the pixels while later frames reuse the receive buffer', async () => {
    listener.close();
    listener = new DisplayListener(conn, sink, async () => consoleSize, true);
    const fills: number[] = [];
    sink.on('scanout', (e) => fills.push(e.data[0], e.data[e.data.length - 1]));
    for (const fill of [7, 8, 9]) await callListener('Scanout', 'uuuuay', [1280, 800, 5120, PixmanFormat.x8r8g8b8, Buffer.alloc(5120 * 800, fill)]);
    await peer.replyTo(await callListener('Disable'));
    listener.resume();
    expect(fills).toEqual([7, 7, 8, 8, 9, 9]);
  });

  it("a handler that does not borrow its bytes keeps them: the next large message gets a buffer of its own", async () => {
    const kept: Buffer[] = [];
    const unexport = conn.exportInterface('/test/Keeper', 'test.Keeper', { methods: { Keep: { in: 'ay', handler: ([data]) => void kept.push(data as Buffer) } } });
    try {
      for (const fill of [4, 5]) await peer.replyTo(await peer.call('/test/Keeper', 'test.Keeper', 'Keep', 'ay', [Buffer.alloc(2 << 20, fill)]));
      expect(kept.map((b) => [b[0], b[b.length - 1], b.length])).toEqual([[4, 4, 2 << 20], [5, 5, 2 << 20]]);
    } finally {
      unexport();
    }
  });

  it('refuses pixel data shorter than its size says', async () => {
    const reply = await peer.replyTo(await callListener('Scanout', 'uuuuay', [640, 480, 2560, PixmanFormat.x8r8g8b8, Buffer.alloc(100)]));
    expect([reply.errorName, reply.body[0]]).toEqual(['org.freedesktop.DBus.Error.InvalidArgs', 'Scanout 640x480: 100 bytes of data, 1228800 needed']);
  });

  it('ScanoutDMABUF hands the fd over with a 64-bit modifier; with no listener the fd is closed', async () => {
    const dmabuf = memfdOfSize(8192);
    const unhandled = await callListener('ScanoutDMABUF', 'huuuutb', [dmabuf, 64, 32, 256, 0x34325258, 0x0100000000000001n, true]);
    await peer.replyTo(unhandled); // afterEach proves this fd was closed
    const got = new Promise<{ fd: number; modifier: bigint; y0Top: boolean }>((r) => sink.once('scanout-dmabuf', r));
    const handled = await callListener('ScanoutDMABUF', 'huuuutb', [dmabuf, 64, 32, 256, 0x34325258, 0x0100000000000001n, true]);
    close(dmabuf);
    await peer.replyTo(handled);
    const event = await got;
    expect(event.modifier).toBe(0x0100000000000001n);
    expect(event.y0Top).toBe(true);
    expect(fstat(event.fd).size).toBe(8192);
    close(event.fd); // ours to close
  });

  it('UpdateDMABUF is answered only when done() is called', async () => {
    let done!: () => void;
    sink.on('update-dmabuf', (e) => { done = e.done; });
    const serial = await callListener('UpdateDMABUF', 'iiii', [0, 0, 64, 32]);
    await expect(peer.replyTo(serial, 200)).rejects.toThrow(/no message/);
    done();
    done();
    expect((await peer.replyTo(serial)).type).toBe(MessageType.methodReturn);
  });

  it('UpdateDMABUF is answered after the safety timeout, well before QEMU gives up at 1 s', async () => {
    sink.on('update-dmabuf', () => {});
    const started = Date.now();
    const reply = await peer.replyTo(await callListener('UpdateDMABUF', 'iiii', [0, 0, 64, 32]), 2000);
    const elapsed = Date.now() - started;
    expect(reply.type).toBe(MessageType.methodReturn);
    expect(elapsed).toBeGreaterThanOrEqual(700);
    expect(elapsed).toBeLessThan(950);
  });

  it('MouseSet and CursorDefine', async () => {
    const mouse = new Promise((r) => sink.once('mouse-set', r));
    const cursor = new Promise<{ width: number; hotX: number; data: Buffer }>((r) => sink.once('cursor-define', r));
    await callListener('MouseSet', 'iii', [10, 20, 1]);
    await callListener('CursorDefine', 'iiiiay', [2, 2, 1, 0, Buffer.alloc(16, 0xff)]);
    expect(await mouse).toEqual({ x: 10, y: 20, on: true });
    expect(await cursor).toMatchObject({ width: 2, hotX: 1, data: Buffer.alloc(16, 0xff) });
  });
});

describe('QEMU display (real QEMU, -display dbus,p2p=yes)', () => {
  let qemu: ChildProcess;
  let dir: string;
  let qmpPath: string;
  let logPath: string;
  let baseline: number[];

  async function startQemu(): Promise<void> {
    qmpPath = path.join(dir, 'qmp.sock');
    logPath = path.join(dir, 'qemu.log');
    // QEMU's stderr goes to a file, so that no pipe of ours closes when it dies (the fd checks see every fd)
    const logFd = fs.openSync(logPath, 'w');
    try {
      qemu = spawn('qemu-system-x86_64', ['-display', 'dbus,p2p=yes', '-qmp', `unix:${qmpPath},server=on,wait=off`,
        '-vga', 'std', '-m', '64', '-nodefaults', '-no-user-config', '-net', 'none'], { stdio: ['ignore', logFd, logFd] });
    } finally {
      fs.closeSync(logFd);
    }
    // the socket file appears at bind(), a moment before QEMU listens on it
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (qemu.exitCode !== null) throw new Error(`QEMU exited: ${fs.readFileSync(logPath, 'utf8')}`);
      const qmp = await QmpClient.connect(qmpPath).catch((e: Error) => e);
      if (qmp instanceof QmpClient) return qmp.close();
      if (Date.now() > deadline) throw new Error(`QEMU's QMP socket does not answer: ${qmp.message}`);
      await sleep(50);
    }
  }

  async function stopQemu(): Promise<void> {
    if (!qemu || qemu.exitCode !== null || qemu.signalCode !== null) return;
    const exited = new Promise((r) => qemu.once('exit', r));
    qemu.kill('SIGKILL');
    await exited;
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-qemu-'));
    await startQemu();
    baseline = listOpenFds();
  });
  afterAll(async () => {
    await stopQemu();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('QMP: greeting, commands, errors', async () => {
    const qmp = await QmpClient.connect(qmpPath);
    try {
      expect(qmp.greeting!.version.qemu.major).toBeGreaterThanOrEqual(7);
      expect(await qmp.execute('query-status')).toMatchObject({ running: true });
      const error = await qmp.execute('no-such-command').then(() => null, (e: QmpError) => e);
      expect(error).toBeInstanceOf(QmpError);
      expect(error!.errorClass).toBe('CommandNotFound');
      const [a, b] = socketpair();
      await qmp.getfd('test-fd', a);
      closeFds([a, b]);
      await qmp.execute('closefd', { fdname: 'test-fd' }); // QEMU got it under that name
    } finally {
      qmp.close();
    }
  });

  it('attaches, reads console 0, receives a scanout and updates that fit, sends input; detaches cleanly', async () => {
    const display = await QemuDisplay.attach({ qmpPath });
    const scanouts: { width: number; height: number; stride: number; pixmanFormat: number; length: number }[] = [];
    const updates: UpdateEvent[] = [];
    const misfits: string[] = [];
    let surface: { width: number; height: number } | null = null;
    display.on('scanout', (e) => {
      scanouts.push({ width: e.width, height: e.height, stride: e.stride, pixmanFormat: e.pixmanFormat, length: e.data.length });
      surface = e;
    });
    display.on('resize', (e) => { surface = e; });
    display.on('update', (e) => {
      updates.push(e);
      if (!surface || e.x + e.w > surface.width || e.y + e.h > surface.height || e.data.length < e.stride * (e.h - 1) + e.w * 4) {
        misfits.push(`${e.x},${e.y} ${e.w}x${e.h} on ${JSON.stringify(surface)}`);
      }
    });
    try {
      expect(display.vm.consoleIds).toContain(0);
      expect(display.vm.name).toMatch(/^QEMU/);
      expect(display.console).toMatchObject({ id: 0, label: 'VGA', type: 'Graphic', head: 0 });
      expect(display.console.width).toBeGreaterThan(0);
      expect(display.console.height).toBeGreaterThan(0);

      await waitFor('a scanout and updates', () => scanouts.length > 0 && updates.length >= 5, 15_000)
        .catch((e) => { throw new Error(`${e.message}: ${scanouts.length} scanouts, ${updates.length} updates, console ${JSON.stringify(display.console)}`); });
      const s = scanouts[0];
      expect(s.width).toBeGreaterThanOrEqual(320);
      expect(s.width).toBeLessThanOrEqual(4096);
      expect(s.height).toBeGreaterThanOrEqual(200);
      expect(s.height).toBeLessThanOrEqual(4096);
      expect(s.stride).toBeGreaterThanOrEqual(s.width * 4);
      expect(s.pixmanFormat).toBe(PixmanFormat.x8r8g8b8);
      expect(s.length).toBe(s.stride * s.height);
      expect(misfits).toEqual([]);
      expect(display.surface!.width).toBe(display.console.width);

      await display.keyboard.press(0x1c);
      await display.keyboard.release(0x1c);
      expect(await display.mouse.isAbsolute()).toBe(false); // PS/2 mouse: relative
      await display.mouse.relMotion(10, -5);
      await display.mouse.press(0);
      await display.mouse.release(0);
      await expect(display.mouse.setAbsPosition(1, 1)).rejects.toMatchObject({ errorName: 'org.qemu.Display1.Error.Invalid' });
    } finally {
      const reasons: (Error | null)[] = [];
      display.on('close', (r) => reasons.push(r));
      display.close();
      expect(reasons).toEqual([null]);
    }
    await sleep(50);
    expect(listOpenFds()).toEqual(baseline);
    // QEMU took the detach in its stride: a new client attaches and gets a fresh scanout of the current surface
    const again = await QemuDisplay.attach({ qmpPath });
    try {
      const scanout = new Promise<{ width: number; height: number }>((r) => again.once('scanout', r));
      await again.keyboard.press(0x39);
      await again.keyboard.release(0x39);
      const fresh = await Promise.race([scanout, sleep(5000).then(() => null)]);
      expect(fresh).toMatchObject({ width: again.console.width, height: again.console.height });
    } finally {
      again.close();
    }
    await sleep(50);
    expect(listOpenFds()).toEqual(baseline);
  });

  it('attach fails with the reason, and leaks nothing, for a missing console or a missing QEMU', async () => {
    await expect(QemuDisplay.attach({ qmpPath, console: 5 })).rejects.toThrow('QEMU has no console 5 (it has: 0)');
    await expect(QemuDisplay.attach({ qmpPath: path.join(dir, 'nothing.sock') })).rejects.toThrow(/QMP: no greeting \(connect ENOENT/);
    await sleep(50);
    expect(listOpenFds()).toEqual(baseline);
  });

  it('closes cleanly when QEMU is killed, without leaking fds', async () => {
    const display = await QemuDisplay.attach({ qmpPath });
    const closed = new Promise<Error | null>((r) => display.once('close', r));
    await stopQemu();
    const reason = await closed;
    expect(reason).toBeInstanceOf(Error);
    expect(display.closed).toBe(true);
    await expect(display.keyboard.press(0x1c)).rejects.toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Disconnected' });
    await sleep(50);
    expect(listOpenFds()).toEqual(baseline);
  });
});
