// Our org.qemu.Display1.Listener at /org/qemu/Display1/Listener: QEMU calls it with the console's scan-out,
// and it turns the calls into events on a sink (the QemuDisplay), in the order QEMU made them.
import { close as closeFd, fstat } from '../../native/fds.js';
import { log } from '../../log.js';
import { countCopy } from '../../copy-stats.js';
import type { DBusConnection } from './dbus/connection.js';
import { DBusError, ErrorNames } from './dbus/errors.js';

export const LISTENER_PATH = '/org/qemu/Display1/Listener';
export const LISTENER_INTERFACE = 'org.qemu.Display1.Listener';
/** QEMU 9.2+: the surface's own memfd instead of its bytes (zero copy). */
export const MAP_INTERFACE = 'org.qemu.Display1.Listener.Unix.Map';
/** QEMU 10.1+: multi-plane dmabuf scan-outs with a sub-rectangle of a larger backing. */
export const DMABUF2_INTERFACE = 'org.qemu.Display1.Listener.Unix.ScanoutDMABUF2';
/** QEMU waits 1 s for the UpdateDMABUF reply, holding the guest's display meanwhile. */
export const UPDATE_DMABUF_SAFETY_MS = 750;

/** pixman format codes QEMU uses for 32-bit surfaces (bits per pixel in the top byte). */
export const PixmanFormat = { x8r8g8b8: 0x20020888, a8r8g8b8: 0x20028888, x8b8g8r8: 0x20030888, a8b8g8r8: 0x20038888 } as const;

/**
 * A new surface, whole. data is a view of the connection's receive buffer, valid only while the event is
 * emitted (the buffer takes the next frame): copy what must outlive the event.
 */
export interface ScanoutEvent { width: number; height: number; stride: number; pixmanFormat: number; data: Buffer }
/** A changed rectangle of the surface; data (valid as ScanoutEvent's) holds just the rectangle, rows `stride` bytes apart. */
export interface UpdateEvent { x: number; y: number; w: number; h: number; stride: number; pixmanFormat: number; data: Buffer }
/**
 * The surface changed size without a Scanout: QEMU 7.x sends a Scanout only for an update covering the whole
 * surface, so after a mode switch (e.g. to VGA text mode, 720x400) only Updates arrive. The Updates that
 * follow this event paint the new surface.
 */
export interface ResizeEvent { width: number; height: number; pixmanFormat: number }
/** A new dmabuf scan-out. fd belongs to the listener of this event, which must close it; with no listener it is closed. */
export interface DmabufScanoutEvent { fd: number; width: number; height: number; stride: number; fourcc: number; modifier: bigint; y0Top: boolean }
/**
 * The dmabuf changed in this rectangle. QEMU holds the guest's display until done() is called (call it when
 * the frame is presented or copied); after UPDATE_DMABUF_SAFETY_MS the reply goes anyway, with a warning.
 */
export interface DmabufUpdateEvent { x: number; y: number; w: number; h: number; done(): void }
/** QEMU's surface as a memfd range (Unix.Map). fd belongs to the listener of this event, which must close it. */
export interface MapScanoutEvent { fd: number; offset: number; width: number; height: number; stride: number; pixmanFormat: number }
/** The mapped surface changed in this rectangle. */
export interface MapUpdateEvent { x: number; y: number; w: number; h: number }
/**
 * A dmabuf scan-out of one to four planes, showing the rectangle x, y, width × height of a backing of
 * backingWidth × backingHeight. fds (one per plane) belong to the listener of this event, which must close them.
 */
export interface Dmabuf2ScanoutEvent {
  fds: number[]; x: number; y: number; width: number; height: number; offsets: number[]; strides: number[];
  fourcc: number; backingWidth: number; backingHeight: number; modifier: bigint; y0Top: boolean;
}
export interface MouseSetEvent { x: number; y: number; on: boolean }
/** data: ARGB32, width*height pixels. */
export interface CursorDefineEvent { width: number; height: number; hotX: number; hotY: number; data: Buffer }

