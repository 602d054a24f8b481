// The input injector on headless sway 1.7: a virtual keyboard and pointer (wlroots' virtual input protocols)
// reach a fullscreen client window through sway's seat, exactly: evdev codes in press/release order, the
// modifier state, pointer positions in surface coordinates, buttons, wheel steps.
import { writeSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSway, type Compositor } from '../src/embedded/compositors.js';
import {
  AXIS_UNITS_PER_STEP, BTN_LEFT, BTN_RIGHT, InputInjector, KEY, US_KEYMAP, usKeystrokes, type InputInjectorOptions,
} from '../src/embedded/input-injector.js';
import { close, ftruncate, listOpenFds, memfdCreate, pread } from '../src/native/fds.js';
import { Connection } from '../src/wayland/connection.js';
import type { Proxy, ProxyClass } from '../src/wayland/proxy.js';
import {
  WlCompositor, WlKeyboard, WlPointer, WlSeat, WlSeatCapability, WlShm, WlShmFormat, WlSurface, XdgToplevel,
  XdgWmBase,
} from '../src/wayland/protocols/index.js';
import { waitFor } from './helpers.js';

const WIDTH = 1024, HEIGHT = 768;

type Event = (string | number | boolean)[];

/** A plain fullscreen xdg_toplevel with its own wl_seat listeners, recording what the seat sends it. */
class TestWindow {
  readonly events: Event[] = [];
  keymap: { format: number; text: string } | null = null;
  keyboard: WlKeyboard | null = null;
  pointer: WlPointer | null = null;
  configured: { width: number; height: number; states: number[] } | null = null;

  private constructor(readonly connection: Connection, readonly surface: WlSurface, private readonly seat: WlSeat,
    readonly toplevel: XdgToplevel) {}

  static async open(socket: string): Promise<TestWindow> {
    const connection = new Connection(socket);
    const globals: { name: number; iface: string; version: number }[] = [];
    const registry = connection.display.getRegistry();
    registry.on({ global: (name, iface, version) => globals.push({ name, iface, version }) });
    await connection.roundtrip();
    const bind = <T extends Proxy>(cls: ProxyClass<T>, version: number): T => {
      const g = globals.find((x) => x.iface === cls.iface.name);
      if (!g) throw new Error(`no ${cls.iface.name}`);
      return registry.bind(g.name, cls, Math.min(version, g.version));
    };
    const compositor = bind(WlCompositor, 4);
    const shm = bind(WlShm, 1);
    const wmBase = bind(XdgWmBase, 1);
    wmBase.on({ ping: (serial) => wmBase.pong(serial) });
    // v5: axis_source, axis_discrete and frame (sway 1.7 offers v7; v8's axis_value120 is newer than it).
    const seat = bind(WlSeat, 5);
    expect(seat.version).toBe(5);

    const surface = compositor.createSurface();
    const xdgSurface = wmBase.getXdgSurface(surface);
    const toplevel = xdgSurface.getToplevel();
    const window = new TestWindow(connection, surface, seat, toplevel);
    seat.on({ capabilities: (caps) => window.onCapabilities(caps) });
    toplevel.on({
      configure: (width, height, states) => {
        window.configured = { width, height, states: [...new Uint32Array(states.buffer, states.byteOffset, states.byteLength / 4)] };
      },
    });
    let configureSerial = -1;
    xdgSurface.on({ configure: (serial) => { configureSerial = serial; } });
    toplevel.setTitle('input-injector test');
    toplevel.setFullscreen(null);
    surface.commit();
    try {
      // sway 1.7 answers the first commit with a 0x0 configure and applies fullscreen when the surface maps:
      // map with a buffer of the output's size, then take the fullscreen configure.
      await waitFor('the first configure', () => configureSerial >= 0);
      xdgSurface.ackConfigure(configureSerial);
      const stride = WIDTH * 4, size = stride * HEIGHT;
      const fd = memfdCreate('input-injector-test');
      try {
        ftruncate(fd, size);
        writeSync(fd, Buffer.alloc(stride, 0x80), 0, stride, 0); // some grey; content does not matter
        const pool = shm.createPool(fd, size);
        const buffer = pool.createBuffer(0, WIDTH, HEIGHT, stride, WlShmFormat.xrgb8888);
        pool.destroy();
        surface.attach(buffer, 0, 0);
        surface.damageBuffer(0, 0, WIDTH, HEIGHT);
        surface.commit();
      } finally {
        close(fd);
      }
      const FULLSCREEN = 2; // xdg_toplevel.state.fullscreen
      await waitFor('the fullscreen configure', () => window.configured?.states.includes(FULLSCREEN) ?? false);
      expect([window.configured!.width, window.configured!.height]).toEqual([WIDTH, HEIGHT]); // the only output
      xdgSurface.ackConfigure(configureSerial);
      surface.commit();
      await connection.roundtrip();
    } catch (error) {
      connection.close();
      throw error;
    }
    return window;
  }

