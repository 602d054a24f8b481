// Linux evdev key codes (what Wayland sends) to QEMU's "qnum" key numbers (what org.qemu.Display1.Keyboard takes):
// XT set-1 scan codes, with 0x80 added for the E0-prefixed ones. Covers a 105-key PC keyboard, the JIS and
// Korean extras, and common multimedia keys (QEMU's keycodemapdb has the same values).

/** evdev codes 1..83 and 86..88 are their own set-1 scan codes (the PC AT layout evdev numbering follows). */
const IDENTITY = [...Array.from({ length: 83 }, (_, i) => i + 1), 86, 87, 88];

const EXTENDED: Record<number, number> = {
  85: 0x76, // KEY_ZENKAKUHANKAKU
  89: 0x73, // KEY_RO
  91: 0x77, // KEY_HIRAGANA
  92: 0x79, // KEY_HENKAN
  93: 0x70, // KEY_KATAKANAHIRAGANA
  94: 0x7b, // KEY_MUHENKAN
  96: 0x9c, // KEY_KPENTER
  97: 0x9d, // KEY_RIGHTCTRL
  98: 0xb5, // KEY_KPSLASH
  99: 0x54, // KEY_SYSRQ (Print Screen)
  100: 0xb8, // KEY_RIGHTALT
  102: 0xc7, // KEY_HOME
  103: 0xc8, // KEY_UP
  104: 0xc9, // KEY_PAGEUP
  105: 0xcb, // KEY_LEFT
  106: 0xcd, // KEY_RIGHT
  107: 0xcf, // KEY_END
  108: 0xd0, // KEY_DOWN
  109: 0xd1, // KEY_PAGEDOWN
  110: 0xd2, // KEY_INSERT
  111: 0xd3, // KEY_DELETE
  113: 0xa0, // KEY_MUTE
  114: 0xae, // KEY_VOLUMEDOWN
  115: 0xb0, // KEY_VOLUMEUP
  116: 0xde, // KEY_POWER
  117: 0x59, // KEY_KPEQUAL
  119: 0xc6, // KEY_PAUSE
  121: 0x7e, // KEY_KPCOMMA
  122: 0xf2, // KEY_HANGEUL
  123: 0xf1, // KEY_HANJA
  124: 0x7d, // KEY_YEN
  125: 0xdb, // KEY_LEFTMETA
  126: 0xdc, // KEY_RIGHTMETA
  127: 0xdd, // KEY_COMPOSE
  139: 0x9e, // KEY_MENU
  142: 0xdf, // KEY_SLEEP
  163: 0x99, // KEY_NEXTSONG
  164: 0xa2, // KEY_PLAYPAUSE
  165: 0x90, // KEY_PREVIOUSSONG
  166: 0xa4, // KEY_STOPCD
  183: 0x5d, 184: 0x5e, 185: 0x5f, // KEY_F13..F15
};

const TABLE = new Map<number, number>([...IDENTITY.map((c) => [c, c] as [number, number]), ...Object.entries(EXTENDED).map(([k, v]) => [Number(k), v] as [number, number])]);

/** The qnum for an evdev key code, or null for keys QEMU's PC keyboard has no number for. */
export function evdevToQnum(code: number): number | null {
  return TABLE.get(code) ?? null;
}
