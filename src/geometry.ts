export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export function intersects(a: Rect, b: Rect): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/** Clips `r` to [0, width) × [0, height); null when nothing is left. */
export function clipRect(r: Rect, width: number, height: number): Rect | null {
  const x0 = Math.max(0, r.x);
  const y0 = Math.max(0, r.y);
  const x1 = Math.min(width, r.x + r.width);
  const y1 = Math.min(height, r.y + r.height);
  return x1 > x0 && y1 > y0 ? { x: x0, y: y0, width: x1 - x0, height: y1 - y0 } : null;
}

/** Largest size with the aspect ratio of `inner` that fits in `outer`, rounded to whole units. */
export function fitAspect(inner: { width: number; height: number }, outer: { width: number; height: number }) {
  const scale = Math.min(outer.width / inner.width, outer.height / inner.height);
  return {
    width: Math.max(1, Math.min(outer.width, Math.round(inner.width * scale))),
    height: Math.max(1, Math.min(outer.height, Math.round(inner.height * scale))),
  };
}
