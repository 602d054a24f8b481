/// <reference path="./dbus-native.d.ts" />
// D-Bus messages: the fixed header, the header fields, the body, and the unix fds that travel beside them.
// dbus-native lays out outgoing messages (lib/message.js, little endian); incoming ones are read by wire.ts's
// checked reader over the one buffer our socket layer received the message into. The framing (messageSize) and the
// header's meaning (required fields, field types, fd count) are checked here.
import dbusConstants from 'dbus-native/lib/constants.js';
import dbusMessage from 'dbus-native/lib/message.js';
import { DBusWireError } from './errors.js';
import { MAX_MESSAGE_BYTES, type DBusValue, type Variant } from './values.js';
import { WireReader, marshalling, toWire } from './wire.js';

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

const REQUIRED: Record<number, (keyof MessageHeader)[]> = {
  1: ['path', 'member'], 2: ['replySerial'], 3: ['errorName', 'replySerial'], 4: ['path', 'interface', 'member'],
};
const FIXED_HEADER = 16; // endianness, type, flags, version, body length, serial, header fields length
const { le: LITTLE, be: BIG } = dbusConstants.endianness;

/** Encodes a message (by dbus-native, little endian); the fds of its 'h' values are returned to be sent with its bytes. */
export function encodeMessage(header: MessageHeader, body: readonly DBusValue[]): { data: Buffer; fds: number[] } {
  const wire = toWire(header.signature, body);
  const data = marshalling(header.signature, body, () => dbusMessage.marshall({
    ...header, signature: header.signature || undefined, body: wire.values, fds: wire.fds,
  }));
  if (data.length > MAX_MESSAGE_BYTES) throw new DBusWireError(`message is ${data.length} bytes (max ${MAX_MESSAGE_BYTES})`);
  return { data, fds: wire.fds };
}

/**
 * The total size of the message starting at buf[0], from its first 16 bytes; null until those arrived.
 * Throws when the size or the fixed header is impossible.
 */
export function messageSize(buf: Buffer): number | null {
  if (buf.length < FIXED_HEADER) return null;
  const le = littleEndian(buf);
  if (buf[3] !== dbusConstants.protocolVersion) throw new DBusWireError(`message has protocol version ${buf[3]} (only 1 exists)`);
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
 * fdQueue (the fds received so far, in order); they are the message's once this returns. Byte arrays in the body
 * are views of buf.
 */
export function decodeMessage(buf: Buffer, fdQueue: number[]): Message {
  const size = messageSize(buf);
  if (size === null || size !== buf.length) throw new DBusWireError(`message buffer is ${buf.length} bytes, the message ${size}`);
  const le = littleEndian(buf);
  const bodyStart = align8(FIXED_HEADER + (le ? buf.readUInt32LE(12) : buf.readUInt32BE(12)));
  const head = new WireReader(buf, { littleEndian: le, end: bodyStart, what: 'header' });
  const [, type, flags, , bodyLength, serial, fields] = head.readValues('yyyyuua(yv)') as
    [number, number, number, number, number, number, [number, Variant][]];
  head.alignTo8();
  if (serial === 0) throw new DBusWireError('message has serial 0');
  const header: MessageHeader & { unixFds?: number } = { type, flags, serial, signature: '' };
  for (const [code, v] of fields) {
    const key = dbusConstants.headerTypeName[code];
    if (!key) continue; // unknown fields must be ignored
    const expected = dbusConstants.fieldSignature[key];
    if (v.signature !== expected) throw new DBusWireError(`header field ${key} has type '${v.signature}', must be '${expected}'`);
    (header as unknown as Record<string, DBusValue>)[key] = v.value;
  }
  const missing = (REQUIRED[header.type] ?? []).filter((key) => header[key] === undefined);
  if (missing.length) throw new DBusWireError(`message of type ${header.type} lacks header field(s) ${missing.join(', ')}`);
  const declared = header.unixFds ?? 0;
  if (declared > fdQueue.length) throw new DBusWireError(`message declares ${declared} unix fds but ${fdQueue.length} arrived`);
  delete header.unixFds;
  if (bodyLength > 0 && header.signature === '') throw new DBusWireError(`message has a ${bodyLength}-byte body but no signature`);
  const fds = fdQueue.slice(0, declared);
  const reader = new WireReader(buf, { littleEndian: le, start: bodyStart, end: bodyStart + bodyLength, fds, what: 'body' });
  const body = reader.readAll(header.signature);
  fdQueue.splice(0, declared);
  return { ...header, body, fds, referencedFds: reader.referencedFds };
}

function littleEndian(buf: Buffer): boolean {
  if (buf[0] === LITTLE) return true;
  if (buf[0] === BIG) return false;
  throw new DBusWireError(`message starts with endianness byte 0x${buf[0].toString(16)} (must be 'l' or 'B')`);
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
