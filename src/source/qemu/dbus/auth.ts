// The client side of the D-Bus SASL handshake: AUTH EXTERNAL with our uid, NEGOTIATE_UNIX_FD, BEGIN.
import { DBusAuthError } from './errors.js';

const MAX_LINE = 16 * 1024;

export interface AuthResult {
  guid: string;
  unixFds: boolean;
  /** Bytes that followed the server's last line: the start of the message stream. */
  rest: Buffer;
}

export class SaslClient {
  private state: 'auth' | 'negotiate' | 'done' = 'auth';
  private pending: Buffer = Buffer.alloc(0);
  private guid = '';
  private unixFds = false;

  constructor(private readonly uid = process.getuid?.() ?? 0) {}

  /** What the client sends first: the credentials byte, then AUTH. */
  start(): Buffer {
    return Buffer.from(`\0AUTH EXTERNAL ${Buffer.from(String(this.uid)).toString('hex')}\r\n`, 'latin1');
  }

  /**
   * Feeds server bytes; returns the lines to send back, and the result once the handshake is over.
   * Throws a DBusAuthError when the server refuses or says something unexpected.
   */
  receive(data: Buffer): { send: string; done: AuthResult | null } {
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    let send = '';
    for (;;) {
      if (this.state === 'done') break;
      const eol = this.pending.indexOf('\r\n');
      if (eol < 0) {
        if (this.pending.length > MAX_LINE) throw new DBusAuthError(`authentication line longer than ${MAX_LINE} bytes`);
        break;
      }
      const line = this.pending.subarray(0, eol).toString('latin1');
      this.pending = this.pending.subarray(eol + 2);
      send += this.onLine(line);
    }
    const done = this.state === 'done' ? { guid: this.guid, unixFds: this.unixFds, rest: this.pending } : null;
    return { send, done };
  }

  private onLine(line: string): string {
    const [command, ...args] = line.split(' ');
    if (this.state === 'auth') {
      if (command === 'OK' && /^[0-9a-fA-F]{32}$/.test(args[0] ?? '')) {
        this.guid = args[0];
        this.state = 'negotiate';
        return 'NEGOTIATE_UNIX_FD\r\n';
      }
      if (command === 'REJECTED') {
        throw new DBusAuthError(`the server rejected AUTH EXTERNAL for uid ${this.uid} (it offers: ${args.join(' ') || 'nothing'})`);
      }
    } else if (this.state === 'negotiate') {
      if (command === 'AGREE_UNIX_FD' || command === 'ERROR') {
        this.unixFds = command === 'AGREE_UNIX_FD';
        this.state = 'done';
        return 'BEGIN\r\n';
      }
    }
    throw new DBusAuthError(`unexpected authentication reply '${line.slice(0, 200)}' while ${this.state === 'auth' ? 'authenticating' : 'negotiating unix fd passing'}`);
  }
}
