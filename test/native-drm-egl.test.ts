import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errorOf, expectNoFdLeaksPerTest } from './native-helpers.js';
import { drmVersion, listDmaHeaps, listDrmNodes, udmabufAvailable } from '../src/native/drm.js';
import { EGL_FEATURES, eglProbe, type EglDisplayInfo } from '../src/native/egl.js';
import { close, listOpenFds, memfdCreate, socketpair } from '../src/native/fds.js';

const addonPath = fileURLToPath(new URL('../native/build/Release/wlscanout.node', import.meta.url));

expectNoFdLeaksPerTest();

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'wlscanout-drm-'));
}

// Runs eglProbe() in a fresh node: whether libEGL was mapped before and after, and the probe's summary.
const CHILD_PROBE = `
  import { createRequire } from 'node:module';
  import fs from 'node:fs';
  const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n');
  const egl = () => maps().find((l) => /\\/libEGL\\.so/.test(l))?.split(/\\s+/).pop() ?? null;
  const a = createRequire(import.meta.url)(process.env.ADDON);
  const before = egl() !== null;
  const r = a.eglProbe();
  const fd = a.memfdCreate('still-works', true);
  a.close(fd);
  console.log(JSON.stringify({ before, after: egl() !== null, libEgl: egl(), library: r.library, error: r.error,
    displays: r.displays.map((d) => d.platform), clientExtensions: r.clientExtensions, memfdWorks: fd >= 0 }));
`;

function probeInChild(): { before: boolean; after: boolean; libEgl: string | null; library: string | null } {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD_PROBE], {
    env: { ...process.env, ADDON: addonPath }, encoding: 'utf8', timeout: 20_000,
  });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout.trim().split('\n').pop()!);
}

describe('drmVersion', () => {
  it('throws ENOTTY/EINVAL from ioctl for fds that are not DRM devices', () => {
    const devNull = fs.openSync('/dev/null', 'r+');
    const [a, b] = socketpair();
    const memfd = memfdCreate('not-drm');
    try {
      for (const fd of [devNull, a, memfd]) {
        const error = errorOf(() => drmVersion(fd));
        expect(['ENOTTY', 'EINVAL']).toContain(error.code);
        expect(error.syscall).toBe('ioctl');
        expect(error.errno).toBe(error.code === 'ENOTTY' ? -25 : -22);
        expect(error.message).toMatch(/^ioctl failed: (ENOTTY|EINVAL)/);
      }
    } finally {
      fs.closeSync(devNull);
      close(a);
      close(b);
      close(memfd);
    }
  });

  it('throws EBADF for a closed fd and a TypeError/RangeError for a bad argument', () => {
    const fd = memfdCreate('closed');
    close(fd);
    const error = errorOf(() => drmVersion(fd));
    expect(error.code).toBe('EBADF');
    expect(error.syscall).toBe('ioctl');
    expect(() => drmVersion('3' as unknown as number)).toThrow(TypeError);
    expect(() => drmVersion(-1)).toThrow(RangeError);
    expect(() => drmVersion(1.5)).toThrow(RangeError);
  });
});

