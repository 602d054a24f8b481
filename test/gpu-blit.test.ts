// GpuBlitter on the host tier: these machines have no DRM at all (no /dev/dri), so all that can be checked here
// is that every way of failing to open says exactly why and leaks nothing. The blits themselves are proven in the
// lab VM (lab/tests/gpu-blit.lab.test.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorOf, expectNoFdLeaksPerTest } from './native-helpers.js';
import { drmNodeCandidates, GpuBlitter } from '../src/native/gpu-blit.js';

expectNoFdLeaksPerTest();

describe('GpuBlitter.open', () => {
  it.skipIf(fs.existsSync('/dev/dri'))('on a machine without /dev/dri, throws "no DRM render or card node in /dev/dri"', () => {
    expect(drmNodeCandidates()).toEqual([]);
    const error = errorOf(() => GpuBlitter.open());
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe('GpuBlitter.open: no DRM render or card node in /dev/dri (/dev/dri does not exist)');
    expect(errorOf(() => GpuBlitter.open({})).message).toBe(error.message);
  });

  it('names the device and the reason when the given one cannot be used', () => {
    expect(errorOf(() => GpuBlitter.open({ device: '/nonexistent/card0' })).message)
      .toBe('GpuBlitter on /nonexistent/card0: cannot open it: No such file or directory');
    expect(errorOf(() => GpuBlitter.open({ device: '/dev/null' })).message)
      .toBe('GpuBlitter on /dev/null: not a DRM device (DRM_IOCTL_VERSION failed: Inappropriate ioctl for device)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-gpu-'));
    try {
      const file = path.join(dir, 'renderD128');
      fs.writeFileSync(file, 'not a device');
      expect(errorOf(() => GpuBlitter.open({ device: file })).message)
        .toBe(`GpuBlitter on ${file}: not a DRM device (DRM_IOCTL_VERSION failed: Inappropriate ioctl for device)`);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
    const typeError = errorOf(() => GpuBlitter.open({ device: 3 as unknown as string }));
    expect(typeError).toBeInstanceOf(TypeError);
    expect(typeError.message).toBe('device must be a string (got 3)');
  });
});

describe('drmNodeCandidates', () => {
  it('lists renderD* before card*, each by number, and nothing else', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-dri-'));
    try {
      for (const name of ['card10', 'card1', 'renderD129', 'renderD128', 'controlD64', 'card0', 'cardX', 'by-path']) {
        fs.writeFileSync(path.join(dir, name), '');
      }
      expect(drmNodeCandidates(dir)).toEqual(
        ['renderD128', 'renderD129', 'card0', 'card1', 'card10'].map((n) => path.join(dir, n)));
      expect(drmNodeCandidates(path.join(dir, 'absent'))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});
