// Input on the window, from every seat: keys (evdev codes), pointer position in guest pixels (or, in relative
// mode, locked-pointer motion), buttons and wheel, for a source to forward to its guest. The compositor's own
// shortcuts are inhibited while the window has focus (keyboard-shortcuts-inhibit), so they reach the guest; F11
// (fullscreen) and Ctrl+Alt+G (release the locked pointer) stay with the window. Also the pointer's cursor image
// (a guest-defined cursor, or none).
import { EventEmitter } from 'node:events';
import type { Globals } from './globals.js';
import type { Window } from './window.js';
import type { WlBuffer, WlKeyboard, WlPointer, WlSeat, WlSurface, ZwpLockedPointerV1, ZwpRelativePointerV1, ZwpKeyboardShortcutsInhibitorV1 } from '../wayland/protocols/index.js';
import { WlKeyboardKeyState, WlPointerAxis, WlPointerButtonState, WlSeatCapability, ZwpPointerConstraintsV1Lifetime } from '../wayland/protocols/index.js';
import { close, ftruncate, memfdCreate, mmap, munmap } from '../native/fds.js';
import { formatByName } from '../formats.js';

// linux/input-event-codes.h
const KEY_F11 = 87;
const KEY_G = 34;
const KEY_LEFTCTRL = 29;
const KEY_RIGHTCTRL = 97;
const KEY_LEFTALT = 56;
const KEY_RIGHTALT = 100;

export interface CursorImage {
  width: number;
  height: number;
  hotX: number;
  hotY: number;
  /** Straight (not premultiplied) ARGB8888 pixels, rows of width × 4 bytes. */
  argb: Uint8Array;
}

export interface WindowInputEvents {
  /** evdev key code (linux/input-event-codes.h) pressed or released while the window has keyboard focus. */
  key: [code: number, pressed: boolean];
  /** Pointer position over the content, in guest (buffer) pixels, clamped to the buffer. */
  motion: [x: number, y: number];
  /** evdev button code (BTN_LEFT 0x110, BTN_RIGHT 0x111, BTN_MIDDLE 0x112, BTN_SIDE 0x113, BTN_EXTRA 0x114). */
  button: [code: number, pressed: boolean];
  /** Vertical wheel steps: positive is down (towards the user). */
  wheel: [steps: number];
  /** Pointer movement while locked (relative mode), unaccelerated, in surface units. */
  'relative-motion': [dx: number, dy: number];
  /** The pointer was locked (a click in relative mode) or released (Ctrl+Alt+G, or the compositor ended it). */
  'pointer-lock': [locked: boolean];
  /** The window lost keyboard focus: keys still held must be released in the guest. */
  blur: [];
}

interface SeatDevices {
  keyboard: WlKeyboard | null;
  pointer: WlPointer | null;
  pointerSerial: number;
  heldKeys: Set<number>;
  inhibitor: ZwpKeyboardShortcutsInhibitorV1 | null;
  relative: ZwpRelativePointerV1 | null;
  lock: ZwpLockedPointerV1 | null;
}

export class WindowInput extends EventEmitter<WindowInputEvents> {
  private readonly seats: SeatDevices[] = [];
  private cursor: { surface: WlSurface; buffer: WlBuffer; hotX: number; hotY: number } | null = null;
  private cursorHidden = false;
  private wheelRemainder = 0;
  private relativeMode = false;
  private readonly unwatch: (() => void)[] = [];

  constructor(private readonly globals: Globals, private readonly window: Window) {
    super();
    for (const entry of globals.seats) {
      const devices: SeatDevices = {
        keyboard: null, pointer: null, pointerSerial: 0, heldKeys: new Set(), inhibitor: null, relative: null, lock: null,
      };
      this.seats.push(devices);
      // Seats gain and lose devices at any time (a keyboard plugged in; sway's seat has none until one appears).
      const update = (capabilities: number): void => this.updateDevices(entry.seat, devices, capabilities);
      entry.watchers.push(update);
      this.unwatch.push(() => entry.watchers.splice(entry.watchers.indexOf(update), 1));
      update(entry.capabilities);
    }
  }

