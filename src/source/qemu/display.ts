// A QEMU display over D-Bus, peer to peer (-display dbus,p2p=yes): attaches through QMP, reads the VM and
// console, registers a listener for the scan-out, and sends keyboard and mouse input to the console.
//
// Connections: QMP (kept, as .qmp), the display connection (QEMU's objects) and the listener connection
// (our /org/qemu/Display1/Listener, which QEMU calls). When any of them ends, the display closes.
import { EventEmitter } from 'node:events';
import { close as closeFd, socketpair, unixConnect } from '../../native/fds.js';
import { log } from '../../log.js';
import { DBusConnection } from './dbus/connection.js';
import type { DBusValue, Variant } from './dbus/values.js';
import { DisplayListener, type ListenerEvents, type ResizeEvent } from './listener.js';
import { QmpClient } from './qmp.js';

export * from './listener.js';

const ROOT = '/org/qemu/Display1';
const IFACE = 'org.qemu.Display1';
/** The name QEMU owns on a bus (-display dbus without p2p). */
const QEMU_BUS_NAME = 'org.qemu';

async function readVmInfo(dbus: DBusConnection): Promise<VmInfo> {
  const props = await dbus.getAllProperties(`${ROOT}/VM`, `${IFACE}.VM`);
  return {
    name: String(props.get('Name') ?? ''), uuid: String(props.get('UUID') ?? ''),
    consoleIds: (props.get('ConsoleIDs') as number[] | undefined) ?? [],
  };
}

/** The unix socket of a D-Bus address ("session": $DBUS_SESSION_BUS_ADDRESS); the first unix: entry is used. */
export function unixTransport(address: string): { path: string; abstract: boolean } {
  const resolved = address === 'session' ? process.env.DBUS_SESSION_BUS_ADDRESS : address;
  if (!resolved) throw new Error('no session bus: $DBUS_SESSION_BUS_ADDRESS is not set');
  for (const entry of resolved.split(';')) {
    const m = /^unix:(.*)$/.exec(entry);
    if (!m) continue;
    const keys = new Map(m[1].split(',').map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), decodeURIComponent(kv.slice(i + 1))] as [string, string];
    }));
    if (keys.has('path')) return { path: keys.get('path')!, abstract: false };
    if (keys.has('abstract')) return { path: keys.get('abstract')!, abstract: true };
  }
  throw new Error(`D-Bus address '${resolved}' has no unix:path= or unix:abstract= transport`);
}

export interface QemuDisplayOptions {
  /** Peer to peer (-display dbus,p2p=yes): QEMU's QMP unix socket (-qmp unix:PATH,server=on,wait=off). */
  qmpPath?: string;
  /** Bus mode (-display dbus[,addr=ADDR]): the bus QEMU is on, "session" for $DBUS_SESSION_BUS_ADDRESS, or a
   *  D-Bus address with a unix transport ("unix:path=/run/user/1000/bus", "unix:abstract=..."). */
  dbusAddress?: string;
  /** Console id (default 0). */
  console?: number;
  /** For each QMP and D-Bus call; default 5 s. */
  timeoutMs?: number;
}

export interface VmInfo {
  name: string;
  uuid: string;
  consoleIds: number[];
}

/** The console's properties; width and height follow QEMU's PropertiesChanged signals. */
export interface ConsoleInfo {
  id: number;
  label: string;
  head: number;
  type: string;
  width: number;
  height: number;
  deviceAddress: string;
}

export type QemuDisplayEvents = ListenerEvents & {
  /** reason: null after close(); otherwise why (e.g. QEMU exited). */
  close: [reason: Error | null];
  /** The guest's mouse became absolute (a tablet) or relative (Mouse.IsAbsolute changed). */
  'mouse-mode': [absolute: boolean];
};

/** Mouse buttons as the D-Bus interface numbers them. */
export const MouseButton = { left: 0, middle: 1, right: 2, wheelUp: 3, wheelDown: 4, side: 5, extra: 6 } as const;

