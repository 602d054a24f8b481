// Window shortcuts handled by the presenter itself (not forwarded to a guest): F11 toggles fullscreen.
import type { Globals } from './globals.js';
import type { Window } from './window.js';
import type { WlKeyboard } from '../wayland/protocols/index.js';
import { WlSeatCapability, WlKeyboardKeyState } from '../wayland/protocols/index.js';
import { close } from '../native/fds.js';

const KEY_F11 = 87; // linux/input-event-codes.h

export function installShortcuts(globals: Globals, window: Window): () => void {
  const keyboards: WlKeyboard[] = [];
  for (const { seat, capabilities } of globals.seats) {
    if (!(capabilities & WlSeatCapability.keyboard)) continue;
    const keyboard = seat.getKeyboard();
    keyboard.on({
      keymap: (_format, fd) => close(fd), // no key mapping needed for evdev codes
      key: (_serial, _time, key, state) => {
        if (key === KEY_F11 && state === WlKeyboardKeyState.pressed) window.setFullscreen(!window.fullscreen);
      },
    });
    keyboards.push(keyboard);
  }
  return () => {
    for (const keyboard of keyboards) if (!keyboard.destroyed && keyboard.version >= 3) keyboard.release();
  };
}
