// linux-dmabuf format bookkeeping without a compositor that offers it (no such compositor runs on this host; the
// lab tier covers v3 for real): the v4 format table is read from a real memfd, as a compositor would send it.
import { describe, expect, it } from 'vitest';
import { DmabufFormats, readFormatTable } from '../src/present/dmabuf-formats.js';
import { memfdCreate, ftruncate, pwrite, listOpenFds } from '../src/native/fds.js';

const XR24 = 0x34325258;
const AR24 = 0x34325241;
const LINEAR = 0n;
const INVALID = 0xffffffffffffffn;

function table(entries: [number, bigint][], declaredExtra = 0): { fd: number; size: number } {
  const bytes = Buffer.alloc(entries.length * 16);
  entries.forEach(([fourcc, mod], i) => { bytes.writeUInt32LE(fourcc, i * 16); bytes.writeBigUInt64LE(mod, i * 16 + 8); });
  const fd = memfdCreate('format-table', true);
  ftruncate(fd, bytes.length);
  pwrite(fd, bytes, 0);
  return { fd, size: bytes.length + declaredExtra };
}

describe('linux-dmabuf formats', () => {
  it('reads a v4 format table from its fd and closes the fd', () => {
    const before = listOpenFds();
    const { fd, size } = table([[XR24, LINEAR], [AR24, 0x0100000000000001n]]);
    expect(readFormatTable(fd, size)).toEqual([{ fourcc: XR24, modifier: LINEAR }, { fourcc: AR24, modifier: 0x0100000000000001n }]);
    expect(listOpenFds()).toEqual(before);
  });

  it('refuses a table that claims more bytes than its file has (it would SIGBUS), still closing the fd', () => {
    const before = listOpenFds();
    const { fd, size } = table([[XR24, LINEAR]], 16 * 1000);
    expect(readFormatTable(fd, size)).toEqual([]);
    expect(listOpenFds()).toEqual(before);
  });

  it('sends linear buffers as implicit to a compositor that lists only implicit modifiers', () => {
    const f = new DmabufFormats();
    f.source = 'modifier-events';
    f.add(XR24, INVALID);
    expect(f.wireModifier(XR24, LINEAR)).toBe(INVALID);
    expect(f.wireModifier(XR24, 0x0100000000000001n)).toBe(null);
    expect(f.wireModifier(AR24, LINEAR)).toBe(null);
    f.add(AR24, LINEAR);
    expect(f.wireModifier(AR24, LINEAR)).toBe(LINEAR);
  });
});