  private onCapabilities(caps: number): void {
    this.events.push(['capabilities', caps]);
    if (caps & WlSeatCapability.keyboard && !this.keyboard) {
      const keyboard = this.seat.getKeyboard();
      this.keyboard = keyboard;
      keyboard.on({
        keymap: (format, fd, size) => {
          try {
            this.keymap = { format, text: pread(fd, size, 0).toString('utf8').replace(/\0$/, '') };
          } finally {
            close(fd);
          }
          this.events.push(['keymap', format]);
        },
        enter: (_serial, surface, keys) => this.events.push(['keyboard.enter', surface === this.surface, keys.length]),
        leave: (_serial, surface) => this.events.push(['keyboard.leave', surface === this.surface]),
        key: (_serial, _time, key, state) => this.events.push(['key', key, state]),
        modifiers: (_serial, depressed, latched, locked, group) =>
          this.events.push(['modifiers', depressed, latched, locked, group]),
        repeatInfo: () => { /* not recorded */ },
      });
    }
    if (caps & WlSeatCapability.pointer && !this.pointer) {
      const pointer = this.seat.getPointer();
      this.pointer = pointer;
      pointer.on({
        enter: (_serial, surface, x, y) => this.events.push(['pointer.enter', surface === this.surface, x, y]),
        leave: (_serial, surface) => this.events.push(['pointer.leave', surface === this.surface]),
        motion: (_time, x, y) => this.events.push(['motion', x, y]),
        button: (_serial, _time, button, state) => this.events.push(['button', button, state]),
        axis: (_time, axis, value) => this.events.push(['axis', axis, value]),
        axisSource: (source) => this.events.push(['axis_source', source]),
        axisDiscrete: (axis, discrete) => this.events.push(['axis_discrete', axis, discrete]),
        axisStop: (_time, axis) => this.events.push(['axis_stop', axis]),
        frame: () => this.events.push(['frame']),
      });
    }
  }

  /** Delivers everything the compositor has sent so far and returns the events recorded since the last call. */
  async take(): Promise<Event[]> {
    await this.connection.roundtrip();
    return this.events.splice(0);
  }

  close(): void {
    this.connection.close();
  }
}

const only = (events: Event[], ...kinds: string[]) => events.filter((e) => kinds.includes(e[0] as string));
const keyEvents = (codes: [number, number][]) => codes.map(([code, state]) => ['key', code, state]);

