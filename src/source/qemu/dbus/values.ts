/// <reference path="./dbus-native.d.ts" />
// How D-Bus values look in JavaScript.
//   y n q i u d h -> number (h: the fd itself; the message carries it)    x t -> bigint (numbers accepted when sending)
//   b -> boolean   s o g -> string   ay -> Buffer (Uint8Array accepted)    v -> Variant
//   other arrays -> arrays   a{..} -> Map (plain objects accepted for string keys)   structs -> arrays of fields
import dbusNames from 'dbus-native/lib/names.js';
import dbusValues from 'dbus-native/lib/values.js';

/** A value with its D-Bus type. dbus-native's own class: its reader returns these and its marshaller writes them. */
export interface Variant {
  readonly signature: string;
  readonly value: DBusValue;
}
export const Variant = dbusValues.Variant as new (signature: string, value: DBusValue) => Variant;

export type DBusValue =
  | number | bigint | boolean | string | Uint8Array | Variant | DBusValue[] | Map<DBusValue, DBusValue>
  | { readonly [key: string]: DBusValue };

export function variant(signature: string, value: DBusValue): Variant {
  return new Variant(signature, value);
}

/** The D-Bus specification's limits (dbus-native's constants.maxArraySize and maxMessageSize are the same). */
export const MAX_ARRAY_BYTES = 1 << 26;
export const MAX_MESSAGE_BYTES = 1 << 27;
/** Containers (arrays, structs, dict entries, variants) nested in one value. */
export const MAX_NESTING = 64;

export function isObjectPath(s: string): boolean {
  return dbusNames.isValidObjectPath(s);
}
