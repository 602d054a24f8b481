// A client connection to a Wayland compositor: owns the native connection, maps handles to proxy objects,
// batches flushes, and turns failures into one 'error' event.
import { EventEmitter } from 'node:events';
import { addon } from '../native/addon.js';
import type { NativeWlConnection, WireValue } from '../native/addon-types.js';
import { ALL_INTERFACES, PROXY_CLASSES, WlDisplay, type WlCallback } from './protocols/index.js';
import type { EventArg, EventMeta, Proxy } from './proxy.js';

let interfacesDefined = false;

export interface ConnectionError extends Error {
  code?: string;
  protocolError?: { interface: string; id: number; code: number };
}

export class Connection extends EventEmitter<{ error: [ConnectionError] }> {
  readonly native: NativeWlConnection;
  readonly display: WlDisplay;
  /** Set once the connection has failed; every later request throws it. */
  failure: ConnectionError | null = null;
  private readonly proxies = new Map<number, Proxy>();
  private flushQueued = false;
  private closed = false;

  /** Connects to `name` (a socket name or absolute path), or to $WAYLAND_DISPLAY. */
  constructor(name?: string) {
    super();
    if (!interfacesDefined) {
      addon.wlDefineInterfaces(ALL_INTERFACES);
      interfacesDefined = true;
    }
    this.native = new addon.WlConnection(name ?? null,
      (handle, opcode, args) => this.onEvent(handle, opcode, args),
      (error) => this.onError(error));
    this.display = new WlDisplay(this, this.native.displayHandle, 1);
    this.proxies.set(this.display.handle, this.display);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves once the compositor has processed every request sent so far. */
  roundtrip(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const onError = (e: ConnectionError): void => reject(e);
      const callback: WlCallback = this.display.sync();
      callback.on({ done: () => { this.off('error', onError); resolve(); } });
      this.once('error', onError);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const proxy of this.proxies.values()) proxy.destroyed = true;
    this.proxies.clear();
    this.native.disconnect();
  }

  /** @internal */
  marshal(proxy: Proxy, opcode: number, args: WireValue[], iface: string | null, version: number,
    destroy: boolean): Proxy | null {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error(`${proxy.interfaceName}: the Wayland connection is closed`);
    const handle = this.native.marshal(proxy.handle, opcode, args, iface, version, destroy);
    this.queueFlush();
    return iface ? this.adopt(handle, iface, version) : null;
  }

  /** @internal */
  forget(proxy: Proxy): void {
    proxy.destroyed = true;
    this.proxies.delete(proxy.handle);
  }

  /** @internal Converts one event argument from its wire value. */
  fromWire(arg: EventArg, value: WireValue, version: number): unknown {
    if (arg.kind === 'o') return value ? this.proxies.get(value as number) ?? null : null;
    if (arg.kind === 'n') return this.adopt(value as number, arg.iface!, version);
    return value;
  }

  /** @internal Events nobody listens to must not leak the fds they carry. */
  closeUnclaimedFds(meta: EventMeta, raw: WireValue[]): void {
    meta.args.forEach((arg, i) => {
      if (arg.kind === 'h') addon.close(raw[i] as number);
    });
  }

  private adopt(handle: number, iface: string, version: number): Proxy {
    const cls = PROXY_CLASSES.get(iface);
    if (!cls) throw new Error(`no generated class for Wayland interface ${iface}`);
    const proxy = new cls(this, handle, version);
    this.proxies.set(handle, proxy);
    return proxy;
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      if (!this.closed && !this.failure) this.native.flush();
    });
  }

  private onEvent(handle: number, opcode: number, args: WireValue[]): void {
    const proxy = this.proxies.get(handle);
    if (proxy) proxy.dispatch(opcode, args);
  }

  private onError(error: ConnectionError): void {
    this.failure = error;
    this.emit('error', error);
  }
}
