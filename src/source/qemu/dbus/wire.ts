/// <reference path="./dbus-native.d.ts" />
// The D-Bus wire format, done by dbus-native: lib/marshall.js writes values, lib/dbus-buffer.js reads them (either
// byte order), lib/signature.js parses signatures, lib/message.js lays out whole messages (message.ts). What is
// ours is the boundary around it:
//  - strictness dbus-native leaves out as a lenient receiver. Signatures are checked against the specification (it
//    takes GVariant codes, empty structs, dict entries outside arrays, any key type, any depth), and WireReader, a
//    subclass of its DBusBuffer, bounds-checks every read against the enclosing array, header or body and checks
//    padding, booleans, strings (NUL, UTF-8), object paths, fd indexes and nesting: malformed input is a
//    DBusWireError that says what was wrong where, never a RangeError or a quietly wrong value;
//  - our value representation (values.ts): a{..} as a Map, 'h' as the fd itself (an index into the message's fds
//    on the wire), x/t as bigint (its returnBigInt: lossless), v as a Variant (its own class, variants: 'wrap');
//  - 'ay' as a view of the received message buffer (its ayBuffer: 'view'), never a copy: QEMU's Scanout and
//    Update frames are megabytes, 240 MB/s.
import { isUtf8 } from 'node:buffer';
import DBusBuffer from 'dbus-native/lib/dbus-buffer.js';
import dbusConstants from 'dbus-native/lib/constants.js';
import marshall from 'dbus-native/lib/marshall.js';
import parseTree from 'dbus-native/lib/signature.js';
import dbusValues from 'dbus-native/lib/values.js';
import { DBusWireError } from './errors.js';
import { MAX_ARRAY_BYTES, MAX_NESTING, Variant, isObjectPath, type DBusValue } from './values.js';

export type SigNode = parseTree.SigNode;

const { dumpSignature, isPlainObject } = dbusValues;

// ---- signatures ----

const MAX_SIGNATURE = 255;
/** For arrays, and separately for structs and dict entries (the specification's limits). */
const MAX_DEPTH = 32;
const BASIC = new Set('ybnqiuxtdsogh');
const NOT_A_CODE = /[^ybnqiuxtdsoghva(){}]/;
const checked = new Set<string>();

/**
 * A signature checked against the specification: its complete types (dbus-native's parse tree). With `single`,
 * it must be exactly one (a variant's). Throws a DBusWireError naming the fault.
 */
export function checkSignature(signature: string, single = false): readonly SigNode[] {
  if (!checked.has(signature)) {
    const fail = (why: string): never => {
      throw new DBusWireError(`bad signature '${signature}': ${why}`);
    };
    if (signature.length > MAX_SIGNATURE) fail(`${signature.length} characters long (max ${MAX_SIGNATURE})`);
    const bad = NOT_A_CODE.exec(signature);
    if (bad) fail(`unknown type code '${bad[0]}' at ${bad.index}`);
    let tree: readonly SigNode[] = [];
    try {
      tree = parseTree(signature);
    } catch {
      fail('ends inside a container');
    }
    for (const node of tree) checkNode(node, 0, 0, fail);
    if (checked.size > 512) checked.clear(); // signatures come from the peer: bounded
    checked.add(signature);
  }
  const tree = parseTree(signature);
  if (single && tree.length !== 1) {
    throw new DBusWireError(`signature '${signature}' must be a single complete type (has ${tree.length})`);
  }
  return tree;
}

function checkNode(node: SigNode, arrays: number, structs: number, fail: (why: string) => never): void {
  switch (node.type) {
    case 'a': {
      if (arrays + 1 > MAX_DEPTH) fail(`arrays nested deeper than ${MAX_DEPTH}`);
      const [element] = node.child;
      if (element.type !== '{') return checkNode(element, arrays + 1, structs, fail);
      if (structs + 1 > MAX_DEPTH) fail(`dict entries and structs nested deeper than ${MAX_DEPTH}`);
      if (element.child.length !== 2) fail('a dict entry has exactly one key and one value');
      const [key, value] = element.child;
      if (!BASIC.has(key.type)) fail(`dict entry key must be a basic type, not '${dumpSignature([key])}'`);
      return checkNode(value, arrays + 1, structs + 1, fail);
    }
    case '(':
      if (structs + 1 > MAX_DEPTH) fail(`structs nested deeper than ${MAX_DEPTH}`);
      if (node.child.length === 0) fail('empty struct');
      for (const field of node.child) checkNode(field, arrays, structs + 1, fail);
      return;
    case '{': return fail('dict entry outside an array');
    case ')': case '}': return fail(`'${node.type}' closes no container`);
    default:
      if (!BASIC.has(node.type) && node.type !== 'v') fail(`unknown type code '${node.type}'`);
  }
}

