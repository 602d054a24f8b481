// A test-side "user" for the embedded sway: types and moves a pointer through wlroots' virtual input protocols
// (zwp_virtual_keyboard_manager_v1, zwlr_virtual_pointer_manager_v1), so tests can prove that input reaches a
// window the way a person's would: through the compositor's seat, focus and keymap.
//
// Every call sends its requests, flushes them and waits for a wl_display.sync roundtrip, so when its promise
// resolves the compositor has processed the input and queued the resulting events for the focused client
// (a roundtrip on that client's connection then delivers them, in order).
//
// What sway 1.7 (wlroots 0.15) does, as test/input-injector.test.ts shows:
// - The seat: the embedded sway has one, "seat0", even with WLR_LIBINPUT_NO_DEVICES=1, but with no
//   capabilities. Creating the virtual keyboard adds a keyboard to it at once (before its keymap), creating the
//   virtual pointer a pointer, and clients see wl_seat.capabilities grow (keyboard, then keyboard | pointer).
//   The keyboard protocol requires a seat; for the pointer it is a suggestion, and we always pass it.
// - The keymap: the protocol wants one before any key (error no_keymap). It goes as XKB_V1 text in a sealed
//   memfd, NUL-terminated with the NUL counted in the size as for wl_keyboard.keymap, and is compiled by the
//   compositor's libxkbcommon with its default include path: a keymap of `include` statements resolves
//   against the compositor's xkb-data, as `setxkbmap us` would, and clients receive the compiled, fully
//   expanded keymap in wl_keyboard.keymap. A keymap that does not compile is answered with
//   wl_client_post_no_memory (the connection fails with ENOMEM), which open() reports as code 'EKEYMAP'. sway
//   keeps the virtual keyboard's own keymap (a German one stays German) rather than its configured layout.
// - Modifiers are the injector's job: wlroots does not derive the modifier state from virtual keys (a Shift
//   press alone changes no modifiers), so key() tracks Shift/Ctrl/Alt/Super/CapsLock and sends
//   zwp_virtual_keyboard_v1.modifiers, which sway forwards as wl_keyboard.modifiers.
// - Focus: keys go to sway's focused view (a new toplevel gets focus when it maps; a new keyboard re-enters it
//   with the keymap). The pointer's focus is the surface under the cursor, and sway's cursor starts at layout
//   (100, 100): when the pointer joins the seat, the surface there gets wl_pointer.enter at that position, and
//   later moves are wl_pointer.motion.
// - Absolute motion maps [0, extent] onto the whole output layout (one output at 0,0 here): with the extent
//   equal to the output's size, a position is the same number in output and, for a fullscreen window, surface
//   coordinates. Other extents scale.
// - Scrolling is axis_source(wheel) + axis_discrete (15 units per step, libinput's wheel default) + frame; a
//   wl_seat v5 client gets axis_source, axis_discrete and axis (sway's scroll_factor is 1 by default).
// - Disconnecting: libwayland-server destroys a client whose socket hung up without reading what it still had
//   to read, so close() waits for a roundtrip before it disconnects; otherwise the last requests (releases)
//   are lost, wlroots releases the held keys itself (last pressed first) and no button release is sent.
import { writeSync } from 'node:fs';
import { addSeals, close, constants, memfdCreate } from '../native/fds.js';
import { Connection } from '../wayland/connection.js';
import type { Proxy, ProxyClass } from '../wayland/proxy.js';
import {
  WlSeat, WlKeyboardKeymapFormat, WlKeyboardKeyState, WlPointerAxis, WlPointerAxisSource, WlPointerButtonState,
  ZwpVirtualKeyboardManagerV1, ZwpVirtualKeyboardV1, ZwlrVirtualPointerManagerV1, ZwlrVirtualPointerV1,
} from '../wayland/protocols/index.js';

/** Linux evdev button codes (linux/input-event-codes.h). */
export const BTN_LEFT = 0x110;
export const BTN_RIGHT = 0x111;
export const BTN_MIDDLE = 0x112;

