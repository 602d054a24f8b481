// Shared by the native-layer suites: every test must leave the fd table as it found it.
import { afterEach, beforeEach, expect } from 'vitest';
import { ftruncate, listOpenFds, memfdCreate } from '../src/native/fds.js';

/** Registers hooks that fail a test which leaves an fd open (or closes one it did not open). */
export function expectNoFdLeaksPerTest(): void {
  let baseline: number[];
  beforeEach(() => {
    baseline = listOpenFds();
  });
  afterEach(() => {
    expect(listOpenFds()).toEqual(baseline);
  });
}

/** The error fn throws (it must throw). */
export function errorOf(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
  throw new Error('expected a throw');
}

/** A memfd of `size` bytes (unsealed), owned by the caller. */
export function memfdOfSize(size: number): number {
  const fd = memfdCreate('test', true);
  ftruncate(fd, size);
  return fd;
}
