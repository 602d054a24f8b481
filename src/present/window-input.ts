// Input on the window, from every seat: keys (evdev codes), pointer position in guest pixels, buttons and wheel,
// for a source to forward to its guest; F11 (fullscreen) stays with the window. Also the pointer's cursor image
// (a guest-defined cursor, or none).
import { EventEmitter } from 'node:events';
import type { Globals } from './globals.js';
import type { Window } from './window.js';
import type { WlBuffer, WlKeyboard, WlPointer, WlSurface } from '../wayland/protocols/index.js';
import { WlKeyboardKeyState, WlPointerAxis, WlPointerButtonState, WlSeatCapability } from '../wayland/protocols/index.js';
import { close, ftruncate, memfdCreate, mmap, munmap } from '../native/fds.js';
import { formatByName } from '../formats.js';

const KEY_F11 = 87; // linux/input-event-codes.h

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
  /** The window lost keyboard focus: keys still held must be released in the guest. */
  blur: [];
}

interface SeatDevices {
  keyboard: WlKeyboard | null;
  pointer: WlPointer | null;
  pointerSerial: number;
  heldKeys: Set<number>;
}

export class WindowInput extends EventEmitter<WindowInputEvents> {
  private readonly seats: SeatDevices[] = [];
  private cursor: { surface: WlSurface; buffer: WlBuffer; hotX: number; hotY: number } | null = null;
  private cursorHidden = false;
  private wheelRemainder = 0;

  constructor(private readonly globals: Globals, private readonly window: Window) {
    super();
    for (const { seat, capabilities } of globals.seats) {
      const devices: SeatDevices = { keyboard: null, pointer: null, pointerSerial: 0, heldKeys: new Set() };
      if (capabilities & WlSeatCapability.keyboard) devices.keyboard = this.watchKeyboard(seat.getKeyboard(), devices);
      if (capabilities & WlSeatCapability.pointer) devices.pointer = this.watchPointer(seat.getPointer(), devices);
      this.seats.push(devices);
    }
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
      motion: (_time, x, y) => motion(x, y),
      button: (_serial, _time, button, state) => this.emit('button', button, state === WlPointerButtonState.pressed),
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
    for (const devices of this.seats) {
      if (devices.keyboard && !devices.keyboard.destroyed && devices.keyboard.version >= 3) devices.keyboard.release();
      if (devices.pointer && !devices.pointer.destroyed && devices.pointer.version >= 3) devices.pointer.release();
    }
    this.seats.length = 0;
    this.destroyCursor();
  }
}
