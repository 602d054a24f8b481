// A D-Bus peer-to-peer connection over an already-connected AF_UNIX socket: we are the authentication client,
// there is no bus (no Hello, no names). Method calls with reply matching and timeouts, exported objects with
// Properties/Peer/Introspectable, unix fds both ways.
//
// Fd ownership: the connection owns the socket fd from the constructor on. Fds sent with a message stay the
// caller's (copies are kept while a message waits in the send queue). Received fds belong to whoever gets the
// value holding them: a method handler for its 'h' arguments, the caller of call() for 'h' values in the reply;
// every other received fd (unreferenced, unanswered, in a signal, or pending at close) is closed here.
import { EventEmitter } from 'node:events';
import { FdWatcher, close as closeFd, constants, dup, recvmsgInto, sendmsg } from '../../../native/fds.js';
import { log } from '../../../log.js';
import { SaslClient } from './auth.js';
import { DBusError, ErrorNames } from './errors.js';
import { MessageFlags, MessageType, decodeMessage, encodeMessage, messageSize, type MessageHeader, type Message } from './message.js';
import { closeFds, closeUnreferenced } from './fds.js';
import { ObjectTable, type InterfaceSpec } from './objects.js';
import { isObjectPath, type DBusValue, type Variant } from './values.js';

export type { InterfaceSpec, MethodSpec, PropertySpec } from './objects.js';

export interface CallOptions {
  path: string;
  interface?: string;
  member: string;
  destination?: string;
  signature?: string;
  body?: DBusValue[];
  /** Default: the connection's callTimeoutMs. */
  timeoutMs?: number;
  /** Send with NO_REPLY_EXPECTED and resolve at once. */
  noReply?: boolean;
}

export interface DBusConnectionOptions {
  /** For logs. */
  name?: string;
  /** Default 25 s, as libdbus. */
  callTimeoutMs?: number;
  authTimeoutMs?: number;
  /** Bytes we may queue for a peer that is not reading before the connection is dropped (default 16 MiB). */
  maxQueuedBytes?: number;
  /** Destination of calls that name none (on a bus: the peer's bus name, e.g. "org.qemu"). */
  destination?: string;
}

export type DBusConnectionEvents = {
  /** reason: null when close() was called; otherwise why the connection ended (a peer hang-up has code ECONNRESET). */
  close: [reason: Error | null];
  /** A fault (malformed data, failed handshake, socket error) just before 'close'; only emitted when listened to. */
  error: [Error];
  /** Its fds are closed once the listeners return: dup() any to keep. */
  signal: [Message];
};

interface PendingCall {
  resolve(body: DBusValue[]): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

interface OutChunk {
  data: Buffer;
  /** Our own copies, closed once sent with the chunk's first byte. */
  fds: number[];
}

const EMPTY: Buffer = Buffer.alloc(0);
const READ_BYTES = 256 * 1024;
const READ_FDS = 64;
const READS_PER_WAKEUP = 64; // then back to the event loop; the watcher fires again while data is left
/** Messages this large are read into a buffer of their own, which is kept for the next one when its handler
 *  borrowed the bytes (MethodSpec.borrowsBytes): QEMU's Scanout/Update frames are megabytes, 60 times a second. */
const LARGE_MESSAGE_BYTES = 1 << 20;

const PROPERTIES = 'org.freedesktop.DBus.Properties';

export class DBusConnection extends EventEmitter<DBusConnectionEvents> {
  /** Resolves once authenticated; rejects if the connection ends first. */
  readonly ready: Promise<void>;
  readonly name: string;
  private readonly destination: string | undefined;
  /** Server GUID from the handshake. */
  guid = '';
  /** Whether the server agreed to pass unix fds. */
  unixFds = false;
  private state: 'auth' | 'open' | 'closed' = 'auth';
  private readonly watcher: FdWatcher;
  private watchedEvents = 0;
  private readonly sasl = new SaslClient();
  private readonly authTimer: NodeJS.Timeout;
  private settleReady!: (error: Error | null) => void;
  private readonly callTimeoutMs: number;
  private lastSerial = 0;
  private readonly calls = new Map<number, PendingCall>();
  private readonly objects = new ObjectTable();
  private inbuf: Buffer = EMPTY;
  private partial: { buf: Buffer; filled: number } | null = null;
  /** Where reads go between messages; nothing keeps a view of it past onBytes (see own()). */
  private readonly readBuffer = Buffer.allocUnsafeSlow(READ_BYTES);
  /** The last large message's buffer, free for the next one (see LARGE_MESSAGE_BYTES). */
  private spare: ArrayBuffer | null = null;
  private readonly fdQueue: number[] = [];
  private readonly out: OutChunk[] = [];
  /** Bytes in `out`: bounded, so a peer that stops reading cannot make us grow without end. */
  private queuedBytes = 0;
  private readonly maxQueuedBytes: number;
  private readonly beforeBegin: OutChunk[] = [];