/** The complete types of a checked signature, each as its own signature ('a{sv}(ii)u' → a{sv}, (ii), u). */
export function signatureTypes(signature: string): string[] {
  return checkSignature(signature).map((node) => dumpSignature([node]));
}

// ---- marshalling ----

/**
 * Values as dbus-native's marshaller takes them: Maps (and plain objects) as [key, value] pairs, 'h' fds as
 * indexes into `fds`, the fds to send with the message. Checks the signature and the shapes it has to convert.
 */
export function toWire(signature: string, values: readonly DBusValue[]): { values: unknown[]; fds: number[] } {
  const types = checkSignature(signature);
  if (types.length !== values.length) {
    throw new DBusWireError(`signature '${signature}' needs ${types.length} values, got ${values.length}`);
  }
  const fds: number[] = [];
  return { values: types.map((type, i) => convert(type, values[i], fds)), fds };
}

function convert(node: SigNode, value: DBusValue, fds: number[]): unknown {
  switch (node.type) {
    case 'h': {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw mismatch(node, value, 'an fd');
      const known = fds.indexOf(value);
      return known >= 0 ? known : fds.push(value) - 1;
    }
    case 'v': {
      if (!(value instanceof Variant)) throw mismatch(node, value, 'a Variant');
      const [inner] = checkSignature(value.signature, true);
      return new Variant(value.signature, convert(inner, value.value, fds) as DBusValue);
    }
    case '(':
      if (!Array.isArray(value) || value.length !== node.child.length) throw mismatch(node, value, `an array of ${node.child.length} fields`);
      return value.map((field, i) => convert(node.child[i], field, fds));
    case 'a': {
      const [element] = node.child;
      if (element.type === 'y' && ArrayBuffer.isView(value)) {
        if (value.byteLength > MAX_ARRAY_BYTES) throw new DBusWireError(`array 'ay' is ${value.byteLength} bytes (max ${MAX_ARRAY_BYTES})`);
        return value; // written in one piece by dbus-native's byte array fast path
      }
      if (element.type === '{') {
        const entries = value instanceof Map ? [...value] : isPlainObject(value) ? Object.entries(value) : null;
        if (!entries) throw mismatch(node, value, 'a Map or a plain object');
        const [keyType, valueType] = element.child;
        return entries.map(([k, v]) => [convert(keyType, k, fds), convert(valueType, v, fds)]);
      }
      if (!Array.isArray(value)) throw mismatch(node, value, 'an array');
      return value.map((item) => convert(element, item, fds));
    }
    case 'g':
      if (typeof value === 'string') checkSignature(value); // dbus-native's own check is lenient
      return value;
    default:
      return value; // basic values: dbus-native checks them (type, range, NUL, object path)
  }
}

function mismatch(node: SigNode, value: unknown, wanted: string): DBusWireError {
  return new DBusWireError(`value ${describe(value)} does not fit D-Bus type '${dumpSignature([node])}' (${wanted})`);
}

/** Runs dbus-native's marshaller; its complaints become DBusWireErrors that show the values. */
export function marshalling<T>(signature: string, values: readonly DBusValue[], run: () => T): T {
  try {
    return run();
  } catch (e) {
    if (e instanceof DBusWireError) throw e;
    throw new DBusWireError(`values ${describe(values)} do not fit D-Bus signature '${signature}': ${(e as Error).message}`);
  }
}

/**
 * Marshals values by dbus-native (little endian; alignment counted from `offset`, the position in the message).
 * The fds of 'h' values are returned to travel beside the bytes.
 */
export function marshallValues(signature: string, values: readonly DBusValue[], offset = 0): { bytes: Buffer; fds: number[] } {
  const wire = toWire(signature, values);
  return { bytes: marshalling(signature, values, () => marshall(signature, wire.values, offset)), fds: wire.fds };
}

// ---- unmarshalling ----

