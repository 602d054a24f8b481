// Unmarshals the D-Bus wire format, either endianness. Every read is bounds-checked and every fault is a
// DBusWireError that says what was wrong where. Byte arrays come back as views into the message buffer.
import { isUtf8 } from 'node:buffer';
import { DBusWireError } from './errors.js';
import { parseSignature, parseSingleType, type SigType } from './signature.js';
import { MAX_ARRAY_BYTES, MAX_NESTING, Variant, isObjectPath, type DBusValue } from './values.js';

export class Reader {
  /** Indices into `fds` that 'h' values referenced. */
  readonly referencedFds = new Set<number>();

  /**
   * Reads buf[pos, end). Alignment is counted from buf[0], which must be the start of the message.
   * fds are the message's unix fds: an 'h' value is an index into them and comes back as the fd itself.
   */
  constructor(private readonly buf: Buffer, public pos: number, private readonly end: number,
    private readonly littleEndian: boolean, private readonly fds: readonly number[] = [], private readonly what = 'body') {}

  /** Reads one value per complete type of `signature`; the data must end exactly there. */
  readAll(signature: string): DBusValue[] {
    const values = parseSignature(signature).map((type) => this.read(type, 0));
    if (this.pos !== this.end) {
      throw new DBusWireError(`${this.what} has ${this.end - this.pos} bytes left over after its signature '${signature}'`);
    }
    return values;
  }

  read(type: SigType, depth: number): DBusValue {
    const le = this.littleEndian;
    const b = this.buf;
    switch (type.kind) {
      case 'y': return b[this.at(1, 'y')];
      case 'b': {
        const n = this.uint32('b');
        if (n > 1) throw this.error(`boolean is ${n} (must be 0 or 1)`, -4);
        return n === 1;
      }
      case 'n': { const p = this.at(2, 'n'); return le ? b.readInt16LE(p) : b.readInt16BE(p); }
      case 'q': { const p = this.at(2, 'q'); return le ? b.readUInt16LE(p) : b.readUInt16BE(p); }
      case 'i': { const p = this.at(4, 'i'); return le ? b.readInt32LE(p) : b.readInt32BE(p); }
      case 'u': return this.uint32('u');
      case 'x': { const p = this.at(8, 'x'); return le ? b.readBigInt64LE(p) : b.readBigInt64BE(p); }
      case 't': { const p = this.at(8, 't'); return le ? b.readBigUInt64LE(p) : b.readBigUInt64BE(p); }
      case 'd': { const p = this.at(8, 'd'); return le ? b.readDoubleLE(p) : b.readDoubleBE(p); }
      case 'h': {
        const index = this.uint32('h');
        if (index >= this.fds.length) {
          throw this.error(`handle refers to unix fd #${index} but the message carries ${this.fds.length}`, -4);
        }
        this.referencedFds.add(index);
        return this.fds[index];
      }
      case 's': case 'o': {
        const length = this.uint32(type.kind);
        const s = this.stringBytes(length, type.kind);
        if (type.kind === 'o' && !isObjectPath(s)) throw this.error(`invalid object path '${s}'`);
        return s;
      }
      case 'g': return this.signature();
      case 'v': {
        this.checkDepth(depth + 1);
        const sig = this.signature();
        let inner: SigType;
        try {
          inner = parseSingleType(sig);
        } catch (e) {
          throw this.error(`variant: ${(e as Error).message}`);
        }
        return new Variant(sig, this.read(inner, depth + 1));
      }
      case '(': {
        this.checkDepth(depth + 1);
        this.skipPadding(8);
        return type.fields.map((field) => this.read(field, depth + 1));
      }
      case 'a': return this.array(type.elem, depth + 1);
      case '{': throw this.error(`dict entry '${type.sig}' outside an array`);
    }
  }

  /** Reads an array at nesting level `depth`; a dict entry inside it is one level deeper. */
  private array(elem: SigType, depth: number): DBusValue {
    this.checkDepth(depth);
    const length = this.uint32('a');
    if (length > MAX_ARRAY_BYTES) throw this.error(`array length ${length} exceeds the maximum ${MAX_ARRAY_BYTES}`, -4);
    this.skipPadding(elem.align);
    const end = this.pos + length;
    if (end > this.end) {
      throw this.error(`array 'a${elem.sig}' length ${length} goes beyond the end of the ${this.what} (${this.end - this.pos} bytes left)`);
    }
    if (elem.kind === 'y') {
      this.pos = end;
      return this.buf.subarray(end - length, end);
    }
    const inner = new Reader(this.buf, this.pos, end, this.littleEndian, this.fds, `array 'a${elem.sig}'`);
    let result: DBusValue;
    if (elem.kind === '{') {
      this.checkDepth(depth + 1);
      const map = new Map<DBusValue, DBusValue>();
      while (inner.pos < end) {
        inner.skipPadding(8);
        const key = inner.read(elem.key, depth + 1);
        map.set(key, inner.read(elem.value, depth + 1));
      }
      result = map;
    } else {
      const items: DBusValue[] = [];
      while (inner.pos < end) items.push(inner.read(elem, depth));
      result = items;
    }
    for (const i of inner.referencedFds) this.referencedFds.add(i);
    this.pos = end;
    return result;
  }

  private signature(): string {
    const length = this.buf[this.at(1, 'g')];
    const sig = this.stringBytes(length, 'g');
    if (!/^[a-z(){}]*$/.test(sig)) throw this.error(`signature '${sig}' has characters no type uses`);
    try {
      parseSignature(sig);
    } catch (e) {
      throw this.error((e as Error).message);
    }
    return sig;
  }

  private stringBytes(length: number, code: string): string {
    if (length + 1 > this.end - this.pos) {
      throw this.error(`'${code}' of ${length} bytes goes beyond the end of the ${this.what} (${this.end - this.pos} bytes left)`);
    }
    const start = this.pos;
    this.pos += length + 1;
    if (this.buf[start + length] !== 0) throw this.error(`'${code}' is not NUL-terminated`, start + length - this.pos);
    const bytes = this.buf.subarray(start, start + length);
    if (bytes.includes(0)) throw this.error(`'${code}' contains a NUL byte`, start - this.pos);
    if (!isUtf8(bytes)) throw this.error(`'${code}' is not valid UTF-8`, start - this.pos);
    return bytes.toString('utf8');
  }

  private uint32(code: string): number {
    const p = this.at(4, code);
    return this.littleEndian ? this.buf.readUInt32LE(p) : this.buf.readUInt32BE(p);
  }

  /** Skips the padding before a fixed-size value, checks the value is all there, consumes it: returns where it is. */
  private at(size: number, code: string): number {
    this.skipPadding(size);
    if (this.pos + size > this.end) {
      throw this.error(`truncated: '${code}' needs ${size} bytes, ${this.end - this.pos} left`);
    }
    this.pos += size;
    return this.pos - size;
  }

  private checkDepth(depth: number): void {
    if (depth > MAX_NESTING) throw this.error(`containers nested deeper than ${MAX_NESTING}`);
  }

  private skipPadding(align: number): void {
    const pad = (align - (this.pos % align)) % align;
    if (pad === 0) return;
    if (this.pos + pad > this.end) throw this.error(`truncated inside alignment padding`);
    for (let i = this.pos; i < this.pos + pad; i++) {
      if (this.buf[i] !== 0) throw this.error(`alignment padding byte is ${this.buf[i]}, not 0`);
    }
    this.pos += pad;
  }

  private error(why: string, offsetDelta = 0): DBusWireError {
    return new DBusWireError(`${this.what} at offset ${this.pos + offsetDelta}: ${why}`);
  }
}