/** Linux evdev key codes (linux/input-event-codes.h) of the keys `type()` and tests use. */
export const KEY = {
  ESC: 1, '1': 2, '2': 3, '3': 4, '4': 5, '5': 6, '6': 7, '7': 8, '8': 9, '9': 10, '0': 11, MINUS: 12, EQUAL: 13,
  BACKSPACE: 14, TAB: 15, Q: 16, W: 17, E: 18, R: 19, T: 20, Y: 21, U: 22, I: 23, O: 24, P: 25, LEFTBRACE: 26,
  RIGHTBRACE: 27, ENTER: 28, LEFTCTRL: 29, A: 30, S: 31, D: 32, F: 33, G: 34, H: 35, J: 36, K: 37, L: 38,
  SEMICOLON: 39, APOSTROPHE: 40, GRAVE: 41, LEFTSHIFT: 42, BACKSLASH: 43, Z: 44, X: 45, C: 46, V: 47, B: 48, N: 49,
  M: 50, COMMA: 51, DOT: 52, SLASH: 53, RIGHTSHIFT: 54, LEFTALT: 56, SPACE: 57, CAPSLOCK: 58, RIGHTCTRL: 97,
  RIGHTALT: 100, LEFTMETA: 125, RIGHTMETA: 126,
} as const;

/** The keymap handed to the compositor: the US layout of the compositor's xkb-data, as `setxkbmap us` names it
 *  (rules evdev, model pc105). The compositor's libxkbcommon resolves the includes. */
export const US_KEYMAP = [
  'xkb_keymap {',
  '\txkb_keycodes { include "evdev+aliases(qwerty)" };',
  '\txkb_types { include "complete" };',
  '\txkb_compat { include "complete" };',
  '\txkb_symbols { include "pc+us+inet(evdev)" };',
  '};',
  '',
].join('\n');

// Real modifier masks in every xkb keymap (Shift, Lock, Control, Mod1..Mod5 are indices 0..7); the US
// layout puts Alt on Mod1 and Super on Mod4.
const MOD_SHIFT = 1 << 0, MOD_LOCK = 1 << 1, MOD_CONTROL = 1 << 2, MOD_ALT = 1 << 3, MOD_SUPER = 1 << 6;
const MODIFIER_KEYS = new Map<number, number>([
  [KEY.LEFTSHIFT, MOD_SHIFT], [KEY.RIGHTSHIFT, MOD_SHIFT], [KEY.LEFTCTRL, MOD_CONTROL], [KEY.RIGHTCTRL, MOD_CONTROL],
  [KEY.LEFTALT, MOD_ALT], [KEY.RIGHTALT, MOD_ALT], [KEY.LEFTMETA, MOD_SUPER], [KEY.RIGHTMETA, MOD_SUPER],
]);

/** Discrete wheel steps are sent as this many axis units each (libinput's and wlroots' wheel default). */
export const AXIS_UNITS_PER_STEP = 15;

// US layout: character -> [evdev code, needs shift].
const US_CHARS = new Map<string, [number, boolean]>();
for (const c of 'abcdefghijklmnopqrstuvwxyz') {
  const code = KEY[c.toUpperCase() as keyof typeof KEY];
  US_CHARS.set(c, [code, false]);
  US_CHARS.set(c.toUpperCase(), [code, true]);
}
'1234567890'.split('').forEach((d, i) => {
  US_CHARS.set(d, [KEY[d as keyof typeof KEY], false]);
  US_CHARS.set('!@#$%^&*()'[i], [KEY[d as keyof typeof KEY], true]);
});
for (const [plain, shifted, code] of [
  ['-', '_', KEY.MINUS], ['=', '+', KEY.EQUAL], ['[', '{', KEY.LEFTBRACE], [']', '}', KEY.RIGHTBRACE],
  [';', ':', KEY.SEMICOLON], ["'", '"', KEY.APOSTROPHE], ['`', '~', KEY.GRAVE], ['\\', '|', KEY.BACKSLASH],
  [',', '<', KEY.COMMA], ['.', '>', KEY.DOT], ['/', '?', KEY.SLASH],
] as const) {
  US_CHARS.set(plain, [code, false]);
  US_CHARS.set(shifted, [code, true]);
}
US_CHARS.set(' ', [KEY.SPACE, false]);
US_CHARS.set('\n', [KEY.ENTER, false]);
US_CHARS.set('\t', [KEY.TAB, false]);

/** The key strokes that type `text` on a US layout: evdev code and whether Shift is held. Throws, naming the
 *  character, for one the layout cannot type. */
export function usKeystrokes(text: string): { code: number; shift: boolean }[] {
  return [...text].map((c, i) => {
    const entry = US_CHARS.get(c);
    if (!entry) throw new Error(`type: ${JSON.stringify(c)} (at ${i}) cannot be typed on a US keyboard`);
    return { code: entry[0], shift: entry[1] };
  });
}

export interface InputInjectorOptions {
  /** wl_seat name to inject into (default: the compositor's first seat). */
  seat?: string;
  /** XKB_V1 keymap text for the virtual keyboard (default `US_KEYMAP`). */
  keymap?: string;
}