const READ_OPTIONS = { ayBuffer: 'view', returnBigInt: true, variants: 'wrap' } as const;
const ALIGN_8 = new Set(['x', 't', 'd', '{', '(']);
const CONTAINERS = new Set(['a', '(', '{', 'v']);

export interface WireReaderOptions {
  /** Default true. */
  littleEndian?: boolean;
  /** Where to start reading; alignment counts from buf[0], which must be the start of the message. Default 0. */
  start?: number;
  /** Where the data ends (default: the buffer's end). */
  end?: number;
  /** The message's unix fds: an 'h' value is an index into them and comes back as the fd itself. */
  fds?: readonly number[];
  /** What is read, for error messages (default 'body'). */
  what?: string;
}

/** dbus-native's value reader with every read checked (see the top of this file). */
export class WireReader extends DBusBuffer {
  /** Indices into the fds that 'h' values referenced. */
  readonly referencedFds = new Set<number>();
  private limit: number;
  private readonly what: string;
  private readonly fds: readonly number[];
  /** The element type of the innermost array being read, for error messages. */
  private array: SigNode | null = null;
  /** The type code being read, for error messages. */
  private code = '';
  private depth = 0;
  /** The next 'g' read is a variant's signature. */
  private variantSignature = false;

  constructor(buf: Buffer, options: WireReaderOptions = {}) {
    super(buf, 0, READ_OPTIONS, options.littleEndian === false ? dbusConstants.endianness.be : dbusConstants.endianness.le);
    this.pos = options.start ?? 0;
    this.limit = options.end ?? buf.length;
    this.what = options.what ?? 'body';
    this.fds = options.fds ?? [];
  }

  /** Reads one value per complete type of `signature`. */
  readValues(signature: string): DBusValue[] {
    checkSignature(signature);
    return this.guarded(() => this.read(signature) as DBusValue[]);
  }

  /** Reads one value per complete type of `signature`; the data must end exactly there. */
  readAll(signature: string): DBusValue[] {
    const values = this.readValues(signature);
    if (this.pos !== this.limit) {
      throw new DBusWireError(`${this.what} has ${this.limit - this.pos} bytes left over after its signature '${signature}'`);
    }
    return values;
  }

  /** Skips the padding to the next 8-byte boundary (it must be zeros). */
  alignTo8(): void {
    this.guarded(() => this.align(3));
  }

  // dbus-native's reads, checked first

  override align(power: number): void {
    const size = 1 << power;
    const pad = (size - ((this.startPos + this.pos) % size)) % size;
    if (pad === 0) return;
    if (this.pos + pad > this.limit) throw this.fail('truncated inside alignment padding');
    for (let i = this.pos; i < this.pos + pad; i++) {
      if (this.buffer[i] !== 0) throw this.fail(`alignment padding byte is ${this.buffer[i]}, not 0`, i);
    }
    super.align(power);
  }

  override readInt8(): number {
    this.need(1, 0);
    return super.readInt8();
  }

  override readSInt16(): number {
    this.need(2, 1);
    return super.readSInt16();
  }

  override readInt16(): number {
    this.need(2, 1);
    return super.readInt16();
  }

  override readSInt32(): number {
    this.need(4, 2);
    return super.readSInt32();
  }

  override readInt32(): number {
    this.need(4, 2);
    return super.readInt32();
  }

  override readDouble(): number {
    this.need(8, 3);
    return super.readDouble();
  }

  override readBigInt(unsigned: boolean): bigint {
    this.need(8, 3);
    return super.readBigInt(unsigned);
  }

  override readString(length: number): string {
    const start = this.pos;
    const code = this.code;
    if (length + 1 > this.limit - start) {
      throw this.fail(`'${code}' of ${length} bytes goes beyond the end of the ${this.where()} (${this.limit - start} bytes left)`);
    }
    if (this.buffer[start + length] !== 0) throw this.fail(`'${code}' is not NUL-terminated`, start + length);
    const bytes = this.buffer.subarray(start, start + length);
    if (bytes.includes(0)) throw this.fail(`'${code}' contains a NUL byte`, start);
    if (!isUtf8(bytes)) throw this.fail(`'${code}' is not valid UTF-8`, start);
    return super.readString(length);
  }

