// Forwards the window's keyboard and pointer to a QEMU console, and shows the guest's cursor on the window.
// Absolute pointers (a USB or virtio tablet) get SetAbsPosition in guest pixels; relative ones get RelMotion:
// from the locked pointer's movement (a click locks it, Ctrl+Alt+G releases it) where the compositor has
// pointer-constraints and relative-pointer, else from the pointer's position changes. Absolute motion is
// coalesced: at most one position call in flight, the latest one next.
import type { WindowInput } from '../../present/window-input.js';
import { log } from '../../log.js';
import { listen } from '../../events.js';
import { evdevToQnum } from './keymap.js';
import { MouseButton, type QemuDisplay } from './display.js';
import type { CursorDefineEvent, MouseSetEvent } from './listener.js';

/** evdev pointer buttons (linux/input-event-codes.h) to the D-Bus interface's numbers. */
const BUTTONS = new Map<number, number>([
  [0x110, MouseButton.left], [0x111, MouseButton.right], [0x112, MouseButton.middle],
  [0x113, MouseButton.side], [0x114, MouseButton.extra],
]);

export interface InputForwarding {
  readonly stats: { keys: number; motions: number; buttons: number; wheelSteps: number; failed: number };
  stop(): void;
}

export function forwardInput(input: WindowInput, display: QemuDisplay): InputForwarding {
  const stats = { keys: 0, motions: 0, buttons: 0, wheelSteps: 0, failed: 0 };
  const pressed = new Set<number>();
  let absolute = true;
  let last: { x: number; y: number } | null = null;
  let inFlight = false;
  let queued: { x: number; y: number } | null = null;

  const call = (what: string, p: Promise<void>): void => {
    p.catch((e: Error) => {
      stats.failed++;
      if (!display.closed) log.debug({ err: e.message, what }, 'qemu: input call failed');
    });
  };
  const sendPosition = (x: number, y: number): void => {
    if (!absolute && input.relativeLocking) return; // relative motion comes from the locked pointer instead
    if (inFlight) {
      queued = { x, y };
      return;
    }
    const previous = last;
    last = { x, y };
    if (!absolute && !previous) return; // the first position only sets where relative motion starts
    inFlight = true;
    stats.motions++;
    const wasAbsolute = absolute;
    const sent = (absolute ? display.mouse.setAbsPosition(x, y) : display.mouse.relMotion(x - previous!.x, y - previous!.y))
      .catch((e: Error) => {
        // QEMU 7.2's IsAbsolute property can lag the guest's devices; its refusal is the reliable answer.
        if (wasAbsolute && /not absolute/.test(e.message)) onMode(false);
        else if (!wasAbsolute && /not relative/.test(e.message)) onMode(true);
        else throw e;
      });
    call('motion', sent.finally(() => {
      inFlight = false;
      const next = queued;
      queued = null;
      if (next) sendPosition(next.x, next.y);
    }));
  };
  const onKey = (code: number, down: boolean): void => {
    const qnum = evdevToQnum(code);
    if (qnum === null) {
      log.debug({ code }, 'qemu: key with no QEMU number ignored');
      return;
    }
    if (down) pressed.add(qnum);
    else if (!pressed.delete(qnum)) return;
    stats.keys++;
    call('key', down ? display.keyboard.press(qnum) : display.keyboard.release(qnum));
  };
  const onButton = (code: number, down: boolean): void => {
    const button = BUTTONS.get(code);
    if (button === undefined) return;
    stats.buttons++;
    call('button', down ? display.mouse.press(button) : display.mouse.release(button));
  };
  const onWheel = (steps: number): void => {
    const button = steps > 0 ? MouseButton.wheelDown : MouseButton.wheelUp;
    for (let i = 0; i < Math.abs(steps); i++) {
      stats.wheelSteps++;
      call('wheel', display.mouse.press(button).then(() => display.mouse.release(button)));
    }
  };
  const onBlur = (): void => {
    for (const qnum of pressed) call('key', display.keyboard.release(qnum));
    pressed.clear();
  };
  const onCursor = (e: CursorDefineEvent): void => {
    input.setCursor({ width: e.width, height: e.height, hotX: e.hotX, hotY: e.hotY, argb: e.data });
  };
  const onMouseSet = (e: MouseSetEvent): void => input.setCursorHidden(!e.on);
  let relativeRemainder = { x: 0, y: 0 };
  const onRelative = (dx: number, dy: number): void => {
    const x = dx + relativeRemainder.x;
    const y = dy + relativeRemainder.y;
    const ix = Math.trunc(x);
    const iy = Math.trunc(y);
    relativeRemainder = { x: x - ix, y: y - iy };
    if (ix === 0 && iy === 0) return;
    stats.motions++;
    call('relative motion', display.mouse.relMotion(ix, iy).catch((e: Error) => {
      if (/not relative/.test(e.message)) onMode(true);
      else throw e;
    }));
  };
  const onMode = (mode: boolean): void => {
    log.debug({ absolute: mode }, 'qemu: the guest\'s pointer mode');
    absolute = mode;
    last = null;
    input.setRelativeMode(!mode);
  };

  // Absolute until QEMU says otherwise (a refused SetAbsPosition, or IsAbsolute changing): its IsAbsolute
  // property read at attach time can be stale (QEMU 7.2 answers false with an active virtio tablet).
  const subscriptions = [
    listen(input, 'key', onKey), listen(input, 'motion', sendPosition), listen(input, 'button', onButton),
    listen(input, 'wheel', onWheel), listen(input, 'blur', onBlur), listen(input, 'relative-motion', onRelative),
    listen(display, 'cursor-define', onCursor), listen(display, 'mouse-set', onMouseSet), listen(display, 'mouse-mode', onMode),
  ];
  return {
    stats,
    stop: () => {
      onBlur();
      subscriptions.forEach((off) => off());
      input.setRelativeMode(false);
    },
  };
}

