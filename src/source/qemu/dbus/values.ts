// How D-Bus values look in JavaScript.
//   y n q i u d h -> number (h: the fd itself; the message carries it)    x t -> bigint (numbers accepted when sending)
//   b -> boolean   s o g -> string   ay -> Buffer (Uint8Array accepted)    v -> Variant
//   other arrays -> arrays   a{..} -> Map (plain objects accepted for string keys)   structs -> arrays of fields

export class Variant {
  constructor(readonly signature: string, readonly value: DBusValue) {}
}

export type DBusValue =
  | number | bigint | boolean | string | Uint8Array | Variant | DBusValue[] | Map<DBusValue, DBusValue>
  | { readonly [key: string]: DBusValue };

export function variant(signature: string, value: DBusValue): Variant {
  return new Variant(signature, value);
}

export const MAX_ARRAY_BYTES = 1 << 26;
export const MAX_MESSAGE_BYTES = 1 << 27;
/** Containers (arrays, structs, dict entries, variants) nested in one value. */
export const MAX_NESTING = 64;

const OBJECT_PATH = /^\/$|^(\/[A-Za-z0-9_]+)+$/;

export function isObjectPath(s: string): boolean {
  return OBJECT_PATH.test(s);
}