describe('listDrmNodes', () => {
  it('matches the real /dev/dri', () => {
    const nodes = listDrmNodes();
    if (!fs.existsSync('/dev/dri')) {
      expect(nodes).toEqual([]);
      return;
    }
    const expected = fs.readdirSync('/dev/dri').filter((n) => /^(card|renderD)\d+$/.test(n));
    expect(nodes.map((n) => n.name).sort()).toEqual(expected.sort());
    for (const node of nodes) expect(node.driver !== undefined || node.error !== undefined).toBe(true);
  });

  it('lists card*/renderD* in order and reports each open or ioctl error', () => {
    const dir = tempDir();
    try {
      for (const name of ['card10', 'card1', 'renderD128', 'card0', 'controlD64', 'cardX', 'version']) {
        fs.writeFileSync(path.join(dir, name), '');
      }
      fs.mkdirSync(path.join(dir, 'by-path'));
      fs.symlinkSync(path.join(dir, 'missing'), path.join(dir, 'card2'));
      const nodes = listDrmNodes(dir);
      expect(nodes.map((n) => [n.name, n.kind])).toEqual([
        ['card0', 'primary'], ['card1', 'primary'], ['card2', 'primary'], ['card10', 'primary'],
        ['renderD128', 'render'],
      ]);
      for (const node of nodes) {
        expect(node.path).toBe(path.join(dir, node.name));
        expect(node.driver).toBeUndefined();
        expect(node.version).toBeUndefined();
      }
      const card2 = nodes.find((n) => n.name === 'card2')!;
      expect(card2.error).toMatchObject({ syscall: 'open', code: 'ENOENT' });
      expect(card2.error!.message).toContain(path.join(dir, 'card2'));
      for (const node of nodes.filter((n) => n.name !== 'card2')) {
        expect(node.error).toMatchObject({ syscall: 'ioctl', code: 'ENOTTY' });
        expect(node.error!.message).toContain('not a DRM device');
      }
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('listDmaHeaps', () => {
  it('matches the real /dev/dma_heap', () => {
    const heaps = listDmaHeaps();
    if (!fs.existsSync('/dev/dma_heap')) expect(heaps).toEqual([]);
    else expect(heaps.map((h) => h.name)).toEqual(fs.readdirSync('/dev/dma_heap').sort());
  });

  it('lists a directory by name', () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(path.join(dir, 'system'), '');
      fs.writeFileSync(path.join(dir, 'linux,cma'), '');
      expect(listDmaHeaps(dir)).toEqual([
        { name: 'linux,cma', path: path.join(dir, 'linux,cma'), error: null },
        { name: 'system', path: path.join(dir, 'system'), error: null },
      ]);
      expect(listDmaHeaps(path.join(dir, 'absent'))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('udmabufAvailable', () => {
  it('matches the real /dev/udmabuf', () => {
    const status = udmabufAvailable();
    if (!fs.existsSync('/dev/udmabuf')) {
      expect(status.available).toBe(false);
      expect(status.reason).toMatch(/^\/dev\/udmabuf does not exist/);
    } else {
      let openable = true;
      try {
        fs.closeSync(fs.openSync('/dev/udmabuf', 'r+'));
      } catch {
        openable = false;
      }
      expect(status.available).toBe(openable);
    }
    if (!status.available) expect(status.reason).toContain('/dev/udmabuf');
  });

  it('refuses a regular file and a character device that is not udmabuf', () => {
    const dir = tempDir();
    try {
      const file = path.join(dir, 'udmabuf');
      fs.writeFileSync(file, '');
      expect(udmabufAvailable(file)).toEqual({ available: false, reason: `${file} is not a character device` });
      expect(udmabufAvailable('/dev/null')).toEqual({
        available: false, reason: '/dev/null is the character device "null", not udmabuf',
      });
      const missing = udmabufAvailable(path.join(dir, 'absent'));
      expect(missing.available).toBe(false);
      expect(missing.reason).toContain(`${path.join(dir, 'absent')} does not exist`);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('eglProbe', () => {
  it('probes the surfaceless platform and reports features exactly as its extension list says', () => {
    const result = eglProbe();
    expect(result.library).toBe('libEGL.so.1');
    expect(result.error).toBeUndefined();
    expect(result.clientExtensions).toContain('EGL_EXT_platform_base');
    expect(result.clientExtensions).toContain('EGL_MESA_platform_surfaceless');
    const surfaceless = result.displays[0];
    expect(surfaceless.platform).toBe('surfaceless');
    expect(surfaceless.error).toBeUndefined();
    const display = surfaceless as EglDisplayInfo;
    expect(display.vendor).toMatch(/\S/);
    expect(display.version).toMatch(/^1\.\d/);
    expect(display.version!.startsWith(`${display.eglMajor}.${display.eglMinor}`)).toBe(true);
    expect(display.clientApis).toMatch(/OpenGL/);
    expect(display.extensions.length).toBeGreaterThan(0);
    expect(new Set(display.extensions).size).toBe(display.extensions.length);
    expect(Object.keys(display.features).sort()).toEqual([...EGL_FEATURES].sort());
    for (const name of EGL_FEATURES) expect(display.features[name], name).toBe(display.extensions.includes(name));
    // Whole-name matching: the _modifiers extension must not make plain import true or vice versa.
    expect(display.extensions.some((e) => e.startsWith('EGL_EXT_image_dma_buf_import'))).toBe(
      display.features.EGL_EXT_image_dma_buf_import || display.features.EGL_EXT_image_dma_buf_import_modifiers,
    );
  });

  it('lists dma-buf formats and BigInt modifiers exactly when import_modifiers is there', () => {
    for (const entry of eglProbe().displays) {
      if (entry.error !== undefined) continue;
      if (!entry.features.EGL_EXT_image_dma_buf_import_modifiers) {
        expect(entry.dmabufFormats).toBeUndefined();
        continue;
      }
      expect(entry.dmabufFormatsError).toBeUndefined();
      expect(entry.dmabufFormats!.length).toBeGreaterThan(0);
      for (const format of entry.dmabufFormats!) {
        const chars = String.fromCharCode(...[0, 8, 16, 24].map((s) => (format.fourcc >>> s) & 0xff));
        expect(format.name).toBe(chars);
        for (const m of format.modifiers) {
          expect(typeof m.modifier).toBe('bigint');
          expect(typeof m.externalOnly).toBe('boolean');
        }
      }
    }
  });

  it('reports each EGL device with its index and DRM node names (null when it has none)', () => {
    const result = eglProbe();
    const devices = result.displays.slice(1);
    if (!result.clientExtensions.includes('EGL_EXT_device_enumeration')) expect(devices).toEqual([]);
    devices.forEach((entry, i) => {
      expect(entry.platform).toBe('device');
      expect(entry.deviceIndex).toBe(i);
      expect(Array.isArray(entry.device!.extensions)).toBe(true);
      if (!entry.device!.extensions.includes('EGL_EXT_device_drm')) expect(entry.device!.drmDeviceFile).toBeNull();
      for (const file of [entry.device!.drmDeviceFile, entry.device!.drmRenderNodeFile]) {
        if (file !== null) expect(file).toMatch(/^\/dev\/dri\//);
      }
      if (entry.error === undefined) {
        for (const name of EGL_FEATURES) expect(entry.features[name]).toBe(entry.extensions.includes(name));
      }
    });
  });

  it('leaks no fds over repeated probes', () => {
    eglProbe(); // the first call loads libEGL and the driver
    const before = listOpenFds();
    for (let i = 0; i < 5; i++) eglProbe();
    expect(listOpenFds()).toEqual(before);
  });

  it('loads libEGL only when probing', () => {
    const { before, after, library } = probeInChild();
    expect({ before, after, library }).toEqual({ before: false, after: true, library: 'libEGL.so.1' });
  });

  // A private mount namespace hides libEGL from one child process only (needs root and unshare(1)).
  const canUnshare = spawnSync('unshare', ['-m', 'true']).status === 0;
  it.skipIf(!canUnshare)('reports a missing libEGL as data, and the rest of the addon still works', () => {
    const libEgl = fs.realpathSync(probeInChild().libEgl!);
    const child = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind /dev/null "$LIBEGL" && exec "$NODE" "$@"', 'sh',
      '--input-type=module', '-e', CHILD_PROBE], {
      env: { ...process.env, ADDON: addonPath, LIBEGL: libEgl, NODE: process.execPath }, encoding: 'utf8',
      timeout: 20_000,
    });
    expect(child.status, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout.trim().split('\n').pop()!);
    expect(out.library).toBeNull();
    expect(out.error).toMatch(/^libEGL (not found|could not be loaded): .*libEGL\.so\.1/);
    expect(out.displays).toEqual([]);
    expect(out.clientExtensions).toEqual([]);
    expect(out.after).toBe(false);
    expect(out.memfdWorks).toBe(true);
  });
});
