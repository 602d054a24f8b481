// Command-line parsing helpers: every bad value is a UsageError naming the option and the value.
import { formatByName, FORMATS, type PixelFormat } from '../formats.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseSize(option: string, value: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(value);
  if (!m) throw new UsageError(`${option} '${value}' is not WIDTHxHEIGHT (e.g. 1280x800)`);
  const width = Number(m[1]);
  const height = Number(m[2]);
  if (width < 64 || height < 16 || width > 16384 || height > 16384) {
    throw new UsageError(`${option} ${value} is out of range (64x16 .. 16384x16384)`);
  }
  return { width, height };
}

export function parseCount(option: string, value: string | undefined, fallback: number, min = 1, max = 1e9): number {
  if (value === undefined) return fallback;
  if (value === 'inf' || value === 'infinite') return Infinity;
  const n = Number(value);
  // Number('') and Number(' ') are 0: a blank value is not a number (`--console ''` was console 0)
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`${option} '${value}' must be a whole number in ${min}..${max}`);
  return n;
}

export function parseFormat(option: string, value: string): PixelFormat {
  const format = formatByName(value);
  if (!format) throw new UsageError(`${option} '${value}' is not one of ${FORMATS.map((f) => f.name).join(', ')}`);
  return format;
}
