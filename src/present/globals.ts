// Binds the compositor globals the presenter uses, each at the highest version both sides know.
import type { Connection } from '../wayland/connection.js';
import {
  WlCompositor, WlShm, WlOutput, WlSeat, XdgWmBase, WpViewporter, WpPresentation, ZxdgDecorationManagerV1,
  WpFractionalScaleManagerV1, ZwlrScreencopyManagerV1, WestonScreenshooter, WlShmFormat, ZwpLinuxDmabufV1,
  ZwpLinuxExplicitSynchronizationV1, ZwpPointerConstraintsV1, ZwpRelativePointerManagerV1,
  ZwpKeyboardShortcutsInhibitManagerV1,
} from '../wayland/protocols/index.js';
import { DmabufFormats } from './dmabuf-formats.js';
import type { Proxy, ProxyClass } from '../wayland/proxy.js';

export interface Global {
  name: number;
  interface: string;
  version: number;
}

export interface SeatEntry {
  seat: WlSeat;
  capabilities: number;
  watchers: ((capabilities: number) => void)[];
}

export interface Globals {
  all: Global[];
  compositor: WlCompositor;
  shm: WlShm;
  /** wl_shm formats the compositor accepts, as wl_shm.format codes. */
  shmFormats: Set<number>;
  wmBase: XdgWmBase | null;
  viewporter: WpViewporter | null;
  presentation: WpPresentation | null;
  presentationClock: number | null;
  decorationManager: ZxdgDecorationManagerV1 | null;
  fractionalScaleManager: WpFractionalScaleManagerV1 | null;
  screencopyManager: ZwlrScreencopyManagerV1 | null;
  /** Binds weston_screenshooter on first use: weston offers it always but kills a client that binds it
   *  without --debug, so only a capture asks for it. */
  screenshooter(): WestonScreenshooter | null;
  linuxDmabuf: ZwpLinuxDmabufV1 | null;
  /** Formats and modifiers the compositor takes as dmabufs (empty without linux-dmabuf). */
  dmabufFormats: DmabufFormats;
  explicitSync: ZwpLinuxExplicitSynchronizationV1 | null;
  pointerConstraints: ZwpPointerConstraintsV1 | null;
  relativePointerManager: ZwpRelativePointerManagerV1 | null;
  shortcutsInhibitManager: ZwpKeyboardShortcutsInhibitManagerV1 | null;
  outputs: Map<number, { output: WlOutput; name: number; scale: number; width: number; height: number }>;
  /** Seats with their latest wl_seat.capabilities; `watchers` are called when those change. */
  seats: SeatEntry[];
}

/** Binds globals after one roundtrip, then a second roundtrip collects their initial events. */
export async function bindGlobals(connection: Connection): Promise<Globals> {
  const all: Global[] = [];
  const registry = connection.display.getRegistry();
  registry.on({ global: (name, iface, version) => all.push({ name, interface: iface, version }) });
  await connection.roundtrip();

  const bind = <T extends Proxy>(cls: ProxyClass<T>, minVersion = 1): T | null => {
    const g = all.find((x) => x.interface === cls.iface.name);
    if (!g || g.version < minVersion) return null;
    return registry.bind(g.name, cls, Math.min(g.version, cls.iface.version));
  };
  const compositor = bind(WlCompositor, 4);
  const shm = bind(WlShm);
  if (!compositor) throw new Error('the compositor offers no wl_compositor v4 (needed for damage_buffer)');
  if (!shm) throw new Error('the compositor offers no wl_shm');
  const shmFormats = new Set<number>([WlShmFormat.argb8888, WlShmFormat.xrgb8888]); // always supported
  shm.on({ format: (f) => shmFormats.add(f) });

  let screenshooter: WestonScreenshooter | null | undefined;
  const globals: Globals = {
    all, compositor, shm, shmFormats,
    wmBase: bind(XdgWmBase),
    viewporter: bind(WpViewporter),
    presentation: bind(WpPresentation),
    presentationClock: null,
    decorationManager: bind(ZxdgDecorationManagerV1),
    fractionalScaleManager: bind(WpFractionalScaleManagerV1),
    screencopyManager: bind(ZwlrScreencopyManagerV1),
    screenshooter: () => {
      if (screenshooter === undefined) screenshooter = bind(WestonScreenshooter);
      return screenshooter;
    },
    linuxDmabuf: null,
    dmabufFormats: new DmabufFormats(),
    explicitSync: bind(ZwpLinuxExplicitSynchronizationV1),
    pointerConstraints: bind(ZwpPointerConstraintsV1),
    relativePointerManager: bind(ZwpRelativePointerManagerV1),
    shortcutsInhibitManager: bind(ZwpKeyboardShortcutsInhibitManagerV1),
    outputs: new Map(),
    seats: [],
  };
  globals.linuxDmabuf = bind(ZwpLinuxDmabufV1);
  if (globals.linuxDmabuf) globals.dmabufFormats = DmabufFormats.listen(globals.linuxDmabuf);
  globals.wmBase?.on({ ping: (serial) => globals.wmBase!.pong(serial) });
  globals.presentation?.on({ clockId: (clock) => { globals.presentationClock = clock; } });
  for (const g of all.filter((x) => x.interface === 'wl_output')) {
    const output = registry.bind(g.name, WlOutput, Math.min(g.version, 3));
    const entry = { output, name: g.name, scale: 1, width: 0, height: 0 };
    output.on({
      scale: (factor) => { entry.scale = factor; },
      mode: (flags, width, height) => {
        if (flags & 1) { entry.width = width; entry.height = height; } // current mode
      },
    });
    globals.outputs.set(output.handle, entry);
  }
  for (const g of all.filter((x) => x.interface === 'wl_seat')) {
    const entry: SeatEntry = { seat: registry.bind(g.name, WlSeat, Math.min(g.version, 5)), capabilities: 0, watchers: [] };
    entry.seat.on({
      capabilities: (caps) => {
        entry.capabilities = caps;
        for (const watch of entry.watchers) watch(caps);
      },
    });
    globals.seats.push(entry);
  }
  await connection.roundtrip();
  return globals;
}
