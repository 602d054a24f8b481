// Types for the modules of dbus-native (plain CommonJS; its index.d.ts covers only the package's front door) that
// wire.ts and message.ts use: the value reader, the marshaller, the message marshaller and the signature parser.

declare module 'dbus-native/lib/signature.js' {
  namespace parseSignature {
    /** One complete type: its type code and, for containers, the types inside ('a': one, '(': fields, '{': key and value). */
    interface SigNode {
      readonly type: string;
      readonly child: readonly SigNode[];
    }
  }
  /** Parses (memoised, deep-frozen) a signature into its complete types. Lenient: see wire.ts's checks. */
  function parseSignature(signature: string): readonly parseSignature.SigNode[];
  export = parseSignature;
}

declare module 'dbus-native/lib/dbus-buffer.js' {
  import parseSignature from 'dbus-native/lib/signature.js';
  type SigNode = parseSignature.SigNode;

  interface DBusBufferOptions {
    /** true: 'ay' as a copied Buffer; 'view': as a view of the message buffer. */
    ayBuffer?: boolean | 'view';
    /** 'x' and 't' as bigint. */
    returnBigInt?: boolean;
    /** 'wrap': a 'v' comes back as a Variant (signature, value). */
    variants?: 'tree' | 'plain' | 'wrap';
    plainValues?: boolean;
  }

  /** Reads D-Bus values from a buffer, either byte order; alignment counted from `startPos`. */
  class DBusBuffer {
    constructor(buffer: Buffer, startPos?: number, options?: DBusBufferOptions, endianness?: number);
    buffer: Buffer;
    startPos: number;
    pos: number;
    le: boolean;
    /** Aligns to 2^power bytes. */
    align(power: number): void;
    readInt8(): number;
    readSInt16(): number;
    readInt16(): number;
    readSInt32(): number;
    readInt32(): number;
    readDouble(): number;
    readBigInt(unsigned: boolean): bigint;
    readString(length: number): string;
    read(signature: string): unknown[];
    readTree(tree: SigNode): unknown;
    readVariant(): unknown;
    readStruct(struct: readonly SigNode[]): unknown[];
    readArray(elementType: SigNode, byteLength: number): unknown;
    readSimpleType(code: string): unknown;
  }
  export = DBusBuffer;
}

declare module 'dbus-native/lib/marshall.js' {
  /** Values of `signature`, little endian; alignment counted from `offset` (the position in the message). */
  function marshall(signature: string, data: unknown[], offset?: number): Buffer;
  export = marshall;
}

declare module 'dbus-native/lib/message.js' {
  /** Our MessageHeader, with dbus-native's defaults for flags and signature. */
  type DBusNativeMessage = Omit<import('./message.js').MessageHeader, 'flags' | 'signature'> & {
    flags?: number;
    signature?: string;
    body?: unknown[];
    /** Only counted: the UNIX_FDS header field. */
    fds?: readonly unknown[];
  };
  /** The whole message, little endian: fixed header, header fields, padding, body. */
  function marshall(message: DBusNativeMessage): Buffer;
  const message: { marshall: typeof marshall };
  export = message;
}

declare module 'dbus-native/lib/values.js' {
  import parseSignature from 'dbus-native/lib/signature.js';
  class Variant {
    constructor(signature: string, value: unknown);
    readonly signature: string;
    readonly value: unknown;
  }
  const values: {
    Variant: typeof Variant;
    dumpSignature(nodes: readonly parseSignature.SigNode[]): string;
    isPlainObject(value: unknown): boolean;
  };
  export = values;
}

declare module 'dbus-native/lib/names.js' {
  const names: { isValidObjectPath(path: unknown): boolean };
  export = names;
}

declare module 'dbus-native/lib/constants.js' {
  const constants: {
    headerTypeName: readonly (string | null)[];
    fieldSignature: Readonly<Record<string, string>>;
    endianness: { le: number; be: number };
    protocolVersion: number;
    maxMessageSize: number;
    maxArraySize: number;
  };
  export = constants;
}