export class InputInjector {
  private readonly pressedKeys = new Set<number>();
  private readonly pressedButtons = new Set<number>();
  private modsDepressed = 0;
  private modsLocked = 0;
  private readonly start = process.hrtime.bigint();
  private closed = false;

  private constructor(
    private readonly connection: Connection,
    /** The seat's name. */
    readonly seatName: string,
    private readonly keyboard: ZwpVirtualKeyboardV1,
    private readonly pointer: ZwlrVirtualPointerV1,
  ) {}

  /** Connects to `display` (a socket name or absolute path) and creates a virtual keyboard with a keymap and a
   *  virtual pointer on the seat. Rejects with what is missing (or with the compositor's protocol error). */
  static async open(display: string, options: InputInjectorOptions = {}): Promise<InputInjector> {
    const connection = new Connection(display);
    try {
      const globals: { name: number; iface: string; version: number }[] = [];
      const registry = connection.display.getRegistry();
      registry.on({ global: (name, iface, version) => globals.push({ name, iface, version }) });
      await connection.roundtrip();
      const bind = <T extends Proxy>(cls: ProxyClass<T>, g: { name: number; version: number }): T =>
        registry.bind(g.name, cls, Math.min(g.version, cls.iface.version));
      const find = (cls: ProxyClass): { name: number; version: number } => {
        const g = globals.find((x) => x.iface === cls.iface.name);
        if (!g) throw new Error(`input injector: the compositor at ${display} offers no ${cls.iface.name}`);
        return g;
      };
      const keyboardManager = bind(ZwpVirtualKeyboardManagerV1, find(ZwpVirtualKeyboardManagerV1));
      const pointerManager = bind(ZwlrVirtualPointerManagerV1, find(ZwlrVirtualPointerManagerV1));
      const seats = globals.filter((g) => g.iface === WlSeat.iface.name).map((g) => {
        const entry = { seat: bind(WlSeat, { name: g.name, version: Math.min(g.version, 2) }), name: '' };
        entry.seat.on({ name: (n) => { entry.name = n; } });
        return entry;
      });
      await connection.roundtrip(); // seat names
      const seat = options.seat === undefined ? seats[0] : seats.find((s) => s.name === options.seat);
      if (!seat) {
        throw new Error(`input injector: the compositor at ${display} has no seat ${options.seat ?? ''}`.trimEnd() +
          (seats.length ? ` (seats: ${seats.map((s) => s.name).join(', ')})` : ''));
      }

      const keyboard = keyboardManager.createVirtualKeyboard(seat.seat);
      sendKeymap(keyboard, options.keymap ?? US_KEYMAP);
      await connection.roundtrip().catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOMEM') throw error;
        throw Object.assign(new Error(`input injector: the compositor at ${display} refused the keymap ` +
          '(no_memory: it did not compile)', { cause: error }), { code: 'EKEYMAP' });
      });
      const pointer = pointerManager.createVirtualPointer(seat.seat);
      await connection.roundtrip();
      return new InputInjector(connection, seat.name, keyboard, pointer);
    } catch (error) {
      connection.close();
      throw error;
    }
  }

  /** Presses or releases one key (Linux evdev code, e.g. `KEY.A`); modifier keys update the modifier state the
   *  compositor reports to clients. */
  async key(evdevCode: number, pressed: boolean): Promise<void> {
    this.sendKey(evdevCode, pressed);
    await this.roundtrip();
  }

  /** Types `text` on a US layout (letters, digits, punctuation, space, tab, newline as Enter), holding Shift
   *  where a character needs it: press and release per character, Shift around each shifted one. */
  async type(text: string): Promise<void> {
    const strokes = usKeystrokes(text); // all or nothing: refuses before sending anything
    for (const { code, shift } of strokes) {
      if (shift) this.sendKey(KEY.LEFTSHIFT, true);
      this.sendKey(code, true);
      this.sendKey(code, false);
      if (shift) this.sendKey(KEY.LEFTSHIFT, false);
    }
    await this.roundtrip();
  }

  /** Moves the pointer to (x, y) in [0, extentWidth] x [0, extentHeight], mapped onto the output layout. */
  async pointerMoveAbsolute(x: number, y: number, extentWidth: number, extentHeight: number): Promise<void> {
    this.assertOpen();
    for (const [name, v] of [['x', x], ['y', y], ['extentWidth', extentWidth], ['extentHeight', extentHeight]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`pointerMoveAbsolute: ${name} ${v} is not a uint32`);
    }
    if (x > extentWidth || y > extentHeight) {
      throw new RangeError(`pointerMoveAbsolute: (${x}, ${y}) is outside the extent ${extentWidth}x${extentHeight}`);
    }
    this.pointer.motionAbsolute(this.now(), x, y, extentWidth, extentHeight);
    this.pointer.frame();
    await this.roundtrip();
  }

  /** Moves the pointer by (dx, dy) in layout coordinates (as a mouse would, before acceleration). */
  async pointerMoveRelative(dx: number, dy: number): Promise<void> {
    this.assertOpen();
    this.pointer.motion(this.now(), dx, dy);
    this.pointer.frame();
    await this.roundtrip();
  }

  /** Presses or releases a button (Linux evdev code: BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, …). */
  async pointerButton(button: number, pressed: boolean): Promise<void> {
    this.assertOpen();
    this.pointer.button(this.now(), button, pressed ? WlPointerButtonState.pressed : WlPointerButtonState.released);
    this.pointer.frame();
    if (pressed) this.pressedButtons.add(button);
    else this.pressedButtons.delete(button);
    await this.roundtrip();
  }

  /** Turns the wheel by `steps` notches (positive: down / right, as wl_pointer), each AXIS_UNITS_PER_STEP units. */
  async axis(steps: number, orientation: 'vertical' | 'horizontal' = 'vertical'): Promise<void> {
    this.assertOpen();
    if (!Number.isInteger(steps) || steps === 0) throw new RangeError(`axis: steps must be a non-zero integer, not ${steps}`);
    const axis = orientation === 'vertical' ? WlPointerAxis.vertical_scroll : WlPointerAxis.horizontal_scroll;
    this.pointer.axisSource(WlPointerAxisSource.wheel);
    this.pointer.axisDiscrete(this.now(), axis, steps * AXIS_UNITS_PER_STEP, steps);
    this.pointer.frame();
    await this.roundtrip();
  }

  /** Releases what is still held, destroys the virtual devices (the seat loses them), waits until the
   *  compositor has processed that, and disconnects. Idempotent; never rejects. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.connection.failure && !this.connection.isClosed) {
        for (const code of [...this.pressedKeys]) this.sendKey(code, false);
        for (const button of this.pressedButtons) this.pointer.button(this.now(), button, WlPointerButtonState.released);
        if (this.pressedButtons.size) this.pointer.frame();
        this.pressedButtons.clear();
        this.keyboard.destroy();
        this.pointer.destroy();
        await this.connection.roundtrip();
      }
    } catch {
      // the compositor is gone: nothing to release
    } finally {
      this.closed = true;
      this.connection.close();
    }
  }

  private sendKey(code: number, pressed: boolean): void {
    if (!Number.isInteger(code) || code < 0 || code > 0xffffffff) throw new RangeError(`key: ${code} is not an evdev code`);
    this.assertOpen();
    this.keyboard.key(this.now(), code, pressed ? WlKeyboardKeyState.pressed : WlKeyboardKeyState.released);
    if (pressed) this.pressedKeys.add(code);
    else this.pressedKeys.delete(code);
    const mods = this.modifierState(code, pressed);
    if (mods.depressed !== this.modsDepressed || mods.locked !== this.modsLocked) {
      this.modsDepressed = mods.depressed;
      this.modsLocked = mods.locked;
      this.keyboard.modifiers(mods.depressed, 0, mods.locked, 0);
    }
  }

  private modifierState(code: number, pressed: boolean): { depressed: number; locked: number } {
    let depressed = 0;
    for (const held of this.pressedKeys) depressed |= MODIFIER_KEYS.get(held) ?? 0;
    const locked = code === KEY.CAPSLOCK && pressed ? this.modsLocked ^ MOD_LOCK : this.modsLocked;
    return { depressed, locked };
  }

  /** Milliseconds since open, as uint32 (the protocols' timestamps; one clock for all requests). */
  private now(): number {
    return Number(((process.hrtime.bigint() - this.start) / 1_000_000n) & 0xffffffffn);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('input injector: closed');
  }

  private async roundtrip(): Promise<void> {
    this.assertOpen();
    await this.connection.roundtrip();
  }
}

/** Hands `keymap` to the virtual keyboard in a sealed memfd (the size counts the NUL that xkbcommon needs). */
function sendKeymap(keyboard: ZwpVirtualKeyboardV1, keymap: string): void {
  const bytes = Buffer.from(`${keymap}\0`, 'utf8');
  const fd = memfdCreate('wlscanout-keymap');
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written, written);
    addSeals(fd, constants.F_SEAL_SHRINK | constants.F_SEAL_GROW | constants.F_SEAL_WRITE | constants.F_SEAL_SEAL);
    keyboard.keymap(WlKeyboardKeymapFormat.xkb_v1, fd, bytes.length); // libwayland dups the fd when marshalling
  } finally {
    close(fd);
  }
}
