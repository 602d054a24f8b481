// A QMP client over QEMU's unix socket: greeting, capabilities negotiation, commands matched to replies by id,
// asynchronous events, and getfd with the fd passed by SCM_RIGHTS.
//
// Node's net.Socket cannot attach fds to what it writes (libuv does so only on IPC pipes, with its own framing),
// so getfd's command goes out through the native sendmsg() on the socket's own fd, once everything Node had
// queued on the socket has reached the kernel; Node keeps doing all the reading.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { sendmsg } from '../../native/fds.js';
import { log } from '../../log.js';

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/** An error reply from QEMU: class (e.g. GenericError) and description. */
export class QmpError extends Error {
  override name = 'QmpError';
  constructor(readonly errorClass: string, readonly command: string, description: string) {
    super(`QMP ${command}: ${description} (${errorClass})`);
  }
}

export interface QmpOptions {
  /** For each command; default 10 s. */
  timeoutMs?: number;
}

type QmpEvents = {
  event: [QmpEvent];
  /** reason: null after close(); otherwise why the connection ended. */
  close: [reason: Error | null];
};

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class QmpClient extends EventEmitter<QmpEvents> {
  greeting: QmpGreeting | null = null;
  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  private buffered = '';
  private writesInFlight = 0;
  private flushWaiters: (() => void)[] = [];
  private closedReason: Error | null | undefined = undefined;
  private greeted!: { resolve(g: QmpGreeting): void; reject(e: Error): void };

  private constructor(private readonly socket: net.Socket, private readonly timeoutMs: number) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (e) => this.end(e));
    socket.on('close', () => this.end(Object.assign(new Error('QMP: QEMU closed the connection'), { code: 'ECONNRESET' })));
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, options: QmpOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = net.createConnection(path);
    const client = new QmpClient(socket, timeoutMs);
    const greeting = new Promise<QmpGreeting>((resolve, reject) => {
      client.greeted = { resolve, reject };
    });
    const timer = setTimeout(() => client.end(new Error(`QMP ${path}: no greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      client.greeting = await greeting;
      await client.execute('qmp_capabilities');
      return client;
    } catch (e) {
      client.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Runs a command; resolves with its "return" value, rejects with a QmpError or when the connection ends. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    return this.request(command, args, (line) => this.writeLine(line));
  }

  /**
   * Hands QEMU a copy of fd under `name` (for add_client, device_add and the like). The caller keeps its fd
   * and may close it once this resolves.
   */
  async getfd(name: string, fd: number): Promise<void> {
    await this.writesFlushed();
    await this.request('getfd', { fdname: name }, (line) => {
      const bytes = Buffer.from(line);
      const socketFd = (this.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof socketFd !== 'number' || socketFd < 0) throw new Error('QMP: the socket has no fd to send through');
      const sent = sendmsg(socketFd, bytes, [fd]);
      if (sent < bytes.length) this.writeLine(bytes.subarray(sent).toString()); // the fd went with the first part
    });
  }

  close(): void {
    this.end(null);
  }

  private request<T>(command: string, args: Record<string, unknown> | undefined, write: (line: string) => void): Promise<T> {
    if (this.closedReason !== undefined) {
      return Promise.reject(new Error(`QMP ${command}: the connection is closed${this.closedReason ? ` (${this.closedReason.message})` : ''}`));
    }
    const id = ++this.lastId;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e);
      }
    });
  }

  private writeLine(line: string): void {
    this.writesInFlight++;
    this.socket.write(line, () => {
      if (--this.writesInFlight === 0) for (const waiter of this.flushWaiters.splice(0)) waiter();
    });
  }

  private writesFlushed(): Promise<void> {
    if (this.writesInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let eol: number;
    while ((eol = this.buffered.indexOf('\n')) >= 0 && this.closedReason === undefined) {
      const line = this.buffered.slice(0, eol).trim();
      this.buffered = this.buffered.slice(eol + 1);
      if (line) this.onLine(line);
    }
    if (this.buffered.length > 16 * 1024 * 1024) this.end(new Error('QMP: a reply line longer than 16 MiB'));
  }

  private onLine(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      return this.end(new Error(`QMP: not JSON: ${line.slice(0, 200)}`));
    }
    if ('QMP' in message) return this.greeted?.resolve(message.QMP as QmpGreeting);
    if ('event' in message) {
      log.debug({ event: message.event }, 'QMP event');
      this.emit('event', message as unknown as QmpEvent);
      return;
    }
    const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (!pending) return log.debug({ line: line.slice(0, 200) }, 'QMP reply nobody waits for');
    this.pending.delete(message.id as number);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string };
      pending.reject(new QmpError(error.class ?? 'unknown', pending.command, error.desc ?? 'no description'));
    } else {
      pending.resolve(message.return);
    }
  }

  private end(reason: Error | null): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.socket.destroy();
    const why = reason ? reason.message : 'closed';
    this.greeted?.reject(new Error(`QMP: no greeting (${why})`));
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`QMP ${pending.command}: the connection ended (${why})`));
    }
    this.pending.clear();
    for (const waiter of this.flushWaiters.splice(0)) waiter();
    this.emit('close', reason);
  }
}