describe('input injector on sway 1.7', () => {
  let sway: Compositor;
  let window: TestWindow | undefined;
  let injector: InputInjector | undefined;
  let fdBaseline: number[];

  beforeEach(async () => {
    sway = await startSway({ width: WIDTH, height: HEIGHT });
    fdBaseline = listOpenFds();
    window = await TestWindow.open(sway.socket);
  });
  afterEach(async () => {
    await injector?.close();
    injector = undefined;
    window?.close();
    window = undefined;
    const fds = listOpenFds();
    await sway.stop();
    expect(fds).toEqual(fdBaseline); // the keymap memfds and the window's keymap fds are closed
  });

  async function openInjector(options: InputInjectorOptions = {}): Promise<[InputInjector, Event[]]> {
    injector = await InputInjector.open(sway.socket, options);
    // The new virtual devices give the seat its capabilities; the window binds them and gets the keymap and,
    // being sway's focused view under the cursor, keyboard and pointer focus.
    await waitFor('keyboard and pointer focus on the window', () =>
      window!.events.some((e) => e[0] === 'keyboard.enter' && e[1] === true) &&
      window!.events.some((e) => e[0] === 'pointer.enter' && e[1] === true));
    return [injector, await window!.take()];
  }

  it('adds a keyboard and a pointer to the seat; the window gets the US keymap compiled by sway and focus', async () => {
    const tree = JSON.parse(await sway.swaymsg!('-t', 'get_tree', '-r')) as { focused: boolean; fullscreen_mode?: number; name?: string; nodes: unknown[] };
    const views: { name?: string; focused: boolean; fullscreen_mode?: number }[] = [];
    const walk = (n: { nodes?: unknown[]; floating_nodes?: unknown[]; pid?: number } & typeof views[0]) => {
      if (n.pid !== undefined) views.push({ name: n.name, focused: n.focused, fullscreen_mode: n.fullscreen_mode });
      for (const c of [...(n.nodes ?? []), ...(n.floating_nodes ?? [])]) walk(c as typeof n);
    };
    walk(tree);
    expect(views).toEqual([{ name: 'input-injector test', focused: true, fullscreen_mode: 1 }]);
    expect(await window!.take()).toEqual([['capabilities', 0]]); // no input devices yet: WLR_LIBINPUT_NO_DEVICES=1

    const [inj, events] = await openInjector();
    expect(inj.seatName).toBe('seat0');
    // The keyboard joins the seat when created (before its keymap), then the pointer; the focused window gets
    // keyboard focus with the keymap, and pointer focus at sway's initial cursor position, (100, 100). (How the
    // three interleave depends on when the window binds its wl_keyboard: two clients race there.)
    expect(only(events, 'capabilities')).toEqual([
      ['capabilities', WlSeatCapability.keyboard], ['capabilities', WlSeatCapability.keyboard | WlSeatCapability.pointer],
    ]);
    expect(only(events, 'keymap', 'keyboard.enter', 'modifiers', 'key')).toEqual([
      ['keymap', 1], // XKB_V1
      ['keyboard.enter', true, 0], // no keys held
      ['modifiers', 0, 0, 0, 0],
    ]);
    expect(only(events, 'pointer.enter', 'motion', 'frame')).toEqual([['pointer.enter', true, 100, 100], ['frame']]);
    // What the window got is the compiled keymap, includes resolved from sway's xkb-data.
    const text = window!.keymap!.text;
    expect(text).toMatch(/^xkb_keymap \{/);
    expect(text).not.toMatch(/include/);
    expect(text).toMatch(/key <AC01>\s*\{\s*\[\s*a,\s*A\s*\]\s*\}/);
    expect(text).toMatch(/<AC01>\s*=\s*38;/); // evdev 30 + 8
    expect(text).toMatch(/modifier_map Shift \{[^}]*<LFSH>/);
  });

  it('key(): evdev codes reach the focused window in press/release order', async () => {
    const [inj] = await openInjector();
    await inj.key(KEY.A, true);
    await inj.key(KEY.A, false);
    await inj.key(KEY.ESC, true);
    await inj.key(KEY.B, true);
    await inj.key(KEY.ESC, false);
    await inj.key(KEY.B, false);
    expect(await window!.take()).toEqual(keyEvents([
      [KEY.A, 1], [KEY.A, 0], [KEY.ESC, 1], [KEY.B, 1], [KEY.ESC, 0], [KEY.B, 0],
    ]));
    // A modifier changes the state sway reports (wlroots leaves it to the virtual keyboard's client).
    await inj.key(KEY.LEFTCTRL, true);
    await inj.key(KEY.C, true);
    await inj.key(KEY.C, false);
    await inj.key(KEY.LEFTCTRL, false);
    expect(await window!.take()).toEqual([
      ['key', KEY.LEFTCTRL, 1], ['modifiers', 4, 0, 0, 0],
      ['key', KEY.C, 1], ['key', KEY.C, 0],
      ['key', KEY.LEFTCTRL, 0], ['modifiers', 0, 0, 0, 0],
    ]);
  });

  it('type(): a US-layout string, Shift held around capitals and symbols', async () => {
    const [inj] = await openInjector();
    await inj.type('Hi 2!\n');
    const S = KEY.LEFTSHIFT;
    expect(await window!.take()).toEqual([
      ['key', S, 1], ['modifiers', 1, 0, 0, 0], ['key', KEY.H, 1], ['key', KEY.H, 0], ['key', S, 0], ['modifiers', 0, 0, 0, 0],
      ['key', KEY.I, 1], ['key', KEY.I, 0],
      ['key', KEY.SPACE, 1], ['key', KEY.SPACE, 0],
      ['key', KEY['2'], 1], ['key', KEY['2'], 0],
      ['key', S, 1], ['modifiers', 1, 0, 0, 0], ['key', KEY['1'], 1], ['key', KEY['1'], 0], ['key', S, 0], ['modifiers', 0, 0, 0, 0],
      ['key', KEY.ENTER, 1], ['key', KEY.ENTER, 0],
    ]);
    // Every letter and digit: the codes of the US layout, in order.
    await inj.type('the quick brown fox jumps over the lazy dog 0123456789');
    const typed = only(await window!.take(), 'key').filter((e) => e[2] === 1).map((e) => e[1]);
    expect(typed).toEqual(usKeystrokes('the quick brown fox jumps over the lazy dog 0123456789').map((s) => s.code));
    expect(typed.slice(0, 4)).toEqual([KEY.T, KEY.H, KEY.E, KEY.SPACE]);
    await expect(inj.type('ok é')).rejects.toThrow('"é" (at 3) cannot be typed on a US keyboard');
    expect(await window!.take()).toEqual([]); // refused before anything was sent
  });

  it('pointer: absolute motion lands 1:1 in surface coordinates, then buttons and wheel steps', async () => {
    const [inj] = await openInjector();
    await inj.pointerMoveAbsolute(100, 200, WIDTH, HEIGHT);
    await inj.pointerMoveAbsolute(512, 384, WIDTH, HEIGHT);
    await inj.pointerMoveAbsolute(WIDTH - 1, HEIGHT - 1, WIDTH, HEIGHT);
    await inj.pointerMoveAbsolute(0, 0, WIDTH, HEIGHT);
    expect(await window!.take()).toEqual([
      ['motion', 100, 200], ['frame'], ['motion', 512, 384], ['frame'],
      ['motion', WIDTH - 1, HEIGHT - 1], ['frame'], ['motion', 0, 0], ['frame'],
    ]);
    // Another extent scales: (1, 1) of 4x4 is a quarter of the output.
    await inj.pointerMoveAbsolute(1, 1, 4, 4);
    await inj.pointerMoveRelative(10.5, -20);
    expect(await window!.take()).toEqual([
      ['motion', WIDTH / 4, HEIGHT / 4], ['frame'], ['motion', WIDTH / 4 + 10.5, HEIGHT / 4 - 20], ['frame'],
    ]);

    await inj.pointerButton(BTN_LEFT, true);
    await inj.pointerButton(BTN_LEFT, false);
    await inj.pointerButton(BTN_RIGHT, true);
    await inj.pointerButton(BTN_RIGHT, false);
    expect(await window!.take()).toEqual([
      ['button', BTN_LEFT, 1], ['frame'], ['button', BTN_LEFT, 0], ['frame'],
      ['button', BTN_RIGHT, 1], ['frame'], ['button', BTN_RIGHT, 0], ['frame'],
    ]);

    await inj.axis(2);
    await inj.axis(-1);
    await inj.axis(3, 'horizontal');
    expect(await window!.take()).toEqual([
      ['axis_source', 0], ['axis_discrete', 0, 2], ['axis', 0, 2 * AXIS_UNITS_PER_STEP], ['frame'],
      ['axis_source', 0], ['axis_discrete', 0, -1], ['axis', 0, -AXIS_UNITS_PER_STEP], ['frame'],
      ['axis_source', 0], ['axis_discrete', 1, 3], ['axis', 1, 3 * AXIS_UNITS_PER_STEP], ['frame'],
    ]);
    await expect(inj.pointerMoveAbsolute(WIDTH + 1, 0, WIDTH, HEIGHT)).rejects.toThrow(RangeError);
    await expect(inj.axis(0)).rejects.toThrow(RangeError);
  });

  it('close() releases held keys and buttons, and the seat loses the devices', async () => {
    const [inj] = await openInjector();
    await inj.pointerMoveAbsolute(10, 10, WIDTH, HEIGHT);
    await inj.key(KEY.LEFTSHIFT, true);
    await inj.key(KEY.X, true);
    await inj.pointerButton(BTN_LEFT, true);
    await window!.take();
    await inj.close();
    injector = undefined;
    const events = await window!.take();
    // Released in the order pressed, with the modifier state, before the devices go.
    expect(events.slice(0, 5)).toEqual([
      ['key', KEY.LEFTSHIFT, 0], ['modifiers', 0, 0, 0, 0], ['key', KEY.X, 0], ['button', BTN_LEFT, 0], ['frame'],
    ]);
    // Then the keyboard goes, then the pointer (sway 1.7 sends each leave twice).
    expect(only(events.slice(5), 'capabilities')).toEqual([['capabilities', WlSeatCapability.pointer], ['capabilities', 0]]);
    expect(only(events.slice(5), 'keyboard.leave', 'pointer.leave', 'key', 'button', 'motion').every((e) => e[1] === true &&
      (e[0] as string).endsWith('.leave'))).toBe(true);
    await inj.close(); // idempotent
    await expect(inj.key(KEY.A, true)).rejects.toThrow('input injector: closed');
    await expect(inj.pointerButton(BTN_LEFT, true)).rejects.toThrow('input injector: closed');
  });

  it("sway keeps the virtual keyboard's own keymap (here German), not its configured layout", async () => {
    const [inj] = await openInjector({ keymap: US_KEYMAP.replace('pc+us', 'pc+de') });
    expect(window!.keymap!.text).toMatch(/key <AD06>\s*\{[^}]*\[\s*z,\s*Z/); // QWERTZ: z where US has y
    await inj.key(KEY.Y, true); // the evdev code is what arrives, whatever the layout
    expect(await window!.take()).toEqual([['key', KEY.Y, 1]]);
  });

  it('errors: a keymap sway cannot compile, an unknown seat, no compositor', async () => {
    const bad = InputInjector.open(sway.socket, { keymap: 'xkb_keymap { not a keymap };' });
    await expect(bad).rejects.toThrow(/refused the keymap \(no_memory: it did not compile\)/);
    await expect(bad).rejects.toMatchObject({ code: 'EKEYMAP', cause: { code: 'ENOMEM' } });
    await expect(InputInjector.open(sway.socket, { seat: 'seat9' })).rejects.toThrow(/has no seat seat9 \(seats: seat0\)/);
    await expect(InputInjector.open('/nonexistent/wayland-9')).rejects.toThrow();
    // The window saw none of it: no device stayed on the seat.
    expect(only(await window!.take(), 'key', 'keymap')).toEqual([]);
  });
});
