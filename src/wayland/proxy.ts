// Base of every generated protocol class: one instance per Wayland object, owning its handle in the addon.
import type { InterfaceDescriptor, WireValue } from '../native/addon-types.js';
import type { Connection } from './connection.js';

export interface EventArg {
  kind: string; // signature letter: i u f s o n a h
  iface: string | null;
}

export interface EventMeta {
  name: string;
  args: EventArg[];
  destructor: boolean;
}

export interface ProxyClass<T extends Proxy = Proxy> {
  new (connection: Connection, handle: number, version: number): T;
  readonly iface: InterfaceDescriptor;
  readonly events: readonly EventMeta[];
  readonly requestSince: readonly number[];
}

export abstract class Proxy<Events extends object = object> {
  protected handlers: Partial<Events> = {};
  destroyed = false;

  constructor(readonly connection: Connection, readonly handle: number, readonly version: number) {}

  get interfaceName(): string {
    return (this.constructor as ProxyClass).iface.name;
  }

  /** Object id on the wire, as in WAYLAND_DEBUG output and protocol errors. */
  get id(): number {
    return this.connection.native.id(this.handle);
  }

  toString(): string {
    return `${this.interfaceName}#${this.destroyed ? '?' : this.id}`;
  }

  /** Sets event handlers (merged with earlier ones). */
  on(handlers: Partial<Events>): this {
    Object.assign(this.handlers, handlers);
    return this;
  }

  /** Destroys the client-side object of an interface that has no destructor request (e.g. wl_callback). */
  destroyProxy(): void {
    if (this.destroyed) return;
    this.connection.forget(this);
    this.connection.native.destroyProxy(this.handle);
  }

  /** @internal Called by the connection with raw wire values. */
  dispatch(opcode: number, raw: WireValue[]): void {
    const meta = (this.constructor as ProxyClass).events[opcode];
    if (!meta) throw new Error(`${this}: event opcode ${opcode} is not in its protocol`);
    const handler = (this.handlers as Record<string, ((...a: unknown[]) => void) | undefined>)[meta.name];
    const values = meta.args.map((arg, i) => this.connection.fromWire(arg, raw[i], this.version));
    try {
      if (handler) handler.apply(this, values);
      else this.connection.closeUnclaimedFds(meta, raw);
    } finally {
      if (meta.destructor) this.destroyProxy();
    }
  }

  protected checkSince(opcode: number, name: string): void {
    if (this.destroyed) throw new Error(`${this.interfaceName}.${name}: object was already destroyed`);
    const since = (this.constructor as ProxyClass).requestSince[opcode];
    if (since > this.version) {
      throw new Error(`${this.interfaceName}.${name} needs version ${since}, object has version ${this.version}`);
    }
  }

  protected request(opcode: number, name: string, args: WireValue[]): void {
    this.checkSince(opcode, name);
    this.connection.marshal(this, opcode, args, null, 0, false);
  }

  protected requestDestroy(opcode: number, name: string, args: WireValue[]): void {
    this.checkSince(opcode, name);
    this.connection.forget(this);
    this.connection.marshal(this, opcode, args, null, 0, true);
  }

  protected requestNew<T extends Proxy>(opcode: number, name: string, args: WireValue[], iface: string,
    version = this.version): T {
    this.checkSince(opcode, name);
    return this.connection.marshal(this, opcode, args, iface, version, false) as T;
  }
}