let attachCount = 0;

/**
 * One QEMU's D-Bus display: the QMP connection (kept, as .qmp) and the display connection (QEMU's objects).
 * Consoles are opened on it, each with its own listener connection; several QemuVms may live in one process.
 */
export class QemuVm extends EventEmitter<{ close: [reason: Error | null] }> {
  private closedReason: Error | null | undefined = undefined;

  private constructor(readonly qmp: QmpClient | null, readonly dbus: DBusConnection, readonly vm: VmInfo,
    readonly timeoutMs: number) {
    super();
    qmp?.on('close', (reason) => this.end(reason ?? new Error('the QMP connection was closed')));
    dbus.on('close', (reason) => this.end(reason ?? new Error('the D-Bus display connection was closed')));
  }

  /**
   * Peer to peer (qmpPath): connects to QEMU's QMP socket and opens the D-Bus display through it (QMP getfd +
   * add_client). Bus mode (dbusAddress): connects to the bus and talks to QEMU's name there, org.qemu.
   */
  static async attach(options: Omit<QemuDisplayOptions, 'console'>): Promise<QemuVm> {
    const timeoutMs = options.timeoutMs ?? 5000;
    if (options.dbusAddress !== undefined) return QemuVm.attachBus(options.dbusAddress, timeoutMs);
    if (options.qmpPath === undefined) throw new Error('QemuVm.attach needs qmpPath (peer to peer) or dbusAddress (bus)');
    const qmp = await QmpClient.connect(options.qmpPath, { timeoutMs });
    let dbus: DBusConnection | null = null;
    try {
      const [ours, theirs] = socketpair();
      const fdname = `wlscanout-dbus-${process.pid}-${++attachCount}`;
      try {
        await qmp.getfd(fdname, theirs);
      } catch (e) {
        closeFd(ours);
        throw e;
      } finally {
        closeFd(theirs);
      }
      dbus = new DBusConnection(ours, { name: 'qemu display', callTimeoutMs: timeoutMs, authTimeoutMs: timeoutMs });
      await qmp.execute('add_client', { protocol: '@dbus-display', fdname });
      await dbus.ready;
      return new QemuVm(qmp, dbus, await readVmInfo(dbus), timeoutMs);
    } catch (e) {
      dbus?.close();
      qmp.close();
      throw e;
    }
  }