export type ListenerEvents = {
  scanout: [ScanoutEvent];
  update: [UpdateEvent];
  resize: [ResizeEvent];
  'scanout-dmabuf': [DmabufScanoutEvent];
  'scanout-map': [MapScanoutEvent];
  'update-map': [MapUpdateEvent];
  'scanout-dmabuf2': [Dmabuf2ScanoutEvent];
  'update-dmabuf': [DmabufUpdateEvent];
  disable: [];
  'mouse-set': [MouseSetEvent];
  'cursor-define': [CursorDefineEvent];
};

export interface ListenerSink {
  emit<K extends keyof ListenerEvents>(event: K, ...args: ListenerEvents[K]): boolean;
  listenerCount(event: keyof ListenerEvents): number;
}

interface Effect {
  run(): void;
  /** Copies what run() needs of the call's borrowed bytes, when it cannot run before the call returns. */
  keep?(): void;
  /** Releases what run() would have handed over, when it never runs. */
  drop?(): void;
}

export class DisplayListener {
  /** The surface Updates paint: from the last Scanout or resize. */
  surface: ResizeEvent | null = null;
  private closed = false;
  /** Effects waiting, in order, while something holds them: a pause, or reading a changed surface's size. */
  private held: Effect[] | null = null;
  private holds = 0;
  private paused: boolean;
  private readonly pendingDmabufReplies = new Set<() => void>();
  private readonly unexport: (() => void)[];

