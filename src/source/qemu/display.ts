// A QEMU display over D-Bus, peer to peer (-display dbus,p2p=yes): attaches through QMP, reads the VM and
// console, registers a listener for the scan-out, and sends keyboard and mouse input to the console.
//
// Connections: QMP (kept, as .qmp), the display connection (QEMU's objects) and the listener connection
// (our /org/qemu/Display1/Listener, which QEMU calls). When any of them ends, the display closes.
import { EventEmitter } from 'node:events';
import { close as closeFd, socketpair } from '../../native/fds.js';
import { log } from '../../log.js';
import { DBusConnection } from './dbus/connection.js';
import { DBusError, ErrorNames } from './dbus/errors.js';
import type { DBusValue, Variant } from './dbus/values.js';
import { QmpClient } from './qmp.js';

const ROOT = '/org/qemu/Display1';
const LISTENER_PATH = `${ROOT}/Listener`;
const IFACE = 'org.qemu.Display1';
/** QEMU waits 1 s for the UpdateDMABUF reply, blocking the guest's display meanwhile. */
const UPDATE_DMABUF_SAFETY_MS = 750;

/** pixman format codes QEMU uses for 32-bit surfaces (bits per pixel in the top byte). */
export const PixmanFormat = { x8r8g8b8: 0x20020888, a8r8g8b8: 0x20028888, x8b8g8r8: 0x20030888, a8b8g8r8: 0x20038888 } as const;

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

export interface ConsoleInfo {
  id: number;
  label: string;
  head: number;
  type: string;
  width: number;
  height: number;
  deviceAddress: string;
}

/** A new surface, whole. data is a view of the received message: copy what must outlive the event. */
export interface ScanoutEvent { width: number; height: number; stride: number; pixmanFormat: number; data: Buffer }
/** A changed rectangle of the surface; data holds just the rectangle, rows `stride` bytes apart. */
export interface UpdateEvent { x: number; y: number; w: number; h: number; stride: number; pixmanFormat: number; data: Buffer }
/** A new dmabuf scan-out. fd belongs to the listener of this event, which must close it; with no listener the display closes it. */
export interface DmabufScanoutEvent { fd: number; width: number; height: number; stride: number; fourcc: number; modifier: bigint; y0Top: boolean }
/**
 * The dmabuf changed in this rectangle. QEMU holds the guest's display until done() is called (call it when
 * the frame is presented or copied); after 750 ms the display replies anyway and logs a warning.
 */
export interface DmabufUpdateEvent { x: number; y: number; w: number; h: number; done(): void }
/**
 * The surface changed size without a Scanout: QEMU 7.x sends a Scanout only for an update covering the whole
 * surface, so after a mode switch (e.g. VGA text mode at 720x400) only Updates arrive. The Updates that follow
 * this event paint the new surface.
 */
export interface ResizeEvent { width: number; height: number; pixmanFormat: number }
export interface MouseSetEvent { x: number; y: number; on: boolean }
/** data: ARGB32, width*height pixels. */
export interface CursorDefineEvent { width: number; height: number; hotX: number; hotY: number; data: Buffer }