  private static async attachBus(address: string, timeoutMs: number): Promise<QemuVm> {
    const { path, abstract } = unixTransport(address);
    const dbus = new DBusConnection(unixConnect(path, abstract), {
      name: `bus ${address}`, callTimeoutMs: timeoutMs, authTimeoutMs: timeoutMs, destination: QEMU_BUS_NAME,
    });
    try {
      await dbus.ready;
      const bus = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
      await dbus.call({ ...bus, member: 'Hello' });
      const [owned] = await dbus.call({ ...bus, member: 'NameHasOwner', signature: 's', body: [QEMU_BUS_NAME] });
      if (!owned) throw new Error(`no QEMU on the bus ${address}: nobody owns ${QEMU_BUS_NAME} (QEMU runs with -display dbus, not p2p=yes?)`);
      // On a bus, signals (PropertiesChanged of consoles and mice) come only to those who ask.
      await dbus.call({ ...bus, member: 'AddMatch', signature: 's', body: [`type='signal',sender='${QEMU_BUS_NAME}'`] });
      await dbus.call({ ...bus, member: 'AddMatch', signature: 's',
        body: [`type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${QEMU_BUS_NAME}'`] });
      const vm = new QemuVm(null, dbus, await readVmInfo(dbus), timeoutMs);
      // The bus outlives QEMU: its name losing its owner is how we learn QEMU has gone.
      dbus.on('signal', (message) => {
        if (message.member !== 'NameOwnerChanged' || message.interface !== 'org.freedesktop.DBus') return;
        const [name, , newOwner] = message.body as [string, string, string];
        if (name === QEMU_BUS_NAME && newOwner === '') vm.end(new Error(`QEMU left the bus (${QEMU_BUS_NAME} has no owner)`));
      });
      return vm;
    } catch (e) {
      dbus.close();
      throw e;
    }
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get closeReason(): Error | null | undefined {
    return this.closedReason;
  }

  /** A console's properties (Label, Head, Type, size, device). */
  async consoleInfo(id: number): Promise<ConsoleInfo> {
    if (!this.vm.consoleIds.includes(id)) {
      throw new Error(`QEMU has no console ${id} (it has: ${this.vm.consoleIds.join(', ') || 'none'})`);
    }
    const props = await this.dbus.getAllProperties(`${ROOT}/Console_${id}`, `${IFACE}.Console`);
    return {
      id, label: String(props.get('Label') ?? ''), head: Number(props.get('Head') ?? 0),
      type: String(props.get('Type') ?? ''), width: Number(props.get('Width') ?? 0), height: Number(props.get('Height') ?? 0),
      deviceAddress: String(props.get('DeviceAddress') ?? ''),
    };
  }

  /** The ids of the graphic consoles (Type "Graphic"), in QEMU's order. */
  async graphicConsoles(): Promise<number[]> {
    const ids: number[] = [];
    for (const id of this.vm.consoleIds) if ((await this.consoleInfo(id)).type === 'Graphic') ids.push(id);
    return ids;
  }

  /**
   * Registers a listener on console `id`. Events start once the code after `await openConsole()` has run:
   * subscribe there, before awaiting anything else.
   */
  async openConsole(id: number): Promise<QemuDisplay> {
    const console = await this.consoleInfo(id);
    const consolePath = `${ROOT}/Console_${id}`;
    // QEMU authenticates the listener connection and calls Properties.GetAll on it synchronously, its main
    // loop blocked, around its RegisterListener reply: our end must already be handshaking and serving.
    const [mine, qemus] = socketpair();
    const listener = new DBusConnection(mine, { name: `qemu listener ${id}`, callTimeoutMs: this.timeoutMs, authTimeoutMs: this.timeoutMs });
    const display = new QemuDisplay(this, listener, console);
    try {
      const registered = this.dbus.call({ path: consolePath, interface: `${IFACE}.Console`, member: 'RegisterListener', signature: 'h', body: [qemus] });
      closeFd(qemus); // sent, or copied into the send queue
      await Promise.all([registered, listener.ready]);
      if (display.closed) throw display.closeReason ?? new Error('the display closed while attaching');
    } catch (e) {
      display.close();
      throw e;
    }
    log.debug({ vm: this.vm, console }, 'attached to the QEMU console');
    // QEMU's first Scanout may already be here: events flow once the caller's `await openConsole()` has resumed.
    setImmediate(() => display.resume());
    return display;
  }

  close(): void {
    this.end(null);
  }

  private end(reason: Error | null): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.dbus.close();
    this.qmp?.close();
    log.debug({ err: reason?.message }, 'QEMU display connection closed');
    this.emit('close', reason);
  }
}

