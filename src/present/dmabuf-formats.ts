// What the compositor accepts as linux-dmabuf buffers: (fourcc, modifier) pairs, from v3's format/modifier
// events or v4's default feedback (format table + tranches, where a scanout tranche marks direct scan-out).
import type { ZwpLinuxDmabufV1, ZwpLinuxDmabufFeedbackV1 } from '../wayland/protocols/index.js';
import { mmap, munmap, close, fstat } from '../native/fds.js';
import { fourccToString } from '../formats.js';

export const TRANCHE_FLAG_SCANOUT = 1;
const MOD_LINEAR = 0n;
const MOD_INVALID = 0xffffffffffffffn;

export interface DmabufTranche {
  /** dev_t of the device this tranche is for. */
  targetDevice: bigint | null;
  flags: number;
  formats: { fourcc: number; modifier: bigint }[];
}

export class DmabufFormats {
  /** fourcc → accepted modifiers. */
  readonly modifiers = new Map<number, Set<bigint>>();
  tranches: DmabufTranche[] = [];
  mainDevice: bigint | null = null;
  /** 'feedback' (v4), 'modifier-events' (v3) or 'format-events' (v1/v2: modifiers not told, implicit only). */
  source: 'feedback' | 'modifier-events' | 'format-events' = 'format-events';

  /** Listens on a freshly bound zwp_linux_dmabuf_v1; the events arrive by the next roundtrip. */
  static listen(dmabuf: ZwpLinuxDmabufV1): DmabufFormats {
    const formats = new DmabufFormats();
    if (dmabuf.version >= 4) {
      formats.source = 'feedback';
      formats.follow(dmabuf.getDefaultFeedback());
    } else {
      if (dmabuf.version >= 3) formats.source = 'modifier-events';
      dmabuf.on({
        format: (fourcc) => formats.add(fourcc, null),
        modifier: (fourcc, hi, lo) => formats.add(fourcc, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)),
      });
    }
    return formats;
  }

  /** True when the compositor takes fourcc with modifier (see wireModifier). */
  accepts(fourcc: number, modifier: bigint): boolean {
    return this.wireModifier(fourcc, modifier) !== null;
  }

  /**
   * The modifier to send for a buffer of fourcc laid out as `modifier`, or null when the compositor does not
   * take it. A linear buffer also goes as DRM_FORMAT_MOD_INVALID ("implicit") to a compositor that lists only
   * implicit modifiers (v1/v2, or a driver without modifier support, as Mesa's software drivers): for those
   * drivers implicit means linear.
   */
  wireModifier(fourcc: number, modifier: bigint): bigint | null {
    const mods = this.modifiers.get(fourcc);
    if (!mods) return null;
    if (mods.has(modifier)) return modifier;
    const implicitOnly = this.source === 'format-events' || (mods.size === 1 && mods.has(MOD_INVALID)) || mods.size === 0;
    return modifier === MOD_LINEAR && implicitOnly ? MOD_INVALID : null;
  }

  /** True when a scanout tranche lists the pair: the compositor could put it on a plane without composing. */
  scanoutCapable(fourcc: number, modifier: bigint): boolean {
    return this.tranches.some((t) => (t.flags & TRANCHE_FLAG_SCANOUT) !== 0 &&
      t.formats.some((f) => f.fourcc === fourcc && f.modifier === modifier));
  }

  describe(): string[] {
    return [...this.modifiers].map(([fourcc, mods]) =>
      `${fourccToString(fourcc)}: ${[...mods].map((m) => `0x${m.toString(16)}`).join(' ') || '(implicit)'}`);
  }

  /** Follows a feedback object: each 'done' replaces the table with the new set of tranches. */
  follow(feedback: ZwpLinuxDmabufFeedbackV1): void {
    let table: { fourcc: number; modifier: bigint }[] = [];
    let tranches: DmabufTranche[] = [];
    let current: DmabufTranche = newTranche();
    feedback.on({
      formatTable: (fd, size) => { table = readFormatTable(fd, size); },
      mainDevice: (dev) => { this.mainDevice = devT(dev); },
      trancheTargetDevice: (dev) => { current.targetDevice = devT(dev); },
      trancheFlags: (flags) => { current.flags = flags; },
      trancheFormats: (indices) => {
        const view = new Uint16Array(indices.buffer, indices.byteOffset, Math.floor(indices.byteLength / 2));
        for (const i of view) if (table[i]) current.formats.push(table[i]);
      },
      trancheDone: () => { tranches.push(current); current = newTranche(); },
      done: () => {
        this.tranches = tranches;
        tranches = [];
        this.modifiers.clear();
        for (const t of this.tranches) for (const f of t.formats) this.add(f.fourcc, f.modifier);
      },
    });
  }

  /** Records one (fourcc, modifier) pair, as a v3 format/modifier event does; null: a format without modifier. */
  add(fourcc: number, modifier: bigint | null): void {
    let set = this.modifiers.get(fourcc);
    if (!set) this.modifiers.set(fourcc, (set = new Set()));
    if (modifier !== null) set.add(modifier);
  }
}

function newTranche(): DmabufTranche {
  return { targetDevice: null, flags: 0, formats: [] };
}

function devT(bytes: Uint8Array): bigint | null {
  if (bytes.byteLength < 8) return null;
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
}

/** The v4 format table: 16-byte entries {u32 format, u32 padding, u64 modifier}, in a read-only fd we own. */
export function readFormatTable(fd: number, size: number): { fourcc: number; modifier: bigint }[] {
  try {
    // A table shorter than announced would SIGBUS on read: trust the file's real size, not the event.
    if (size <= 0 || size % 16 !== 0 || fstat(fd).size < size) return [];
    const mapping = mmap(fd, 0, size, false);
    try {
      const view = new DataView(mapping);
      const entries = [];
      for (let off = 0; off + 16 <= size; off += 16) {
        entries.push({ fourcc: view.getUint32(off, true), modifier: view.getBigUint64(off + 8, true) });
      }
      return entries;
    } finally {
      munmap(mapping);
    }
  } finally {
    close(fd);
  }
}
