// The one table that maps pixel formats between DRM fourcc, wl_shm and pixman, and knows their memory layout.

export interface PixelFormat {
  name: string; // DRM name without the DRM_FORMAT_ prefix
  fourcc: number; // DRM_FORMAT_* (little-endian fourcc code)
  shm: number; // wl_shm.format (0 and 1 are special-cased by the protocol, the rest equal the fourcc)
  pixman: number; // pixman_format_code_t
  bytesPerPixel: number;
  hasAlpha: boolean;
  /** Packs 8-bit channels into the pixel's integer value (as stored little-endian in memory). */
  pack(r: number, g: number, b: number, a: number): number;
  /** Unpacks to [r, g, b, a] with 8-bit channels; alpha is 255 for formats without it. */
  unpack(value: number): [number, number, number, number];
}

export function fourcc(code: string): number {
  return (code.charCodeAt(0) | (code.charCodeAt(1) << 8) | (code.charCodeAt(2) << 16) | (code.charCodeAt(3) << 24)) >>> 0;
}

const pixmanFormat = (bpp: number, type: number, a: number, r: number, g: number, b: number): number =>
  ((bpp << 24) | (type << 16) | (a << 12) | (r << 8) | (g << 4) | b) >>> 0;
const PIXMAN_TYPE_ARGB = 2;
const PIXMAN_TYPE_ABGR = 3;

// 5/6-bit channels expand by bit replication, as pixman does, so a round trip through 8 bits is exact.
const expand5 = (v: number): number => (v << 3) | (v >> 2);
const expand6 = (v: number): number => (v << 2) | (v >> 4);

export const FORMATS: readonly PixelFormat[] = [
  {
    name: 'XRGB8888', fourcc: fourcc('XR24'), shm: 1, pixman: pixmanFormat(32, PIXMAN_TYPE_ARGB, 0, 8, 8, 8),
    bytesPerPixel: 4, hasAlpha: false,
    pack: (r, g, b) => ((0xff << 24) | (r << 16) | (g << 8) | b) >>> 0,
    unpack: (v) => [(v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff, 255],
  },
  {
    name: 'ARGB8888', fourcc: fourcc('AR24'), shm: 0, pixman: pixmanFormat(32, PIXMAN_TYPE_ARGB, 8, 8, 8, 8),
    bytesPerPixel: 4, hasAlpha: true,
    pack: (r, g, b, a) => ((a << 24) | (r << 16) | (g << 8) | b) >>> 0,
    unpack: (v) => [(v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff, v >>> 24],
  },
  {
    name: 'XBGR8888', fourcc: fourcc('XB24'), shm: fourcc('XB24'), pixman: pixmanFormat(32, PIXMAN_TYPE_ABGR, 0, 8, 8, 8),
    bytesPerPixel: 4, hasAlpha: false,
    pack: (r, g, b) => ((0xff << 24) | (b << 16) | (g << 8) | r) >>> 0,
    unpack: (v) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, 255],
  },
  {
    name: 'ABGR8888', fourcc: fourcc('AB24'), shm: fourcc('AB24'), pixman: pixmanFormat(32, PIXMAN_TYPE_ABGR, 8, 8, 8, 8),
    bytesPerPixel: 4, hasAlpha: true,
    pack: (r, g, b, a) => ((a << 24) | (b << 16) | (g << 8) | r) >>> 0,
    unpack: (v) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24],
  },
  {
    name: 'RGB565', fourcc: fourcc('RG16'), shm: fourcc('RG16'), pixman: pixmanFormat(16, PIXMAN_TYPE_ARGB, 0, 5, 6, 5),
    bytesPerPixel: 2, hasAlpha: false,
    pack: (r, g, b) => ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3),
    unpack: (v) => [expand5((v >> 11) & 0x1f), expand6((v >> 5) & 0x3f), expand5(v & 0x1f), 255],
  },
];

export function formatByFourcc(code: number): PixelFormat | undefined {
  return FORMATS.find((f) => f.fourcc === code);
}

export function formatByName(name: string): PixelFormat | undefined {
  const upper = name.toUpperCase();
  return FORMATS.find((f) => f.name === upper);
}

export function formatByShm(shm: number): PixelFormat | undefined {
  return FORMATS.find((f) => f.shm === shm);
}

/** Human-readable fourcc ("XR24" or 0x…) for error messages about formats we do not know. */
export function fourccToString(code: number): string {
  const chars = [0, 8, 16, 24].map((s) => (code >>> s) & 0xff);
  return chars.every((c) => c >= 0x20 && c < 0x7f)
    ? `'${String.fromCharCode(...chars)}' (0x${code.toString(16).padStart(8, '0')})`
    : `0x${code.toString(16).padStart(8, '0')}`;
}