  /**
   * Serves the listener on `connection`; readConsoleSize reads the console's current Width and Height.
   * When paused, the calls' events wait for resume() (QEMU calls as soon as it has the listener).
   */
  constructor(connection: DBusConnection, private readonly sink: ListenerSink,
    private readonly readConsoleSize: () => Promise<{ width: number; height: number }>, paused = false) {
    this.paused = paused;
    if (paused) this.hold();
    const invalid = (why: string): never => {
      throw new DBusError(ErrorNames.invalidArgs, why);
    };
    this.unexport = [connection.exportInterface(LISTENER_PATH, LISTENER_INTERFACE, {
      properties: { Interfaces: { signature: 'as', get: () => [MAP_INTERFACE, DMABUF2_INTERFACE] } },
      methods: {
        Scanout: {
          in: 'uuuuay',
          borrowsBytes: true,
          handler: ([width, height, stride, pixmanFormat, data]) => {
            const event = { width, height, stride, pixmanFormat, data } as ScanoutEvent;
            const problem = checkPixels(event.width, event.height, event.stride, event.pixmanFormat, event.data);
            if (problem) invalid(`Scanout ${event.width}x${event.height}: ${problem}`);
            this.deliver({
              run: () => {
                log.debug({ width, height, stride, pixmanFormat }, 'QEMU scanout');
                this.surface = { width: event.width, height: event.height, pixmanFormat: event.pixmanFormat };
                this.sink.emit('scanout', event);
              },
              keep: () => keepBytes(event),
            });
          },
        },
        Update: {
          in: 'iiiiuuay',
          borrowsBytes: true,
          handler: ([x, y, w, h, stride, pixmanFormat, data]) => {
            const event = { x, y, w, h, stride, pixmanFormat, data } as UpdateEvent;
            if (event.x < 0 || event.y < 0) invalid(`Update at negative position ${event.x},${event.y}`);
            const problem = checkPixels(event.w, event.h, event.stride, event.pixmanFormat, event.data);
            if (problem) invalid(`Update ${event.w}x${event.h}: ${problem}`);
            this.deliver({ run: () => this.onUpdate(event), keep: () => keepBytes(event) });
          },
        },
        ScanoutDMABUF: {
          in: 'huuuutb',
          handler: ([fd, width, height, stride, fourcc, modifier, y0Top]) => {
            const event = { fd, width, height, stride, fourcc, modifier, y0Top } as DmabufScanoutEvent;
            this.deliver({
              run: () => {
                log.debug({ ...event, modifier: `0x${event.modifier.toString(16)}` }, 'QEMU dmabuf scanout');
                if (this.sink.listenerCount('scanout-dmabuf') === 0) closeFd(event.fd);
                else this.sink.emit('scanout-dmabuf', event);
              },
              drop: () => closeFd(event.fd),
            });
          },
        },
        UpdateDMABUF: {
          in: 'iiii',
          handler: ([x, y, w, h]) => new Promise<void>((resolve) => {
            const reply = (): void => {
              if (!this.pendingDmabufReplies.delete(reply)) return;
              clearTimeout(timer);
              resolve();
            };
            const timer = setTimeout(() => {
              log.warn({ x, y, w, h }, `UpdateDMABUF not done within ${UPDATE_DMABUF_SAFETY_MS} ms: replying anyway so QEMU does not stall the guest`);
              reply();
            }, UPDATE_DMABUF_SAFETY_MS);
            this.pendingDmabufReplies.add(reply);
            this.deliver({
              run: () => {
                if (this.sink.listenerCount('update-dmabuf') === 0) reply();
                else this.sink.emit('update-dmabuf', { x, y, w, h, done: reply } as DmabufUpdateEvent);
              },
              drop: reply,
            });
          }),
        },
        Disable: { in: '', handler: () => this.deliver({ run: () => this.sink.emit('disable') }) },
        MouseSet: {
          in: 'iii',
          handler: ([x, y, on]) => this.deliver({ run: () => this.sink.emit('mouse-set', { x: x as number, y: y as number, on: on !== 0 }) }),
        },
        CursorDefine: {
          in: 'iiiiay',
          handler: ([width, height, hotX, hotY, data]) => {
            const event = { width, height, hotX, hotY, data } as CursorDefineEvent;
            if (event.width < 0 || event.height < 0 || event.data.length < event.width * event.height * 4) {
              invalid(`CursorDefine ${event.width}x${event.height} with ${event.data.length} bytes of ARGB32`);
            }
            this.deliver({ run: () => this.sink.emit('cursor-define', event) });
          },
        },
      },
    }), connection.exportInterface(LISTENER_PATH, MAP_INTERFACE, {
      methods: {
        ScanoutMap: {
          in: 'huuuuu',
          handler: ([fd, offset, width, height, stride, pixmanFormat]) => {
            const event = { fd, offset, width, height, stride, pixmanFormat } as MapScanoutEvent;
            const problem = checkMap(event);
            if (problem) {
              closeFd(event.fd);
              invalid(`ScanoutMap ${event.width}x${event.height}: ${problem}`);
            }
            this.deliver({
              run: () => {
                this.surface = { width: event.width, height: event.height, pixmanFormat: event.pixmanFormat };
                if (this.sink.listenerCount('scanout-map') === 0) closeFd(event.fd);
                else this.sink.emit('scanout-map', event);
              },
              drop: () => closeFd(event.fd),
            });
          },
        },
        UpdateMap: {
          in: 'iiii',
          handler: ([x, y, w, h]) => {
            const event = { x, y, w, h } as MapUpdateEvent;
            if (event.x < 0 || event.y < 0 || event.w <= 0 || event.h <= 0) invalid(`UpdateMap ${event.w}x${event.h} at ${event.x},${event.y}`);
            this.deliver({
              run: () => {
                if (fits(this.surface, event)) this.sink.emit('update-map', event);
                else log.warn({ ...event, surface: this.surface }, 'QEMU UpdateMap outside the mapped surface: dropped');
              },
            });
          },
        },
      },
    }), connection.exportInterface(LISTENER_PATH, DMABUF2_INTERFACE, {
      methods: {
        ScanoutDMABUF2: {
          in: 'ahuuuuauauuuuutb',
          handler: ([fds, x, y, width, height, offsets, strides, numPlanes, fourcc, backingWidth, backingHeight, modifier, y0Top]) => {
            const event = {
              fds, x, y, width, height, offsets, strides, fourcc, backingWidth, backingHeight, modifier, y0Top,
            } as Dmabuf2ScanoutEvent;
            const problem = checkDmabuf2(event, numPlanes as number);
            if (problem) {
              event.fds.forEach((fd) => closeFd(fd));
              invalid(`ScanoutDMABUF2 ${event.width}x${event.height}: ${problem}`);
            }
            this.deliver({
              run: () => {
                if (this.sink.listenerCount('scanout-dmabuf2') === 0) event.fds.forEach((fd) => closeFd(fd));
                else this.sink.emit('scanout-dmabuf2', event);
              },
              drop: () => event.fds.forEach((fd) => closeFd(fd)),
            });
          },
        },
      },
    })];
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.release();
  }

