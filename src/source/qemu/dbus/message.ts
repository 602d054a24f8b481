// D-Bus messages: the fixed header, the header fields, the body, and the unix fds that travel with them.
import { DBusWireError } from './errors.js';
import { Reader } from './reader.js';
import { Writer } from './writer.js';
import { MAX_MESSAGE_BYTES, Variant, type DBusValue } from './values.js';

export const MessageType = { methodCall: 1, methodReturn: 2, error: 3, signal: 4 } as const;
export const MessageFlags = { noReplyExpected: 0x1, noAutoStart: 0x2 } as const;

export interface MessageHeader {
  type: number;
  flags: number;
  serial: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  /** The body's signature; '' for no body. */
  signature: string;
}

export interface Message extends MessageHeader {
  body: DBusValue[];
  /** The unix fds that came with the message; 'h' values in the body are these fds. */
  fds: number[];
  /** Indices into fds that the body's 'h' values referenced. */
  referencedFds: ReadonlySet<number>;
}

// Header field code -> [property, signature].
const FIELDS: Record<number, [keyof MessageHeader | 'unixFds', string]> = {
  1: ['path', 'o'], 2: ['interface', 's'], 3: ['member', 's'], 4: ['errorName', 's'], 5: ['replySerial', 'u'],
  6: ['destination', 's'], 7: ['sender', 's'], 8: ['signature', 'g'], 9: ['unixFds', 'u'],
};
const REQUIRED: Record<number, (keyof MessageHeader)[]> = {
  1: ['path', 'member'], 2: ['replySerial'], 3: ['errorName', 'replySerial'], 4: ['path', 'interface', 'member'],
};
const FIXED_HEADER = 16; // endianness, type, flags, version, body length, serial, header fields length

/** Encodes a message; the fds of its 'h' values are returned to be sent with its bytes. */
export function encodeMessage(header: MessageHeader, body: readonly DBusValue[], littleEndian = true): { data: Buffer; fds: number[] } {
  const bodyWriter = new Writer(littleEndian);
  bodyWriter.writeAll(header.signature, body);
  const fields: DBusValue[] = [];
  for (const [code, [key, sig]] of Object.entries(FIELDS)) {
    const value = key === 'unixFds' ? (bodyWriter.fds.length || undefined)
      : key === 'signature' ? (header.signature || undefined) : header[key];
    if (value !== undefined) fields.push([Number(code), new Variant(sig, value)]);
  }
  const w = new Writer(littleEndian);
  w.writeAll('yyyyuua(yv)', [littleEndian ? 0x6c : 0x42, header.type, header.flags, 1, bodyWriter.length, header.serial, fields]);
  w.align(8);
  const data = Buffer.concat([w.bytes(), bodyWriter.bytes()]);
  if (data.length > MAX_MESSAGE_BYTES) throw new DBusWireError(`message is ${data.length} bytes (max ${MAX_MESSAGE_BYTES})`);
  return { data, fds: bodyWriter.fds };
}

/**
 * The total size of the message starting at buf[0], from its first 16 bytes; null until those arrived.
 * Throws when the size or the fixed header is impossible.
 */
export function messageSize(buf: Buffer): number | null {
  if (buf.length < FIXED_HEADER) return null;
  const le = littleEndian(buf);
  if (buf[3] !== 1) throw new DBusWireError(`message has protocol version ${buf[3]} (only 1 exists)`);
  const bodyLength = le ? buf.readUInt32LE(4) : buf.readUInt32BE(4);
  const fieldsLength = le ? buf.readUInt32LE(12) : buf.readUInt32BE(12);
  const size = align8(FIXED_HEADER + fieldsLength) + bodyLength;
  if (size > MAX_MESSAGE_BYTES) {
    throw new DBusWireError(`message claims ${size} bytes (header fields ${fieldsLength}, body ${bodyLength}; max ${MAX_MESSAGE_BYTES})`);
  }
  return size;
}

/**
 * Decodes one complete message (buf holds exactly it). The unix fds it declares are taken from the front of
 * fdQueue (the fds received so far, in order); they are the message's once this returns.
 */
export function decodeMessage(buf: Buffer, fdQueue: number[]): Message {
  const le = littleEndian(buf);
  const size = messageSize(buf);
  if (size === null || size !== buf.length) throw new DBusWireError(`message buffer is ${buf.length} bytes, the message ${size}`);
  const bodyLength = le ? buf.readUInt32LE(4) : buf.readUInt32BE(4);
  const serial = le ? buf.readUInt32LE(8) : buf.readUInt32BE(8);
  if (serial === 0) throw new DBusWireError('message has serial 0');
  const header: MessageHeader & { unixFds?: number } = { type: buf[1], flags: buf[2], serial, signature: '' };
  const end = headerEnd(buf);
  const fieldReader = new Reader(buf, 12, FIXED_HEADER + (le ? buf.readUInt32LE(12) : buf.readUInt32BE(12)), le, [], 'header fields');
  const [fields] = fieldReader.readAll('a(yv)') as [DBusValue[][]];
  for (let i = fieldReader.pos; i < end; i++) {
    if (buf[i] !== 0) throw new DBusWireError(`header padding byte at offset ${i} is ${buf[i]}, not 0`);
  }
  for (const [code, v] of fields as [number, Variant][]) {
    const known = FIELDS[code];
    if (!known) continue; // unknown fields must be ignored
    if (v.signature !== known[1]) {
      throw new DBusWireError(`header field ${known[0]} has type '${v.signature}', must be '${known[1]}'`);
    }
    (header as unknown as Record<string, DBusValue>)[known[0]] = v.value;
  }
  const missing = (REQUIRED[header.type] ?? []).filter((key) => header[key] === undefined);
  if (missing.length) throw new DBusWireError(`message of type ${header.type} lacks header field(s) ${missing.join(', ')}`);
  const declared = header.unixFds ?? 0;
  if (declared > fdQueue.length) throw new DBusWireError(`message declares ${declared} unix fds but ${fdQueue.length} arrived`);
  delete header.unixFds;
  if (bodyLength > 0 && header.signature === '') throw new DBusWireError(`message has a ${bodyLength}-byte body but no signature`);
  const fds = fdQueue.slice(0, declared);
  const bodyReader = new Reader(buf, end, end + bodyLength, le, fds, 'body');
  const body = bodyReader.readAll(header.signature);
  fdQueue.splice(0, declared);
  return { ...header, body, fds, referencedFds: bodyReader.referencedFds };
}

function littleEndian(buf: Buffer): boolean {
  if (buf[0] === 0x6c) return true;
  if (buf[0] === 0x42) return false;
  throw new DBusWireError(`message starts with endianness byte 0x${buf[0].toString(16)} (must be 'l' or 'B')`);
}

function headerEnd(buf: Buffer): number {
  const le = littleEndian(buf);
  return align8(FIXED_HEADER + (le ? buf.readUInt32LE(12) : buf.readUInt32BE(12)));
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
