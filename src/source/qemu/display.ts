// A QEMU display over D-Bus, peer to peer (-display dbus,p2p=yes): attaches through QMP, reads the VM and
// console, registers a listener for the scan-out, and sends keyboard and mouse input to the console.
//
// Connections: QMP (kept, as .qmp), the display connection (QEMU's objects) and the listener connection
// (our /org/qemu/Display1/Listener, which QEMU calls). When any of them ends, the display closes.
import { EventEmitter } from 'node:events';
import { close as closeFd, socketpair } from '../../native/fds.js';
import { log } from '../../log.js';
import { DBusConnection } from './dbus/connection.js';
import type { DBusValue, Variant } from './dbus/values.js';
import { DisplayListener, type ListenerEvents, type ResizeEvent } from './listener.js';
import { QmpClient } from './qmp.js';

export * from './listener.js';

const ROOT = '/org/qemu/Display1';
const IFACE = 'org.qemu.Display1';

export interface QemuDisplayOptions {
  /** QEMU's QMP unix socket (-qmp unix:PATH,server=on,wait=off). */
  qmpPath: string;
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
};

/** Mouse buttons as the D-Bus interface numbers them. */
export const MouseButton = { left: 0, middle: 1, right: 2, wheelUp: 3, wheelDown: 4, side: 5, extra: 6 } as const;

let attachCount = 0;

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
  private readonly displayListener: DisplayListener;
  private closedReason: Error | null | undefined = undefined;

  private constructor(readonly qmp: QmpClient, readonly dbus: DBusConnection, readonly listener: DBusConnection,
    readonly vm: VmInfo, readonly console: ConsoleInfo) {
    super();
    this.displayListener = new DisplayListener(listener, this, () => this.readConsoleSize(), true);
    qmp.on('close', (reason) => this.end(reason ?? new Error('the QMP connection was closed')));
    dbus.on('close', (reason) => this.end(reason ?? new Error('the D-Bus display connection was closed')));
    listener.on('close', (reason) => this.end(reason ?? new Error('the D-Bus listener connection was closed')));
    dbus.on('signal', (message) => {
      if (message.path !== this.consolePath || message.member !== 'PropertiesChanged') return;
      const [iface, changed] = message.body as [string, Map<string, Variant>];
      if (iface !== `${IFACE}.Console`) return;
      for (const [name, key] of [['Width', 'width'], ['Height', 'height']] as const) {
        const value = changed.get(name)?.value;
        if (typeof value === 'number') this.console[key] = value;
      }
    });
  }

  /**
   * Connects to QEMU's QMP socket, opens the p2p D-Bus display and registers as the console's listener.
   * Events start once the code after `await QemuDisplay.attach()` has run: subscribe there, before awaiting anything else.
   */
  static async attach(options: QemuDisplayOptions): Promise<QemuDisplay> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const consoleId = options.console ?? 0;
    const qmp = await QmpClient.connect(options.qmpPath, { timeoutMs });
    const dbusOptions = { callTimeoutMs: timeoutMs, authTimeoutMs: timeoutMs };
    let dbus: DBusConnection | null = null;
    let listener: DBusConnection | null = null;
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
      dbus = new DBusConnection(ours, { name: 'qemu display', ...dbusOptions });
      await qmp.execute('add_client', { protocol: '@dbus-display', fdname });
      await dbus.ready;

      const vmProps = await dbus.getAllProperties(`${ROOT}/VM`, `${IFACE}.VM`);
      const vm: VmInfo = {
        name: String(vmProps.get('Name') ?? ''), uuid: String(vmProps.get('UUID') ?? ''),
        consoleIds: (vmProps.get('ConsoleIDs') as number[] | undefined) ?? [],
      };
      if (!vm.consoleIds.includes(consoleId)) {
        throw new Error(`QEMU has no console ${consoleId} (it has: ${vm.consoleIds.join(', ') || 'none'})`);
      }
      const consolePath = `${ROOT}/Console_${consoleId}`;
      const props = await dbus.getAllProperties(consolePath, `${IFACE}.Console`);
      const console: ConsoleInfo = {
        id: consoleId, label: String(props.get('Label') ?? ''), head: Number(props.get('Head') ?? 0),
        type: String(props.get('Type') ?? ''), width: Number(props.get('Width') ?? 0), height: Number(props.get('Height') ?? 0),
        deviceAddress: String(props.get('DeviceAddress') ?? ''),
      };

      // QEMU authenticates the listener connection and calls Properties.GetAll on it synchronously, its main
      // loop blocked, around its RegisterListener reply: our end must already be handshaking and serving.
      const [mine, qemus] = socketpair();
      listener = new DBusConnection(mine, { name: 'qemu listener', ...dbusOptions });
      const display = new QemuDisplay(qmp, dbus, listener, vm, console);
      const registered = dbus.call({ path: consolePath, interface: `${IFACE}.Console`, member: 'RegisterListener', signature: 'h', body: [qemus] });
      closeFd(qemus); // sent, or copied into the send queue
      await Promise.all([registered, listener.ready]);
      if (display.closed) throw display.closedReason ?? new Error('the display closed while attaching');
      log.debug({ vm, console }, 'attached to the QEMU display');
      // QEMU's first Scanout may already be here: events flow once the caller's `await attach()` has resumed.
      setImmediate(() => display.displayListener.resume());
      return display;
    } catch (e) {
      listener?.close();
      dbus?.close();
      qmp.close();
      throw e;
    }
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
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
    this.dbus.close();
    this.qmp.close();
    log.debug({ err: reason?.message }, 'QEMU display closed');
    this.emit('close', reason);
  }
}