  /** Stops serving; held effects are dropped (their fds closed) and UpdateDMABUF calls answered. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unexport.forEach((unexport) => unexport());
    for (const effect of this.held?.splice(0) ?? []) effect.drop?.();
    this.held = null;
    for (const reply of [...this.pendingDmabufReplies]) reply();
  }

  private deliver(effect: Effect): void {
    if (this.closed) return effect.drop?.();
    if (this.held) {
      effect.keep?.();
      this.held.push(effect);
      return;
    }
    try {
      effect.run();
    } catch (e) {
      // An event listener threw. Held effects run outside any D-Bus call, so this is where it is reported;
      // the effects behind it still run, and QEMU is not told about our bug.
      log.error({ err: e }, 'a QEMU display event listener threw');
    }
  }

  private hold(): void {
    this.holds++;
    this.held ??= [];
  }

  private release(): void {
    if (--this.holds > 0) return;
    const held = this.held ?? [];
    this.held = null;
    for (const effect of held) this.deliver(effect); // an effect may hold again: the rest then wait behind it
  }

  private onUpdate(event: UpdateEvent): void {
    if (fits(this.surface, event)) {
      this.sink.emit('update', event);
      return;
    }
    // A size change QEMU did not announce with a Scanout. The console's Width and Height already hold the new
    // size (their PropertiesChanged signal comes later), so everything waits until they are read.
    this.hold();
    keepBytes(event);
    this.held!.push({ run: () => this.onResizedUpdate(event) });
    this.readConsoleSize().then(({ width, height }) => {
      if (this.closed) return;
      this.surface = { width, height, pixmanFormat: event.pixmanFormat };
      log.debug(this.surface, 'QEMU surface resized without a scanout');
      this.sink.emit('resize', this.surface);
    }, (e: Error) => {
      log.debug({ err: e.message }, 'reading the console size failed');
    }).finally(() => this.release());
  }

  private onResizedUpdate(event: UpdateEvent): void {
    if (fits(this.surface, event)) this.sink.emit('update', event);
    else log.warn({ x: event.x, y: event.y, w: event.w, h: event.h, surface: this.surface }, 'QEMU update outside the surface: dropped');
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

/** Why a ScanoutMap cannot be shown, or null. The memfd must hold the whole surface (no SIGBUS for anyone). */
function checkMap(e: MapScanoutEvent): string | null {
  const bpp = e.pixmanFormat >>> 24;
  if (e.width <= 0 || e.height <= 0) return 'empty size';
  if (bpp !== 32) return `pixman format 0x${e.pixmanFormat.toString(16)} is not a 32-bit format`;
  if (e.stride < e.width * 4) return `stride ${e.stride} is shorter than a row (${e.width * 4} bytes)`;
  let size: number;
  try {
    size = fstat(e.fd).size;
  } catch (error) {
    return `fd ${e.fd} cannot be used: ${(error as Error).message}`;
  }
  const needed = e.offset + e.stride * (e.height - 1) + e.width * 4;
  if (size < needed) return `the memfd holds ${size} bytes, the surface needs ${needed} from offset ${e.offset}`;
  return null;
}

/** Why a ScanoutDMABUF2 cannot be shown, or null. */
function checkDmabuf2(e: Dmabuf2ScanoutEvent, numPlanes: number): string | null {
  if (numPlanes < 1 || numPlanes > 4) return `${numPlanes} planes (1..4)`;
  if (e.fds.length !== numPlanes || e.offsets.length !== numPlanes || e.strides.length !== numPlanes) {
    return `${numPlanes} planes but ${e.fds.length} fds, ${e.offsets.length} offsets, ${e.strides.length} strides`;
  }
  if (e.width <= 0 || e.height <= 0) return 'empty size';
  if (e.x + e.width > e.backingWidth || e.y + e.height > e.backingHeight) {
    return `rectangle ${e.width}x${e.height}+${e.x}+${e.y} outside the ${e.backingWidth}x${e.backingHeight} backing`;
  }
  return null;
}

const keptEvents = new WeakSet<ScanoutEvent | UpdateEvent>();

/** Gives a Scanout/Update that must wait a copy of its borrowed bytes (once): the receive buffer is reused. */
function keepBytes(event: ScanoutEvent | UpdateEvent): void {
  if (keptEvents.has(event)) return;
  keptEvents.add(event);
  event.data = Buffer.from(event.data);
  countCopy('qemu-held-pixels', event.data.length);
}