  /** Takes ownership of fd (a connected, non-blocking AF_UNIX stream socket) and starts the handshake. */
  constructor(private readonly fd: number, options: DBusConnectionOptions = {}) {
    super();
    this.name = options.name ?? `fd ${fd}`;
    this.destination = options.destination;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 16 * 2 ** 20;
    this.callTimeoutMs = options.callTimeoutMs ?? 25_000;
    try {
      this.watcher = new FdWatcher(fd, (status, events) => this.onPoll(status, events));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    this.ready = new Promise((resolve, reject) => {
      this.settleReady = (error) => (error ? reject(error) : resolve());
    });
    this.ready.catch(() => {}); // 'close' carries the failure; an unawaited ready must not be an unhandled rejection
    const authTimeoutMs = options.authTimeoutMs ?? 5000;
    this.authTimer = setTimeout(() => this.fail(Object.assign(
      new Error(`D-Bus ${this.name}: no authentication within ${authTimeoutMs} ms`), { code: 'ETIMEDOUT' })), authTimeoutMs);
    this.write(this.sasl.start(), []);
    this.watch();
  }

  /** Connects over fd and resolves once authenticated. */
  static async open(fd: number, options: DBusConnectionOptions = {}): Promise<DBusConnection> {
    const connection = new DBusConnection(fd, options);
    await connection.ready;
    return connection;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Calls a method; resolves with the reply's values, rejects with a DBusError (error reply, no reply, disconnected). */
  call(options: CallOptions): Promise<DBusValue[]> {
    if (this.state === 'closed') return Promise.reject(new DBusError(ErrorNames.disconnected, `D-Bus ${this.name} is closed`));
    const serial = this.nextSerial();
    const header: MessageHeader = {
      type: MessageType.methodCall, flags: options.noReply ? MessageFlags.noReplyExpected : 0, serial,
      path: options.path, interface: options.interface, member: options.member, destination: options.destination ?? this.destination,
      signature: options.signature ?? '',
    };
    let encoded: { data: Buffer; fds: number[] };
    try {
      if (!isObjectPath(options.path)) throw new TypeError(`'${options.path}' is not a D-Bus object path`);
      encoded = encodeMessage(header, options.body ?? []);
      if (encoded.fds.length && this.state === 'open' && !this.unixFds) throw new DBusError(ErrorNames.failed, `D-Bus ${this.name}: the peer does not take unix fds`);
    } catch (e) {
      return Promise.reject(e);
    }
    const what = `${options.interface ?? ''}.${options.member} on ${options.path}`;
    if (options.noReply) {
      this.send(encoded);
      return Promise.resolve([]);
    }
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.callTimeoutMs;
      const timer = setTimeout(() => {
        this.calls.delete(serial);
        reject(new DBusError(ErrorNames.noReply, `no reply to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.calls.set(serial, { resolve, reject, timer });
      this.send(encoded);
    });
  }

  /** Properties.Get, unwrapped from its variant. */
  async getProperty(path: string, iface: string, name: string): Promise<DBusValue> {
    const [value] = await this.call({ path, interface: PROPERTIES, member: 'Get', signature: 'ss', body: [iface, name] });
    return (value as Variant).value;
  }

  /** Properties.GetAll, unwrapped from the variants. */
  async getAllProperties(path: string, iface: string): Promise<Map<string, DBusValue>> {
    const [all] = await this.call({ path, interface: PROPERTIES, member: 'GetAll', signature: 's', body: [iface] });
    return new Map([...(all as Map<string, Variant>)].map(([k, v]) => [k, v.value]));
  }

  emitSignal(path: string, iface: string, member: string, signature = '', body: DBusValue[] = []): void {
    if (this.state === 'closed') return;
    this.send(encodeMessage({ type: MessageType.signal, flags: 0, serial: this.nextSerial(), path, interface: iface, member, signature }, body));
  }

  /** Serves `iface` at `path` (Properties, Peer and Introspectable come with it). Returns a function that withdraws it. */
  exportInterface(path: string, iface: string, spec: InterfaceSpec): () => void {
    return this.objects.add(path, iface, spec);
  }

  close(): void {
    this.shutdown(null, false);
  }

  // ---- outgoing ----

  private nextSerial(): number {
    this.lastSerial = this.lastSerial >= 0xffffffff ? 1 : this.lastSerial + 1;
    return this.lastSerial;
  }

  private send(encoded: { data: Buffer; fds: number[] }): void {
    if (this.state === 'closed') return;
    if (this.state === 'auth') this.beforeBegin.push({ data: encoded.data, fds: dupAll(encoded.fds) });
    else this.write(encoded.data, encoded.fds);
  }

  /** Sends now if nothing is queued; queues the rest (with copies of the fds not yet sent). */
  private write(data: Buffer, fds: number[]): void {
    if (this.out.length === 0) {
      let sent = 0;
      try {
        sent = sendmsg(this.fd, data, fds);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return this.failSocket(e as Error);
      }
      if (sent === data.length) return;
      this.enqueue({ data: data.subarray(sent), fds: sent === 0 ? dupAll(fds) : [] });
      this.watch();
    } else {
      this.enqueue({ data, fds: dupAll(fds) });
    }
  }

  private enqueue(chunk: OutChunk): void {
    this.out.push(chunk);
    this.queuedBytes += chunk.data.length;
    if (this.queuedBytes > this.maxQueuedBytes) {
      this.shutdown(Object.assign(new Error(`D-Bus ${this.name}: the peer stopped reading (${this.queuedBytes} bytes ` +
        `queued, more than ${this.maxQueuedBytes})`), { code: 'EPEERSTALLED' }), true);
    }
  }

  private flushOut(): void {
    while (this.out.length > 0 && this.state !== 'closed') {
      const chunk = this.out[0];
      let sent: number;
      try {
        sent = sendmsg(this.fd, chunk.data, chunk.fds);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break;
        return this.failSocket(e as Error);
      }
      closeFds(chunk.fds);
      chunk.fds = [];
      chunk.data = chunk.data.subarray(sent);
      this.queuedBytes -= sent;
      if (chunk.data.length === 0) this.out.shift();
    }
    this.watch();
  }

  private watch(): void {
    if (this.state === 'closed') return;
    const events = constants.POLL_READABLE | constants.POLL_DISCONNECT | (this.out.length ? constants.POLL_WRITABLE : 0);
    if (events === this.watchedEvents) return;
    this.watchedEvents = events;
    this.watcher.start(events);
  }

  // ---- incoming ----

  private onPoll(status: number, events: number): void {
    if (this.state === 'closed') return;
    if (status < 0) {
      // libuv reports POLLERR as EBADF; reading gets what is left and then the socket's real error.
      while (!this.closed && this.readSome()) { /* drain */ }
      if (this.closed) return;
      return this.failSocket(Object.assign(new Error(`D-Bus ${this.name}: polling the socket failed (libuv status ${status})`), { code: 'EIO' }));
    }
    if (events & constants.POLL_WRITABLE) this.flushOut();
    if (events & (constants.POLL_READABLE | constants.POLL_DISCONNECT)) this.readSome();
  }

  /** Reads and handles what is there, a bounded amount; true if more may be waiting. The rest of a large message
   *  is read straight into its final buffer (no intermediate copy: Scanout frames are megabytes). */
  private readSome(): boolean {
    for (let i = 0; i < READS_PER_WAKEUP && this.state !== 'closed'; i++) {
      const partial = this.state === 'open' ? this.partial : null;
      const target = partial ? partial.buf.subarray(partial.filled) : this.readBuffer;
      let received;
      try {
        received = recvmsgInto(this.fd, target, READ_FDS);
      } catch (e) {
        this.failSocket(e as Error);
        return false;
      }
      if (received === null) return false;
      if (received.bytes === 0) {
        closeFds(received.fds);
        const error = Object.assign(new Error(`D-Bus ${this.name}: the peer closed the connection`), { code: 'ECONNRESET' });
        this.shutdown(error, false);
        return false;
      }
      const data = target.subarray(0, received.bytes);
      if (this.state === 'auth') {
        closeFds(received.fds); // nobody sends fds during the handshake
        this.onAuthData(Buffer.from(data)); // the SASL client may keep a partial line
      } else if (partial) {
        this.fdQueue.push(...received.fds);
        partial.filled += received.bytes;
        if (partial.filled === partial.buf.length) {
          this.partial = null;
          this.onMessage(partial.buf, true);
        }
      } else {
        this.fdQueue.push(...received.fds);
        this.onBytes(data);
      }
    }
    return this.state !== 'closed';
  }

  private onAuthData(data: Buffer): void {
    let step;
    try {
      step = this.sasl.receive(data);
    } catch (e) {
      return this.shutdown(e as Error, true);
    }
    if (step.send) this.write(Buffer.from(step.send, 'latin1'), []);
    if (!step.done || this.state === 'closed') return;
    this.state = 'open';
    this.guid = step.done.guid;
    this.unixFds = step.done.unixFds;
    clearTimeout(this.authTimer);
    for (const chunk of this.beforeBegin.splice(0)) {
      this.write(chunk.data, chunk.fds);
      closeFds(chunk.fds);
    }
    log.debug({ dbus: this.name, guid: this.guid, unixFds: this.unixFds }, 'D-Bus authenticated');
    this.settleReady(null);
    if (step.done.rest.length) this.onBytes(step.done.rest);
  }

  /** Splits the stream into messages; a large message is gathered into one buffer of its final size. */
  private onBytes(data: Buffer): void {
    while (data.length > 0 && this.state === 'open') {
      if (this.partial) {
        const { buf } = this.partial;
        const n = Math.min(data.length, buf.length - this.partial.filled);
        data.copy(buf, this.partial.filled, 0, n);
        this.partial.filled += n;
        data = data.subarray(n);
        if (this.partial.filled === buf.length) {
          this.partial = null;
          this.onMessage(buf, true);
        }
        continue;
      }
      this.inbuf = this.inbuf.length ? Buffer.concat([this.inbuf, data]) : data;
      data = EMPTY;
      while (this.state === 'open') {
        let size: number | null;
        try {
          size = messageSize(this.inbuf);
        } catch (e) {
          return this.shutdown(e as Error, true);
        }
        if (size === null) break;
        if (this.inbuf.length >= size) {
          const message = this.own(this.inbuf.subarray(0, size));
          this.inbuf = this.inbuf.subarray(size);
          this.onMessage(message, false);
        } else {
          this.partial = { buf: this.messageBuffer(size), filled: this.inbuf.length };
          this.inbuf.copy(this.partial.buf);
          this.inbuf = EMPTY;
          break;
        }
      }
      this.inbuf = this.own(this.inbuf);
    }
  }

  /** bytes, copied if they are in the read buffer (which the next read overwrites). */
  private own(bytes: Buffer): Buffer {
    return bytes.length && bytes.buffer === this.readBuffer.buffer ? Buffer.from(bytes) : bytes;
  }

  /** A buffer for a message of `size` bytes that did not arrive in one read: the spare one when it fits. */
  private messageBuffer(size: number): Buffer {
    if (size < LARGE_MESSAGE_BYTES) return Buffer.allocUnsafe(size);
    const spare = this.spare;
    this.spare = null;
    // A spare much larger than needed is let go, so one 4K frame does not pin 32 MiB for a 1080p stream.
    if (spare && spare.byteLength >= size && spare.byteLength <= 2 * size) return Buffer.from(spare, 0, size);
    return Buffer.allocUnsafeSlow(size);
  }

  /** gathered: buf is a buffer of the message's own (from messageBuffer), not a view of a read. */
  private onMessage(buf: Buffer, gathered: boolean): void {
    let message: Message;
    try {
      message = decodeMessage(buf, this.fdQueue);
    } catch (e) {
      return this.shutdown(e as Error, true);
    }
    log.trace({ dbus: this.name, type: message.type, serial: message.serial, member: message.member, replySerial: message.replySerial, bytes: buf.length }, 'D-Bus message');
    switch (message.type) {
      case MessageType.methodCall:
        if (this.onCall(message) && gathered && buf.length >= LARGE_MESSAGE_BYTES) this.spare = buf.buffer as ArrayBuffer;
        return;
      case MessageType.methodReturn: case MessageType.error: return this.onReply(message);
      case MessageType.signal:
        try {
          this.emit('signal', message);
        } finally {
          closeFds(message.fds);
        }
        return;
      default: closeFds(message.fds); // unknown message types are ignored
    }
  }

  private onReply(message: Message): void {
    const pending = this.calls.get(message.replySerial!);
    if (!pending) {
      closeFds(message.fds);
      return;
    }
    this.calls.delete(message.replySerial!);
    clearTimeout(pending.timer);
    if (message.type === MessageType.methodReturn) {
      closeUnreferenced(message);
      pending.resolve(message.body);
    } else {
      closeFds(message.fds);
      const text = typeof message.body[0] === 'string' ? message.body[0] : message.errorName!;
      pending.reject(new DBusError(message.errorName!, text));
    }
  }

  /** Returns whether the call's buffer is free for reuse (ObjectTable.dispatch). */
  private onCall(call: Message): boolean {
    const wanted = (): boolean => !(call.flags & MessageFlags.noReplyExpected) && this.state !== 'closed';
    return this.objects.dispatch(call, {
      reply: (signature, body) => {
        if (wanted()) this.send(encodeMessage({ type: MessageType.methodReturn, flags: 0, serial: this.nextSerial(), replySerial: call.serial, destination: call.sender, signature }, body));
      },
      error: (errorName, text) => {
        log.debug({ dbus: this.name, member: call.member, path: call.path, errorName, text }, 'D-Bus error reply');
        if (wanted()) this.send(encodeMessage({ type: MessageType.error, flags: 0, serial: this.nextSerial(), replySerial: call.serial, destination: call.sender, errorName, signature: 's' }, [text]));
      },
    });
  }

  // ---- ending ----

  private fail(error: Error): void {
    this.shutdown(error, true);
  }

  private failSocket(error: Error): void {
    const code = (error as NodeJS.ErrnoException).code;
    const hangUp = code === 'EPIPE' || code === 'ECONNRESET';
    this.shutdown(error, !hangUp);
  }

  private shutdown(reason: Error | null, isFault: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.authTimer);
    this.watcher.close();
    try {
      closeFd(this.fd);
    } catch (e) {
      log.debug({ dbus: this.name, err: (e as Error).message }, 'closing the D-Bus socket failed');
    }
    for (const chunk of [...this.out.splice(0), ...this.beforeBegin.splice(0)]) closeFds(chunk.fds);
    closeFds(this.fdQueue.splice(0));
    this.partial = null;
    this.spare = null;
    this.inbuf = EMPTY;
    const gone = reason ? `D-Bus ${this.name} ended: ${reason.message}` : `D-Bus ${this.name} was closed`;
    for (const pending of this.calls.values()) {
      clearTimeout(pending.timer);
      pending.reject(new DBusError(ErrorNames.disconnected, gone));
    }
    this.calls.clear();
    this.settleReady(reason ?? new DBusError(ErrorNames.disconnected, gone));
    if (reason) log.debug({ dbus: this.name, err: reason.message }, 'D-Bus connection ended');
    if (reason && isFault && this.listenerCount('error') > 0) this.emit('error', reason);
    this.emit('close', reason);
  }
}

/** Copies of fds, all or none. */
function dupAll(fds: number[]): number[] {
  const copies: number[] = [];
  try {
    for (const fd of fds) copies.push(dup(fd));
  } catch (e) {
    closeFds(copies);
    throw e;
  }
  return copies;
}
