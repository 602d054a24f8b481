// Marshals values into the D-Bus wire format (little endian unless asked otherwise; the peer must accept both).
import { DBusWireError } from './errors.js';
import { parseSignature, parseSingleType, type SigType } from './signature.js';
import { MAX_ARRAY_BYTES, Variant, isObjectPath, type DBusValue } from './values.js';

const INT_RANGES: Record<string, [number, number]> = {
  y: [0, 0xff], n: [-0x8000, 0x7fff], q: [0, 0xffff], i: [-0x80000000, 0x7fffffff], u: [0, 0xffffffff],
  h: [0, 0x7fffffff],
};
const INT64_RANGES: Record<string, [bigint, bigint]> = {
  x: [-(1n << 63n), (1n << 63n) - 1n], t: [0n, (1n << 64n) - 1n],
};

export class Writer {
  /** The fds referenced by 'h' values, in index order. */
  readonly fds: number[] = [];
  private buf: Buffer;
  private pos = 0;

  constructor(private readonly littleEndian = true, capacity = 256) {
    this.buf = Buffer.alloc(capacity);
  }

  get length(): number {
    return this.pos;
  }

  /** The bytes written so far (a view, not a copy). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** Writes one value per complete type of `signature`. */
  writeAll(signature: string, values: readonly DBusValue[]): void {
    const types = parseSignature(signature);
    if (types.length !== values.length) {
      throw new DBusWireError(`signature '${signature}' needs ${types.length} values, got ${values.length}`);
    }
    types.forEach((type, i) => this.write(type, values[i]));
  }

  align(n: number): void {
    const pad = (n - (this.pos % n)) % n;
    this.reserve(pad);
    this.buf.fill(0, this.pos, this.pos + pad);
    this.pos += pad;
  }

  write(type: SigType, value: DBusValue): void {
    const mismatch = (): never => {
      throw new DBusWireError(`value ${describe(value)} does not fit D-Bus type '${type.sig}'`);
    };
    switch (type.kind) {
      case 'y': case 'n': case 'q': case 'i': case 'u': case 'h': {
        const [min, max] = INT_RANGES[type.kind];
        if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) mismatch();
        const n = value as number;
        if (type.kind === 'h') return this.writeUint32(this.fdIndex(n));
        this.align(type.align);
        this.reserve(type.align);
        const le = this.littleEndian;
        if (type.kind === 'y') this.buf[this.pos] = n;
        else if (type.kind === 'n') le ? this.buf.writeInt16LE(n, this.pos) : this.buf.writeInt16BE(n, this.pos);
        else if (type.kind === 'q') le ? this.buf.writeUInt16LE(n, this.pos) : this.buf.writeUInt16BE(n, this.pos);
        else if (type.kind === 'i') le ? this.buf.writeInt32LE(n, this.pos) : this.buf.writeInt32BE(n, this.pos);
        else le ? this.buf.writeUInt32LE(n, this.pos) : this.buf.writeUInt32BE(n, this.pos);
        this.pos += type.align;
        return;
      }
      case 'x': case 't': {
        if (typeof value === 'number' && !Number.isSafeInteger(value)) mismatch();
        if (typeof value !== 'number' && typeof value !== 'bigint') mismatch();
        const big = BigInt(value as number | bigint);
        const [min, max] = INT64_RANGES[type.kind];
        if (big < min || big > max) mismatch();
        this.align(8);
        this.reserve(8);
        if (type.kind === 'x') this.littleEndian ? this.buf.writeBigInt64LE(big, this.pos) : this.buf.writeBigInt64BE(big, this.pos);
        else this.littleEndian ? this.buf.writeBigUInt64LE(big, this.pos) : this.buf.writeBigUInt64BE(big, this.pos);
        this.pos += 8;
        return;
      }
      case 'd':
        if (typeof value !== 'number') mismatch();
        this.align(8);
        this.reserve(8);
        this.littleEndian ? this.buf.writeDoubleLE(value as number, this.pos) : this.buf.writeDoubleBE(value as number, this.pos);
        this.pos += 8;
        return;
      case 'b':
        if (typeof value !== 'boolean') mismatch();
        return this.writeUint32(value ? 1 : 0);
      case 's': case 'o':
        if (typeof value !== 'string' || value.includes('\0')) mismatch();
        if (type.kind === 'o' && !isObjectPath(value as string)) mismatch();
        return this.writeString(value as string);
      case 'g':
        if (typeof value !== 'string') mismatch();
        parseSignature(value as string);
        return this.writeSignature(value as string);
      case 'v': {
        if (!(value instanceof Variant)) mismatch();
        const v = value as Variant;
        const inner = parseSingleType(v.signature);
        this.writeSignature(v.signature);
        return this.write(inner, v.value);
      }
      case '(': {
        if (!Array.isArray(value) || value.length !== type.fields.length) mismatch();
        this.align(8);
        type.fields.forEach((field, i) => this.write(field, (value as DBusValue[])[i]));
        return;
      }
      case 'a':
        return this.writeArray(type.elem, value, mismatch);
      case '{':
        throw new DBusWireError(`dict entry '${type.sig}' outside an array`);
    }
  }

  private writeArray(elem: SigType, value: DBusValue, mismatch: () => never): void {
    this.align(4);
    const lengthAt = this.pos;
    this.writeUint32(0);
    this.align(elem.align); // padding to the first element is there even when the array is empty
    const start = this.pos;
    if (elem.kind === 'y' && value instanceof Uint8Array) {
      this.reserve(value.length);
      this.buf.set(value, this.pos);
      this.pos += value.length;
    } else if (elem.kind === '{') {
      let entries: Iterable<[DBusValue, DBusValue]>;
      if (value instanceof Map) entries = value;
      else if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array) &&
        !(value instanceof Variant)) entries = Object.entries(value);
      else return mismatch();
      for (const [k, v] of entries) {
        this.align(8);
        this.write(elem.key, k);
        this.write(elem.value, v);
      }
    } else {
      if (!Array.isArray(value)) mismatch();
      for (const item of value as DBusValue[]) this.write(elem, item);
    }
    const length = this.pos - start;
    if (length > MAX_ARRAY_BYTES) throw new DBusWireError(`array '${'a' + elem.sig}' is ${length} bytes (max ${MAX_ARRAY_BYTES})`);
    this.littleEndian ? this.buf.writeUInt32LE(length, lengthAt) : this.buf.writeUInt32BE(length, lengthAt);
  }

  private writeUint32(n: number): void {
    this.align(4);
    this.reserve(4);
    this.littleEndian ? this.buf.writeUInt32LE(n, this.pos) : this.buf.writeUInt32BE(n, this.pos);
    this.pos += 4;
  }

  private writeString(s: string): void {
    const length = Buffer.byteLength(s);
    this.writeUint32(length);
    this.reserve(length + 1);
    this.pos += this.buf.write(s, this.pos);
    this.buf[this.pos++] = 0;
  }

  private writeSignature(s: string): void {
    this.reserve(s.length + 2);
    this.buf[this.pos++] = s.length;
    this.pos += this.buf.write(s, this.pos, 'latin1');
    this.buf[this.pos++] = 0;
  }

  private fdIndex(fd: number): number {
    const known = this.fds.indexOf(fd);
    if (known >= 0) return known;
    this.fds.push(fd);
    return this.fds.length - 1;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (typeof value === 'bigint') return `${value}n`;
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 60 ? s.slice(0, 57) + '...' : s;
  } catch {
    return String(value);
  }
}