  private updateDevices(seat: WlSeat, devices: SeatDevices, capabilities: number): void {
    const hasKeyboard = (capabilities & WlSeatCapability.keyboard) !== 0;
    const hasPointer = (capabilities & WlSeatCapability.pointer) !== 0;
    if (hasKeyboard && !devices.keyboard) {
      devices.keyboard = this.watchKeyboard(seat.getKeyboard(), devices);
      // Active only while the window has keyboard focus (the compositor decides, and may refuse).
      devices.inhibitor = this.globals.shortcutsInhibitManager?.inhibitShortcuts(this.window.surface, seat) ?? null;
    } else if (!hasKeyboard && devices.keyboard) {
      this.dropKeyboard(devices);
    }
    if (hasPointer && !devices.pointer) {
      devices.pointer = this.watchPointer(seat.getPointer(), devices);
    } else if (!hasPointer && devices.pointer) {
      this.dropPointer(devices);
    }
  }

  private dropKeyboard(devices: SeatDevices): void {
    devices.inhibitor?.destroy();
    devices.inhibitor = null;
    if (devices.keyboard && !devices.keyboard.destroyed && devices.keyboard.version >= 3) devices.keyboard.release();
    devices.keyboard = null;
    if (devices.heldKeys.size) {
      devices.heldKeys.clear();
      this.emit('blur');
    }
  }

  private dropPointer(devices: SeatDevices): void {
    this.unlock(devices);
    if (devices.pointer && !devices.pointer.destroyed && devices.pointer.version >= 3) devices.pointer.release();
    devices.pointer = null;
    devices.pointerSerial = 0;
  }

  private watchKeyboard(keyboard: WlKeyboard, devices: SeatDevices): WlKeyboard {
    keyboard.on({
      keymap: (_format, fd) => close(fd), // evdev codes are layout-free: the guest applies its own layout
      // Keys already down when focus arrives belong to whatever had focus before: they are not forwarded, and
      // their releases are dropped below as releases of presses we never saw.
      enter: () => {},
      leave: () => {
        devices.heldKeys.clear();
        this.emit('blur');
      },
      key: (_serial, _time, key, state) => {
        const pressed = state === WlKeyboardKeyState.pressed;
        if (key === KEY_F11) {
          if (pressed) this.window.setFullscreen(!this.window.fullscreen);
          return;
        }
        if (key === KEY_G && pressed && devices.lock && this.holds(devices, [KEY_LEFTCTRL, KEY_RIGHTCTRL]) &&
          this.holds(devices, [KEY_LEFTALT, KEY_RIGHTALT])) {
          this.unlock(devices);
          return;
        }
        if (pressed) devices.heldKeys.add(key);
        else if (!devices.heldKeys.delete(key)) return; // a release for a press we never saw
        this.emit('key', key, pressed);
      },
    });
    return keyboard;
  }

  private watchPointer(pointer: WlPointer, devices: SeatDevices): WlPointer {
    const motion = (x: number, y: number): void => {
      const p = this.window.toBuffer(x, y);
      if (p) this.emit('motion', p.x, p.y);
    };
    pointer.on({
      enter: (serial, surface, x, y) => {
        if (surface?.handle !== this.window.surface.handle) return;
        devices.pointerSerial = serial;
        this.applyCursor(devices);
        motion(x, y);
      },
      motion: (_time, x, y) => { if (!devices.lock) motion(x, y); },
      button: (_serial, _time, button, state) => {
        const pressed = state === WlPointerButtonState.pressed;
        if (pressed && this.relativeMode && !devices.lock) this.lock(devices);
        this.emit('button', button, pressed);
      },
      axis: (_time, axis, value) => {
        if (axis !== WlPointerAxis.vertical_scroll) return;
        // 10 surface units per wheel notch (libinput's convention); small touchpad scrolls add up.
        this.wheelRemainder += value / 10;
        const steps = Math.trunc(this.wheelRemainder);
        this.wheelRemainder -= steps;
        if (steps !== 0) this.emit('wheel', steps);
      },
    });
    return pointer;
  }

  /**
   * Relative mode (the guest has a relative mouse): a click locks the pointer to the window (pointer-constraints)
   * and its movement comes as 'relative-motion' (relative-pointer) until Ctrl+Alt+G. Needs both protocols; false
   * when the compositor lacks them (then 'motion' keeps coming and the source makes deltas of it).
   */
  setRelativeMode(on: boolean): boolean {
    const supported = this.globals.pointerConstraints !== null && this.globals.relativePointerManager !== null;
    this.relativeMode = on && supported;
    if (!this.relativeMode) for (const devices of this.seats) this.unlock(devices);
    return this.relativeMode;
  }