  override readTree(tree: SigNode): unknown {
    if (!CONTAINERS.has(tree.type)) return super.readTree(tree);
    if (this.depth >= MAX_NESTING) throw this.fail(`containers nested deeper than ${MAX_NESTING}`);
    this.depth++;
    this.code = tree.type;
    try {
      return super.readTree(tree);
    } finally {
      this.depth--;
    }
  }

  override readArray(element: SigNode, byteLength: number): unknown {
    if (byteLength > MAX_ARRAY_BYTES) throw this.fail(`array length ${byteLength} exceeds the maximum ${MAX_ARRAY_BYTES}`, this.pos - 4);
    if (ALIGN_8.has(element.type)) this.align(3); // the padding to the first element, there even when the array is empty
    const end = this.pos + byteLength;
    if (end > this.limit) {
      throw this.fail(`array 'a${dumpSignature([element])}' length ${byteLength} goes beyond the end of the ${this.where()} (${this.limit - this.pos} bytes left)`);
    }
    const outer = { limit: this.limit, array: this.array };
    this.limit = end; // so no element reads past the array
    this.array = element;
    let items: unknown;
    try {
      items = super.readArray(element, byteLength); // 'ay': a view of the buffer (ayBuffer: 'view')
    } finally {
      this.limit = outer.limit;
      this.array = outer.array;
    }
    return element.type === '{' ? new Map(items as [DBusValue, DBusValue][]) : items;
  }

  override readVariant(): unknown {
    this.variantSignature = true;
    return super.readVariant(); // a Variant (variants: 'wrap')
  }

  override readSimpleType(code: string): unknown {
    this.code = code;
    switch (code) {
      case 'b': {
        const n = this.readInt32();
        if (n > 1) throw this.fail(`boolean is ${n} (must be 0 or 1)`, this.pos - 4);
        return n === 1;
      }
      case 'h': {
        const index = this.readInt32();
        if (index >= this.fds.length) {
          throw this.fail(`handle refers to unix fd #${index} but the message carries ${this.fds.length}`, this.pos - 4);
        }
        this.referencedFds.add(index);
        return this.fds[index];
      }
      case 'o': {
        const path = super.readSimpleType(code) as string;
        if (!isObjectPath(path)) throw this.fail(`invalid object path '${path}'`);
        return path;
      }
      case 'g': {
        const single = this.variantSignature;
        this.variantSignature = false;
        const signature = super.readSimpleType(code) as string;
        try {
          checkSignature(signature, single);
        } catch (e) {
          throw this.fail(single ? `variant: ${(e as Error).message}` : (e as Error).message);
        }
        return signature;
      }
      default:
        return super.readSimpleType(code);
    }
  }

  // ---- ours ----

  /** Checks alignment (2^power) and that `size` bytes are there, before dbus-native reads them. */
  private need(size: number, power: number): void {
    if (power) this.align(power);
    if (this.pos + size > this.limit) throw this.fail(`truncated: '${this.code}' needs ${size} bytes, ${this.limit - this.pos} left`);
  }

  private where(): string {
    return this.array ? `array 'a${dumpSignature([this.array])}'` : this.what;
  }

  private fail(why: string, at = this.pos): DBusWireError {
    return new DBusWireError(`${this.where()} at offset ${at}: ${why}`);
  }

  /** Whatever else goes wrong inside dbus-native (it should not) is still a DBusWireError. */
  private guarded<T>(read: () => T): T {
    try {
      return read();
    } catch (e) {
      if (e instanceof DBusWireError) throw e;
      throw this.fail((e as Error).message);
    }
  }
}

/** A short rendering of values for error messages (byte arrays by their length: frames are megabytes). */
function describe(value: unknown, depth = 0): string {
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value);
  if (value instanceof Variant) return `Variant('${value.signature}', ${describe(value.value, depth + 1)})`;
  if (depth > 2 && typeof value === 'object' && value !== null) return '...';
  if (Array.isArray(value)) return `[${value.slice(0, 8).map((v) => describe(v, depth + 1)).join(', ')}${value.length > 8 ? ', ...' : ''}]`;
  if (value instanceof Map) return `Map {${[...value].slice(0, 8).map(([k, v]) => `${describe(k, depth + 1)} => ${describe(v, depth + 1)}`).join(', ')}}`;
  if (typeof value === 'object' && value !== null) {
    return `{${Object.entries(value).slice(0, 8).map(([k, v]) => `${k}: ${describe(v, depth + 1)}`).join(', ')}}`;
  }
  return String(value);
}
