/** Why a lent buffer was refused or a capture failed; `code` is the reason a consumer can act on. */
export class CaptureError extends Error {
  constructor(readonly code: CaptureErrorCode, message: string) {
    super(message);
    this.name = 'CaptureError';
  }
}

export type CaptureErrorCode =
  /** The buffer's size or format does not match the frame's (buffer constraints changed: re-lend). */
  | 'buffer-constraints'
  | 'bad-size'
  | 'bad-stride'
  | 'too-small'
  | 'unsupported-format'
  | 'unsupported-modifier'
  | 'bad-fd'
  | 'read-only'
  /** The lender shrank its memfd after lending it. */
  | 'truncated'
  | 'not-dmabuf'
  | 'import-failed'
  | 'fence-failed'
  | 'taken-back'
  | 'stopped';