  /** Relative mode with pointer locking in effect (setRelativeMode(true) on a compositor that can lock). */
  get relativeLocking(): boolean {
    return this.relativeMode;
  }

  get pointerLocked(): boolean {
    return this.seats.some((d) => d.lock !== null);
  }

  private lock(devices: SeatDevices): void {
    const { pointerConstraints, relativePointerManager } = this.globals;
    if (!devices.pointer || !pointerConstraints || !relativePointerManager) return;
    devices.lock = pointerConstraints.lockPointer(this.window.surface, devices.pointer, null, ZwpPointerConstraintsV1Lifetime.persistent);
    devices.lock.on({
      locked: () => this.emit('pointer-lock', true),
      unlocked: () => { if (devices.lock) this.unlock(devices); },
    });
    devices.relative = relativePointerManager.getRelativePointer(devices.pointer);
    devices.relative.on({ relativeMotion: (_hi, _lo, _dx, _dy, dx, dy) => this.emit('relative-motion', dx, dy) });
  }

  private unlock(devices: SeatDevices): void {
    if (!devices.lock) return;
    devices.lock.destroy();
    devices.relative?.destroy();
    devices.lock = null;
    devices.relative = null;
    this.emit('pointer-lock', false);
  }

  private holds(devices: SeatDevices, keys: number[]): boolean {
    return keys.some((k) => devices.heldKeys.has(k));
  }

  /** Shows `image` as the pointer over the window (null: the compositor's default). */
  setCursor(image: CursorImage | null): void {
    this.destroyCursor();
    if (image) this.cursor = this.createCursor(image);
    for (const devices of this.seats) this.applyCursor(devices);
  }

  /** Hides or shows the pointer over the window (the guest's MouseSet `on`). */
  setCursorHidden(hidden: boolean): void {
    if (hidden === this.cursorHidden) return;
    this.cursorHidden = hidden;
    for (const devices of this.seats) this.applyCursor(devices);
  }

  private applyCursor(devices: SeatDevices): void {
    if (!devices.pointer || devices.pointerSerial === 0) return;
    if (this.cursorHidden) devices.pointer.setCursor(devices.pointerSerial, null, 0, 0);
    else if (this.cursor) devices.pointer.setCursor(devices.pointerSerial, this.cursor.surface, this.cursor.hotX, this.cursor.hotY);
  }

  private createCursor(image: CursorImage): { surface: WlSurface; buffer: WlBuffer; hotX: number; hotY: number } {
    const stride = image.width * 4;
    const size = stride * image.height;
    const fd = memfdCreate('wlscanout-cursor', true);
    try {
      ftruncate(fd, size);
      const map = mmap(fd, 0, size, true);
      const out = new Uint8Array(map);
      // wl_shm ARGB8888 is premultiplied; the guest's cursor is straight alpha.
      for (let i = 0; i < size; i += 4) {
        const a = image.argb[i + 3];
        out[i] = Math.round((image.argb[i] * a) / 255);
        out[i + 1] = Math.round((image.argb[i + 1] * a) / 255);
        out[i + 2] = Math.round((image.argb[i + 2] * a) / 255);
        out[i + 3] = a;
      }
      munmap(map);
      const pool = this.globals.shm.createPool(fd, size);
      const buffer = pool.createBuffer(0, image.width, image.height, stride, formatByName('ARGB8888')!.shm);
      pool.destroy();
      const surface = this.globals.compositor.createSurface();
      surface.attach(buffer, 0, 0);
      surface.damage(0, 0, image.width, image.height);
      surface.commit();
      return { surface, buffer, hotX: image.hotX, hotY: image.hotY };
    } finally {
      close(fd);
    }
  }

  private destroyCursor(): void {
    if (!this.cursor) return;
    this.cursor.surface.destroy();
    this.cursor.buffer.destroy();
    this.cursor = null;
  }

  destroy(): void {
    for (const off of this.unwatch.splice(0)) off();
    for (const devices of this.seats) {
      this.dropKeyboard(devices);
      this.dropPointer(devices);
    }
    this.seats.length = 0;
    this.destroyCursor();
  }
}