/** One console of a QemuVm: its listener (scan-out events) and its keyboard and mouse. */
export class QemuDisplay extends EventEmitter<QemuDisplayEvents> {
  readonly keyboard = {
    /** qnum: QEMU key number (PC XT scan code; extended keys 0x80 | code). */
    press: (qnum: number): Promise<void> => this.input('Keyboard', 'Press', 'u', [qnum]),
    release: (qnum: number): Promise<void> => this.input('Keyboard', 'Release', 'u', [qnum]),
  };
  readonly mouse = {
    press: (button: number): Promise<void> => this.input('Mouse', 'Press', 'u', [button]),
    release: (button: number): Promise<void> => this.input('Mouse', 'Release', 'u', [button]),
    /** Only when the guest's mouse is absolute (e.g. a USB tablet); QEMU answers an error otherwise. */
    setAbsPosition: (x: number, y: number): Promise<void> => this.input('Mouse', 'SetAbsPosition', 'uu', [x, y]),
    /** Only when the guest's mouse is relative; QEMU answers an error otherwise. */
    relMotion: (dx: number, dy: number): Promise<void> => this.input('Mouse', 'RelMotion', 'ii', [dx, dy]),
    isAbsolute: async (): Promise<boolean> => (await this.dbus.getProperty(this.consolePath, `${IFACE}.Mouse`, 'IsAbsolute')) as boolean,
  };
  readonly vm: VmInfo;
  private readonly displayListener: DisplayListener;
  private closedReason: Error | null | undefined = undefined;
  /** Set by attach(): closing this display closes the VM connection too. */
  private ownsConnection = false;
  private readonly onConnectionClose = (reason: Error | null): void => this.end(reason ?? new Error('the QEMU display connection was closed'));
  private readonly onSignal = (message: { path?: string; member?: string; body: unknown }): void => {
    if (message.path !== this.consolePath || message.member !== 'PropertiesChanged') return;
    const [iface, changed] = message.body as [string, Map<string, Variant>];
    const absolute = changed.get('IsAbsolute')?.value;
    if (iface === `${IFACE}.Mouse` && typeof absolute === 'boolean') this.emit('mouse-mode', absolute);
    if (iface !== `${IFACE}.Console`) return;
    for (const [name, key] of [['Width', 'width'], ['Height', 'height']] as const) {
      const value = changed.get(name)?.value;
      if (typeof value === 'number') this.console[key] = value;
    }
  };

  constructor(readonly connection: QemuVm, readonly listener: DBusConnection, readonly console: ConsoleInfo) {
    super();
    this.vm = connection.vm;
    this.displayListener = new DisplayListener(listener, this, () => this.readConsoleSize(), true);
    connection.on('close', this.onConnectionClose);
    listener.on('close', (reason) => this.end(reason ?? new Error('the D-Bus listener connection was closed')));
    this.dbus.on('signal', this.onSignal);
  }

  /**
   * Attaches to QEMU (QemuVm.attach) and opens one console (default 0); closing the display closes the
   * connection. Events start once the code after `await QemuDisplay.attach()` has run.
   */
  static async attach(options: QemuDisplayOptions): Promise<QemuDisplay> {
    const vm = await QemuVm.attach(options);
    try {
      const display = await vm.openConsole(options.console ?? 0);
      display.ownsConnection = true;
      return display;
    } catch (e) {
      vm.close();
      throw e;
    }
  }

  /** The QMP connection (peer to peer only). */
  get qmp(): QmpClient | null {
    return this.connection.qmp;
  }

  get dbus(): DBusConnection {
    return this.connection.dbus;
  }

  /** Starts delivering the listener's events (held from registration on). */
  resume(): void {
    this.displayListener.resume();
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get closeReason(): Error | null | undefined {
    return this.closedReason;
  }

  /** The surface Updates paint: from the last Scanout or resize event. */
  get surface(): ResizeEvent | null {
    return this.displayListener.surface;
  }

  close(): void {
    this.end(null);
  }

  private get consolePath(): string {
    return `${ROOT}/Console_${this.console.id}`;
  }

  private async input(iface: string, member: string, signature: string, body: DBusValue[]): Promise<void> {
    await this.dbus.call({ path: this.consolePath, interface: `${IFACE}.${iface}`, member, signature, body });
  }

  private async readConsoleSize(): Promise<{ width: number; height: number }> {
    const props = await this.dbus.getAllProperties(this.consolePath, `${IFACE}.Console`);
    this.console.width = Number(props.get('Width'));
    this.console.height = Number(props.get('Height'));
    return { width: this.console.width, height: this.console.height };
  }

  private end(reason: Error | null): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.displayListener.close();
    this.listener.close();
    this.connection.off('close', this.onConnectionClose);
    this.dbus.off('signal', this.onSignal);
    if (this.ownsConnection) this.connection.close();
    log.debug({ console: this.console.id, err: reason?.message }, 'QEMU console closed');
    this.emit('close', reason);
  }
}
