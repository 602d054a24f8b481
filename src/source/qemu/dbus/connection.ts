// A D-Bus peer-to-peer connection over an already-connected AF_UNIX socket: we are the authentication client,
// there is no bus (no Hello, no names). Method calls with reply matching and timeouts, exported objects with
// Properties/Peer/Introspectable, unix fds both ways.
//
// Fd ownership: the connection owns the socket fd from the constructor on. Fds sent with a message stay the
// caller's (copies are kept while a message waits in the send queue). Received fds belong to whoever gets the
// value holding them: a method handler for its 'h' arguments, the caller of call() for 'h' values in the reply;
// every other received fd (unreferenced, unanswered, in a signal, or pending at close) is closed here.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { FdWatcher, close as closeFd, constants, dup, recvmsg, sendmsg } from '../../../native/fds.js';
import { log } from '../../../log.js';
import { SaslClient } from './auth.js';
import { DBusError, ErrorNames } from './errors.js';
import { MessageFlags, MessageType, decodeMessage, encodeMessage, messageSize, type MessageHeader, type Message } from './message.js';
import { parseSignature } from './signature.js';
import { Variant, isObjectPath, type DBusValue } from './values.js';

export interface MethodSpec {
  /** Argument signature; a call with other arguments gets an InvalidArgs error reply. */
  in: string;
  /** Reply signature (default: none). */
  out?: string;
  /**
   * Returns the reply: its single value, an array of values when `out` has several, nothing when it has none;
   * or a Promise of that, and the reply goes when it resolves. A thrown DBusError becomes that error reply.
   * 'h' arguments are fds that belong to the handler from now on.
   */
  handler(args: DBusValue[], message: Message): unknown;
}

export interface PropertySpec {
  signature: string;
  get(): DBusValue;
}

export interface InterfaceSpec {
  methods?: Record<string, MethodSpec>;
  properties?: Record<string, PropertySpec>;
}

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

const PEER = 'org.freedesktop.DBus.Peer';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
const INTROSPECTABLE = 'org.freedesktop.DBus.Introspectable';

export class DBusConnection extends EventEmitter<DBusConnectionEvents> {
  /** Resolves once authenticated; rejects if the connection ends first. */
  readonly ready: Promise<void>;
  readonly name: string;
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
  private readonly objects = new Map<string, Map<string, InterfaceSpec>>();
  private inbuf: Buffer = EMPTY;
  private partial: { buf: Buffer; filled: number } | null = null;
  private readonly fdQueue: number[] = [];
  private readonly out: OutChunk[] = [];
  private readonly beforeBegin: OutChunk[] = [];