export type QemuDisplayEvents = {
  scanout: [ScanoutEvent];
  update: [UpdateEvent];
  resize: [ResizeEvent];
  'scanout-dmabuf': [DmabufScanoutEvent];
  'update-dmabuf': [DmabufUpdateEvent];
  disable: [];
  'mouse-set': [MouseSetEvent];
  'cursor-define': [CursorDefineEvent];
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
  /** The surface the Updates paint, from the last Scanout or resize. */
  surface: ResizeEvent | null = null;
  private closedReason: Error | null | undefined = undefined;
  private readonly pendingDmabufUpdates = new Set<() => void>();
  /** Listener calls waiting, in order, while the size of a changed surface is read. */
  private held: { run(): void; drop?(): void }[] | null = null;

  private constructor(readonly qmp: QmpClient, readonly dbus: DBusConnection, readonly listener: DBusConnection,
    readonly vm: VmInfo, readonly console: ConsoleInfo) {
    super();
    qmp.on('close', (reason) => this.end(reason ?? new Error('the QMP connection was closed')));
    dbus.on('close', (reason) => this.end(reason ?? new Error('the D-Bus display connection was closed')));
    listener.on('close', (reason) => this.end(reason ?? new Error('the D-Bus listener connection was closed')));
    dbus.on('signal', (message) => {
      const [iface, changed] = message.body as [string, Map<string, Variant>];
      if (message.path !== this.consolePath || message.member !== 'PropertiesChanged' || iface !== `${IFACE}.Console`) return;
      for (const [name, key] of [['Width', 'width'], ['Height', 'height']] as const) {
        const value = changed.get(name)?.value;
        if (typeof value === 'number') this.console[key] = value;
      }
    });
  }

  /** Connects to QEMU's QMP socket, opens the p2p D-Bus display and registers as the console's listener. */
  static async attach(options: QemuDisplayOptions): Promise<QemuDisplay> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const consoleId = options.console ?? 0;
    const qmp = await QmpClient.connect(options.qmpPath, { timeoutMs });
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
      dbus = new DBusConnection(ours, { name: 'qemu display', callTimeoutMs: timeoutMs, authTimeoutMs: timeoutMs });
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
      // loop blocked, around its RegisterListener reply: the listener must already be handshaking and serving.
      const [mine, qemus] = socketpair();
      listener = new DBusConnection(mine, { name: 'qemu listener', callTimeoutMs: timeoutMs, authTimeoutMs: timeoutMs });
      const display = new QemuDisplay(qmp, dbus, listener, vm, console);
      display.serveListener();
      const registered = dbus.call({ path: consolePath, interface: `${IFACE}.Console`, member: 'RegisterListener', signature: 'h', body: [qemus] });
      closeFd(qemus); // sent, or copied into the send queue
      await Promise.all([registered, listener.ready]);
      if (display.closed) throw display.closedReason ?? new Error('the display closed while attaching');
      log.debug({ vm, console }, 'attached to the QEMU display');
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

  close(): void {
    this.end(null);
  }

  private get consolePath(): string {
    return `${ROOT}/Console_${this.console.id}`;
  }

  private async input(iface: string, member: string, signature: string, body: DBusValue[]): Promise<void> {
    await this.dbus.call({ path: this.consolePath, interface: `${IFACE}.${iface}`, member, signature, body });
  }

  private serveListener(): void {
    const invalid = (why: string): never => {
      throw new DBusError(ErrorNames.invalidArgs, why);
    };
    this.listener.exportInterface(LISTENER_PATH, `${IFACE}.Listener`, {
      properties: { Interfaces: { signature: 'as', get: () => [] } },
      methods: {
        Scanout: {
          in: 'uuuuay',
          handler: ([width, height, stride, pixmanFormat, data]) => {
            const event = { width, height, stride, pixmanFormat, data } as ScanoutEvent;
            const problem = checkPixels(event.width, event.height, event.stride, event.pixmanFormat, event.data);
            if (problem) invalid(`Scanout ${event.width}x${event.height}: ${problem}`);
            this.deliver(() => {
              log.debug({ width, height, stride, pixmanFormat }, 'QEMU scanout');
              this.surface = { width: event.width, height: event.height, pixmanFormat: event.pixmanFormat };
              this.emit('scanout', event);
            });
          },
        },
        Update: {
          in: 'iiiiuuay',
          handler: ([x, y, w, h, stride, pixmanFormat, data]) => {
            const event = { x, y, w, h, stride, pixmanFormat, data } as UpdateEvent;
            if (event.x < 0 || event.y < 0) invalid(`Update at negative position ${event.x},${event.y}`);
            const problem = checkPixels(event.w, event.h, event.stride, event.pixmanFormat, event.data);
            if (problem) invalid(`Update ${event.w}x${event.h}: ${problem}`);
            this.deliver(() => this.onUpdate(event));
          },
        },
        ScanoutDMABUF: {
          in: 'huuuutb',
          handler: ([fd, width, height, stride, fourcc, modifier, y0Top]) => {
            const event = { fd, width, height, stride, fourcc, modifier, y0Top } as DmabufScanoutEvent;
            log.debug({ ...event, modifier: `0x${event.modifier.toString(16)}` }, 'QEMU dmabuf scanout');
            this.deliver(() => {
              if (this.listenerCount('scanout-dmabuf') === 0) closeFd(event.fd);
              else this.emit('scanout-dmabuf', event);
            }, () => closeFd(event.fd));
          },
        },
        UpdateDMABUF: {
          in: 'iiii',
          handler: ([x, y, w, h]) => new Promise<void>((resolve) => {
            let replied = false;
            const reply = (): void => {
              if (replied) return;
              replied = true;
              clearTimeout(timer);
              this.pendingDmabufUpdates.delete(reply);
              resolve();
            };
            const timer = setTimeout(() => {
              log.warn({ x, y, w, h }, `UpdateDMABUF not done within ${UPDATE_DMABUF_SAFETY_MS} ms: replying anyway so QEMU does not stall the guest`);
              reply();
            }, UPDATE_DMABUF_SAFETY_MS);
            this.pendingDmabufUpdates.add(reply);
            this.deliver(() => {
              if (this.listenerCount('update-dmabuf') === 0) reply();
              else this.emit('update-dmabuf', { x, y, w, h, done: reply } as DmabufUpdateEvent);
            });
          }),
        },
        Disable: { in: '', handler: () => this.deliver(() => this.emit('disable')) },
        MouseSet: {
          in: 'iii',
          handler: ([x, y, on]) => this.deliver(() => this.emit('mouse-set', { x: x as number, y: y as number, on: on !== 0 })),
        },
        CursorDefine: {
          in: 'iiiiay',
          handler: ([width, height, hotX, hotY, data]) => {
            const event = { width, height, hotX, hotY, data } as CursorDefineEvent;
            if (event.width < 0 || event.height < 0 || event.data.length < event.width * event.height * 4) {
              invalid(`CursorDefine ${event.width}x${event.height} with ${event.data.length} bytes of ARGB32`);
            }
            this.deliver(() => this.emit('cursor-define', event));
          },
        },
      },
    });
  }

  /** Runs a listener call's effect now, or after the held ones; drop() undoes what it owns if it never runs. */
  private deliver(run: () => void, drop?: () => void): void {
    if (this.closed) drop?.();
    else if (this.held) this.held.push({ run, drop });
    else run();
  }

  private onUpdate(event: UpdateEvent): void {
    if (fits(this.surface, event)) {
      this.emit('update', event);
      return;
    }
    // A size change QEMU did not announce with a Scanout: the console's Width and Height already have the new
    // size (its PropertiesChanged signal comes later), so hold everything until they are read.
    this.held = [{ run: () => this.onResizedUpdate(event) }];
    this.dbus.getAllProperties(this.consolePath, `${IFACE}.Console`).then((props) => {
      if (this.closed) return;
      this.console.width = Number(props.get('Width'));
      this.console.height = Number(props.get('Height'));
      this.surface = { width: this.console.width, height: this.console.height, pixmanFormat: event.pixmanFormat };
      log.debug(this.surface, 'QEMU surface resized without a scanout');
      this.emit('resize', this.surface);
    }, (e: Error) => {
      log.debug({ err: e.message }, 'reading the console size failed');
    }).finally(() => {
      const held = this.held ?? [];
      this.held = null;
      for (const { run, drop } of held) this.deliver(run, drop);
    });
  }

  private onResizedUpdate(event: UpdateEvent): void {
    if (fits(this.surface, event)) this.emit('update', event);
    else log.warn({ x: event.x, y: event.y, w: event.w, h: event.h, surface: this.surface }, 'QEMU update outside the surface: dropped');
  }

  private end(reason: Error | null): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    for (const { drop } of this.held?.splice(0) ?? []) drop?.();
    this.held = null;
    for (const reply of [...this.pendingDmabufUpdates]) reply();
    this.listener.close();
    this.dbus.close();
    this.qmp.close();
    log.debug({ err: reason?.message }, 'QEMU display closed');
    this.emit('close', reason);
  }
}

function fits(surface: ResizeEvent | null, r: { x: number; y: number; w: number; h: number }): boolean {
  return surface !== null && r.x + r.w <= surface.width && r.y + r.h <= surface.height;
}

/** Why a width x height image of `stride`-byte rows cannot be in data, or null when it can. */
function checkPixels(width: number, height: number, stride: number, pixmanFormat: number, data: Buffer): string | null {
  const bpp = pixmanFormat >>> 24;
  if (width <= 0 || height <= 0) return 'empty size';
  if (bpp === 0 || bpp % 8 !== 0) return `pixman format 0x${pixmanFormat.toString(16)} has ${bpp} bits per pixel`;
  const rowBytes = width * (bpp / 8);
  if (stride < rowBytes) return `stride ${stride} is shorter than a row (${rowBytes} bytes)`;
  const needed = stride * (height - 1) + rowBytes;
  if (data.length < needed) return `${data.length} bytes of data, ${needed} needed`;
  return null;
}
