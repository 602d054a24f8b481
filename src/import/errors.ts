/** A frame or buffer description that cannot be imported; `code` says which check failed. */
export class ImportError extends Error {
  constructor(readonly code: ImportErrorCode, message: string) {
    super(message);
    this.name = 'ImportError';
  }
}

export type ImportErrorCode =
  | 'bad-size'
  | 'bad-stride'
  | 'bad-offset'
  | 'out-of-bounds'
  | 'unknown-format'
  | 'unsupported-format'
  | 'unsupported-modifier'
  | 'not-memfd'
  | 'unsealed-memfd'
  | 'unaligned'
  | 'overlapping'
  | 'bad-plane'
  | 'bad-fd'
  | 'no-udmabuf'
  | 'udmabuf-failed';
