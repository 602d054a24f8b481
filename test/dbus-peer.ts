// The far end of a p2p D-Bus connection for tests: the server side of the handshake, then raw messages built
// with the same encoder (or by hand, to be malformed), read and written with plain recvmsg/sendmsg polling.
import { EventEmitter } from 'node:events';
import { expect } from 'vitest';
import { close, listOpenFds, recvmsg, sendmsg, socketpair } from '../src/native/fds.js';
import { DBusConnection, type DBusConnectionOptions } from '../src/source/qemu/dbus/connection.js';
import { MessageType, decodeMessage, encodeMessage, messageSize, type Message, type MessageHeader } from '../src/source/qemu/dbus/message.js';
import type { DBusValue } from '../src/source/qemu/dbus/values.js';
import { DisplayListener, type ListenerEvents } from '../src/source/qemu/listener.js';
import { sleep } from './helpers.js';

export const GUID = '0123456789abcdef0123456789abcdef';

export class FakePeer {
  authLine = '';
  private buf = Buffer.alloc(0);
  private readonly fdQueue: number[] = [];
  private serial = 1000;
  private closed = false;

  constructor(readonly fd: number) {}

  /** Answers the client's handshake (or rejects it) and returns once BEGIN arrived. */
  async acceptAuth(reply = `OK ${GUID}`): Promise<void> {
    const first = await this.readLine();
    this.authLine = first;
    await this.sendAll(Buffer.from(`${reply}\r\n`));
    if (!reply.startsWith('OK')) return;
    if ((await this.readLine()) !== 'NEGOTIATE_UNIX_FD') throw new Error('expected NEGOTIATE_UNIX_FD');
    await this.sendAll(Buffer.from('AGREE_UNIX_FD\r\n'));
    if ((await this.readLine()) !== 'BEGIN') throw new Error('expected BEGIN');
  }

  async nextMessage(timeoutMs = 3000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const size = messageSize(this.buf);
      if (size !== null && this.buf.length >= size) {
        const message = decodeMessage(Buffer.from(this.buf.subarray(0, size)), this.fdQueue);
        this.buf = this.buf.subarray(size);
        return message;
      }
      if (!(await this.readSome(deadline))) throw new Error('no message from the client');
    }
  }

  /** Calls a method on the client; returns the call's serial. */
  async call(path: string, iface: string, member: string, signature = '', body: DBusValue[] = [], flags = 0): Promise<number> {
    const serial = ++this.serial;
    await this.send({ type: MessageType.methodCall, flags, serial, path, interface: iface, member, signature }, body);
    return serial;
  }

  /** Waits for the reply (return or error) to `serial`, skipping other messages. */
  async replyTo(serial: number, timeoutMs = 3000): Promise<Message> {
    for (;;) {
      const message = await this.nextMessage(timeoutMs);
      if (message.replySerial === serial) return message;
      closeFds(message.fds);
    }
  }

  async reply(to: Message, signature = '', body: DBusValue[] = []): Promise<void> {
    await this.send({ type: MessageType.methodReturn, flags: 0, serial: ++this.serial, replySerial: to.serial, signature }, body);
  }

  async send(header: MessageHeader, body: DBusValue[]): Promise<void> {
    const { data, fds } = encodeMessage(header, body);
    await this.sendAll(data, fds);
  }

  async sendAll(data: Buffer, fds: number[] = []): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      try {
        offset += sendmsg(this.fd, data.subarray(offset), offset === 0 ? fds : []);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        await sleep(2);
      }
    }
  }

  /** True if the client closed its end. */
  async sawHangUp(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const r = recvmsg(this.fd, 65536, 16);
      if (r && r.data.length === 0) return true;
      if (r) closeFds(r.fds);
      else await sleep(5);
    }
    return false;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFds(this.fdQueue.splice(0));
    close(this.fd);
  }

  private async readLine(): Promise<string> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const eol = this.buf.indexOf('\r\n');
      if (eol >= 0) {
        const line = this.buf.subarray(0, eol).toString('latin1');
        this.buf = this.buf.subarray(eol + 2);
        return line;
      }
      if (!(await this.readSome(deadline))) throw new Error('no line from the client');
    }
  }

  private async readSome(deadline: number): Promise<boolean> {
    while (Date.now() < deadline) {
      const r = recvmsg(this.fd, 1 << 20, 16);
      if (r && r.data.length === 0) return false;
      if (r) {
        this.fdQueue.push(...r.fds);
        this.buf = Buffer.concat([this.buf, r.data]);
        return true;
      }
      await sleep(2);
    }
    return false;
  }
}

/** Our DBusConnection on one end of a socketpair, a FakePeer on the other, the handshake done. */
export async function connectPair(options: DBusConnectionOptions = {}): Promise<{ conn: DBusConnection; peer: FakePeer }> {
  const [a, b] = socketpair();
  const peer = new FakePeer(b);
  const conn = new DBusConnection(a, { name: 'test', ...options });
  await peer.acceptAuth();
  await conn.ready;
  return { conn, peer };
}

export interface ListenerPair {
  /** The fds open before the pair was made: closeListenerPair expects exactly these after. */
  baseline: number[];
  conn: DBusConnection;
  peer: FakePeer;
  sink: EventEmitter<ListenerEvents>;
  listener: DisplayListener;
}

/** Our DisplayListener on a connection whose other end is a FakePeer playing QEMU. */
export async function openListenerPair(readConsoleSize: () => Promise<{ width: number; height: number }>): Promise<ListenerPair> {
  const baseline = listOpenFds();
  const { conn, peer } = await connectPair();
  const sink = new EventEmitter<ListenerEvents>();
  return { baseline, conn, peer, sink, listener: new DisplayListener(conn, sink, readConsoleSize) };
}

/** Closes every part of the pair and expects no fd left open. */
export async function closeListenerPair(pair: Omit<ListenerPair, 'sink'>): Promise<void> {
  pair.listener.close();
  pair.conn.close();
  pair.peer.close();
  await sleep(20);
  expect(listOpenFds()).toEqual(pair.baseline);
}

export function closeFds(fds: number[]): void {
  for (const fd of fds) close(fd);
}
