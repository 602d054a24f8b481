// D-Bus type signatures, parsed into type trees (cached: the same few signatures come back all the time).
import { DBusWireError } from './errors.js';

export type BasicCode = 'y' | 'b' | 'n' | 'q' | 'i' | 'u' | 'x' | 't' | 'd' | 's' | 'o' | 'g' | 'h';

export type SigType = { sig: string; align: number } & (
  | { kind: BasicCode }
  | { kind: 'v' }
  | { kind: 'a'; elem: SigType }
  | { kind: '('; fields: SigType[] }
  | { kind: '{'; key: SigType; value: SigType }
);

const ALIGN: Record<string, number> = {
  y: 1, b: 4, n: 2, q: 2, i: 4, u: 4, x: 8, t: 8, d: 8, s: 4, o: 4, g: 1, h: 4, v: 1, a: 4, '(': 8, '{': 8,
};
const BASIC = new Set('ybnqiuxtdsogh');
const MAX_SIGNATURE = 255;
const MAX_DEPTH = 32; // for arrays, and separately for structs and dict entries

const cache = new Map<string, SigType[]>();

/** Parses a signature into its complete types; throws a DBusWireError naming the fault. */
export function parseSignature(sig: string): SigType[] {
  const cached = cache.get(sig);
  if (cached) return cached;
  if (sig.length > MAX_SIGNATURE) throw new DBusWireError(`signature is ${sig.length} characters long (max ${MAX_SIGNATURE})`);
  const types: SigType[] = [];
  const parser = { sig, pos: 0 };
  while (parser.pos < sig.length) types.push(parseOne(parser, 0, 0));
  if (cache.size > 512) cache.clear();
  cache.set(sig, types);
  return types;
}

/** Parses a signature that must hold exactly one complete type (a variant's). */
export function parseSingleType(sig: string): SigType {
  const types = parseSignature(sig);
  if (types.length !== 1) throw new DBusWireError(`signature '${sig}' must be a single complete type (has ${types.length})`);
  return types[0];
}

function parseOne(p: { sig: string; pos: number }, arrays: number, structs: number): SigType {
  const start = p.pos;
  const c = p.sig[p.pos++];
  const fail = (why: string): never => {
    throw new DBusWireError(`bad signature '${p.sig}' at ${start}: ${why}`);
  };
  if (c === undefined) fail('ends inside a container');
  if (BASIC.has(c) || c === 'v') return { kind: c as BasicCode | 'v', sig: c, align: ALIGN[c] };
  if (c === 'a') {
    if (arrays + 1 > MAX_DEPTH) fail(`arrays nested deeper than ${MAX_DEPTH}`);
    let elem: SigType;
    if (p.sig[p.pos] === '{') {
      p.pos++;
      if (structs + 1 > MAX_DEPTH) fail(`dict entries and structs nested deeper than ${MAX_DEPTH}`);
      const key = parseOne(p, arrays + 1, structs + 1);
      if (!BASIC.has(key.kind)) fail(`dict entry key must be a basic type, not '${key.sig}'`);
      const value = parseOne(p, arrays + 1, structs + 1);
      if (p.sig[p.pos] !== '}') fail('dict entry must have exactly one key and one value, then "}"');
      p.pos++;
      elem = { kind: '{', key, value, sig: `{${key.sig}${value.sig}}`, align: 8 };
    } else {
      elem = parseOne(p, arrays + 1, structs);
    }
    return { kind: 'a', elem, sig: 'a' + elem.sig, align: 4 };
  }
  if (c === '(') {
    if (structs + 1 > MAX_DEPTH) fail(`structs nested deeper than ${MAX_DEPTH}`);
    const fields: SigType[] = [];
    while (p.sig[p.pos] !== ')') {
      if (p.pos >= p.sig.length) fail('struct is not closed');
      fields.push(parseOne(p, arrays, structs + 1));
    }
    p.pos++;
    if (fields.length === 0) fail('empty struct');
    return { kind: '(', fields, sig: p.sig.slice(start, p.pos), align: 8 };
  }
  if (c === '{') fail('dict entry outside an array');
  return fail(`unknown type code '${c}'`);
}