  /** Takes ownership of fd (a connected, non-blocking AF_UNIX stream socket) and starts the handshake. */
  constructor(private readonly fd: number, options: DBusConnectionOptions = {}) {
    super();
    this.name = options.name ?? `fd ${fd}`;
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
      path: options.path, interface: options.interface, member: options.member, destination: options.destination,
      signature: options.signature ?? '',
    };
    let encoded: { data: Buffer; fds: number[] };
    try {
      if (!isObjectPath(options.path)) throw new TypeError(`'${options.path}' is not a D-Bus object path`);
      encoded = encodeMessage(header, options.body ?? []);
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
    if (!isObjectPath(path)) throw new TypeError(`'${path}' is not a D-Bus object path`);
    for (const [member, method] of Object.entries(spec.methods ?? {})) {
      parseSignature(method.in);
      parseSignature(method.out ?? '');
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(member)) throw new TypeError(`'${member}' is not a D-Bus member name`);
    }
    let interfaces = this.objects.get(path);
    if (!interfaces) this.objects.set(path, (interfaces = new Map()));
    interfaces.set(iface, spec);
    return () => {
      if (interfaces.get(iface) !== spec) return;
      interfaces.delete(iface);
      if (interfaces.size === 0) this.objects.delete(path);
    };
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
    if (this.state === 'auth') this.beforeBegin.push({ data: encoded.data, fds: encoded.fds.map((fd) => dup(fd)) });
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
      this.out.push({ data: data.subarray(sent), fds: sent === 0 ? fds.map((fd) => dup(fd)) : [] });
      this.watch();
    } else {
      this.out.push({ data, fds: fds.map((fd) => dup(fd)) });
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
      closeAll(chunk.fds);
      chunk.fds = [];
      chunk.data = chunk.data.subarray(sent);
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

  /** Reads and handles what is there, a bounded amount; true if more may be waiting. */
  private readSome(): boolean {
    for (let i = 0; i < READS_PER_WAKEUP && this.state !== 'closed'; i++) {
      let received;
      try {
        received = recvmsg(this.fd, READ_BYTES, READ_FDS);
      } catch (e) {
        this.failSocket(e as Error);
        return false;
      }
      if (received === null) return false;
      if (received.data.length === 0) {
        closeAll(received.fds);
        const error = Object.assign(new Error(`D-Bus ${this.name}: the peer closed the connection`), { code: 'ECONNRESET' });
        this.shutdown(error, false);
        return false;
      }
      if (this.state === 'auth') {
        closeAll(received.fds); // nobody sends fds during the handshake
        this.onAuthData(received.data);
      } else {
        this.fdQueue.push(...received.fds);
        this.onBytes(received.data);
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
      closeAll(chunk.fds);
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
          this.onMessage(buf);
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
          const message = this.inbuf.subarray(0, size);
          this.inbuf = this.inbuf.subarray(size);
          this.onMessage(message);
        } else {
          this.partial = { buf: Buffer.allocUnsafe(size), filled: this.inbuf.length };
          this.inbuf.copy(this.partial.buf);
          this.inbuf = EMPTY;
          break;
        }
      }
    }
  }

  private onMessage(buf: Buffer): void {
    let message: Message;
    try {
      message = decodeMessage(buf, this.fdQueue);
    } catch (e) {
      return this.shutdown(e as Error, true);
    }
    log.trace({ dbus: this.name, type: message.type, serial: message.serial, member: message.member, replySerial: message.replySerial, bytes: buf.length }, 'D-Bus message');
    switch (message.type) {
      case MessageType.methodCall: return this.onCall(message);
      case MessageType.methodReturn: case MessageType.error: return this.onReply(message);
      case MessageType.signal:
        try {
          this.emit('signal', message);
        } finally {
          closeAll(message.fds);
        }
        return;
      default: closeAll(message.fds); // unknown message types are ignored
    }
  }

  private onReply(message: Message): void {
    const pending = this.calls.get(message.replySerial!);
    if (!pending) {
      closeAll(message.fds);
      return;
    }
    this.calls.delete(message.replySerial!);
    clearTimeout(pending.timer);
    if (message.type === MessageType.methodReturn) {
      closeUnreferenced(message);
      pending.resolve(message.body);
    } else {
      closeAll(message.fds);
      const text = typeof message.body[0] === 'string' ? message.body[0] : message.errorName!;
      pending.reject(new DBusError(message.errorName!, text));
    }
  }

  private onCall(call: Message): void {
    const reply = (signature: string, body: DBusValue[]): void => {
      if (call.flags & MessageFlags.noReplyExpected || this.state === 'closed') return;
      this.send(encodeMessage({ type: MessageType.methodReturn, flags: 0, serial: this.nextSerial(), replySerial: call.serial, destination: call.sender, signature }, body));
    };
    const replyError = (errorName: string, text: string): void => {
      log.debug({ dbus: this.name, member: call.member, path: call.path, errorName, text }, 'D-Bus error reply');
      if (call.flags & MessageFlags.noReplyExpected || this.state === 'closed') return;
      this.send(encodeMessage({ type: MessageType.error, flags: 0, serial: this.nextSerial(), replySerial: call.serial, destination: call.sender, errorName, signature: 's' }, [text]));
    };
    const fail = (e: unknown): void => (e instanceof DBusError ? replyError(e.errorName, e.message)
      : replyError(ErrorNames.failed, e instanceof Error ? e.message : String(e)));

    const builtin = this.builtinCall(call);
    if (builtin) {
      closeAll(call.fds);
      try {
        return reply(...builtin());
      } catch (e) {
        return fail(e);
      }
    }
    const target = this.findMethod(call);
    if (target instanceof DBusError) {
      closeAll(call.fds);
      return fail(target);
    }
    const { method, out } = target;
    if (call.signature !== method.in) {
      closeAll(call.fds);
      return replyError(ErrorNames.invalidArgs, `${call.member} takes (${method.in}), got (${call.signature})`);
    }
    closeUnreferenced(call);
    const send = (value: unknown): void => {
      try {
        reply(method.out ?? '', out === 0 ? [] : out === 1 ? [value as DBusValue] : (value as DBusValue[]));
      } catch (e) {
        log.warn({ dbus: this.name, member: call.member, err: (e as Error).message }, 'D-Bus method handler returned a value that does not fit its out signature');
        fail(e);
      }
    };
    let result: unknown;
    try {
      result = method.handler(call.body, call);
    } catch (e) {
      return fail(e);
    }
    if (result instanceof Promise) result.then(send, fail);
    else send(result);
  }

  private findMethod(call: Message): { method: MethodSpec; out: number } | DBusError {
    const interfaces = this.objects.get(call.path!);
    if (!interfaces) return new DBusError(ErrorNames.unknownObject, `no object at ${call.path}`);
    const candidates = call.interface ? [interfaces.get(call.interface)] : [...interfaces.values()];
    if (call.interface && !candidates[0]) return new DBusError(ErrorNames.unknownInterface, `${call.path} has no interface ${call.interface}`);
    for (const spec of candidates) {
      const method = spec?.methods?.[call.member!];
      if (method) return { method, out: parseSignature(method.out ?? '').length };
    }
    return new DBusError(ErrorNames.unknownMethod, `${call.path} has no method ${call.interface ?? ''}${call.interface ? '.' : ''}${call.member}`);
  }

  /** Peer, Introspectable and Properties; returns the reply's [signature, body] maker, or null for other calls. */
  private builtinCall(call: Message): (() => [string, DBusValue[]]) | null {
    const { interface: iface, member, body } = call;
    if (iface === PEER && member === 'Ping' && call.signature === '') return () => ['', []];
    if (iface === PEER && member === 'GetMachineId') return () => ['s', [machineId()]];
    if (iface === INTROSPECTABLE && member === 'Introspect') return () => ['s', [this.introspect(call.path!)]];
    if (iface !== PROPERTIES) return null;
    return () => {
      const expected = { Get: 'ss', GetAll: 's', Set: 'ssv' }[member!];
      if (!expected) throw new DBusError(ErrorNames.unknownMethod, `${PROPERTIES} has no method ${member}`);
      if (call.signature !== expected) throw new DBusError(ErrorNames.invalidArgs, `${member} takes (${expected}), got (${call.signature})`);
      const interfaces = this.objects.get(call.path!);
      if (!interfaces) throw new DBusError(ErrorNames.unknownObject, `no object at ${call.path}`);
      const spec = interfaces.get(body[0] as string);
      if (!spec) throw new DBusError(ErrorNames.unknownInterface, `${call.path} has no interface ${body[0]}`);
      const properties = spec.properties ?? {};
      if (member === 'GetAll') {
        return ['a{sv}', [new Map(Object.entries(properties).map(([name, p]) => [name, new Variant(p.signature, p.get())]))]];
      }
      const property = properties[body[1] as string];
      if (!property) throw new DBusError(ErrorNames.unknownProperty, `${body[0]} has no property ${body[1]}`);
      if (member === 'Set') throw new DBusError(ErrorNames.propertyReadOnly, `${body[0]}.${body[1]} is read-only`);
      return ['v', [new Variant(property.signature, property.get())]];
    };
  }

  private introspect(path: string): string {
    const lines = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
      ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', '<node>'];
    for (const [name, spec] of this.objects.get(path) ?? []) {
      lines.push(`  <interface name="${name}">`);
      for (const [member, method] of Object.entries(spec.methods ?? {})) {
        const args = [...parseSignature(method.in).map((t) => `<arg type="${t.sig}" direction="in"/>`),
          ...parseSignature(method.out ?? '').map((t) => `<arg type="${t.sig}" direction="out"/>`)];
        lines.push(`    <method name="${member}">${args.join('')}</method>`);
      }
      for (const [prop, p] of Object.entries(spec.properties ?? {})) lines.push(`    <property name="${prop}" type="${p.signature}" access="read"/>`);
      lines.push('  </interface>');
    }
    const prefix = path === '/' ? '/' : path + '/';
    const children = new Set([...this.objects.keys()].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length).split('/')[0]));
    for (const child of children) lines.push(`  <node name="${child}"/>`);
    lines.push('</node>');
    return lines.join('\n');
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
    for (const chunk of [...this.out.splice(0), ...this.beforeBegin.splice(0)]) closeAll(chunk.fds);
    closeAll(this.fdQueue.splice(0));
    this.partial = null;
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

function closeAll(fds: number[]): void {
  for (const fd of fds) {
    try {
      closeFd(fd);
    } catch (e) {
      log.warn({ fd, err: (e as Error).message }, 'closing a received fd failed');
    }
  }
}

function closeUnreferenced(message: Message): void {
  closeAll(message.fds.filter((_, i) => !message.referencedFds.has(i)));
}

let cachedMachineId: string | null = null;
function machineId(): string {
  if (cachedMachineId === null) {
    try {
      cachedMachineId = readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      cachedMachineId = '';
    }
  }
  if (!cachedMachineId) throw new DBusError(ErrorNames.failed, 'no /etc/machine-id');
  return cachedMachineId;
}
