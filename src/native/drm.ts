// Typed access to native/src/drm.cc, and the DRM / dma-buf device nodes a doctor looks at: /dev/dri/*,
// /dev/dma_heap/*, /dev/udmabuf. A missing or unusable device is reported as data, not thrown; only a directory
// that exists but cannot be listed throws.
import fs from 'node:fs';
import path from 'node:path';
import { addon } from './addon.js';
import type { DrmVersion } from './addon-types.js';

export type { DrmVersion } from './addon-types.js';

/** DRM_IOCTL_VERSION on an open DRM fd. Throws a NativeErrnoError (syscall "ioctl"; ENOTTY or EINVAL for an fd
 *  that is not a DRM device). */
export function drmVersion(fd: number): DrmVersion {
  return addon.drmVersion(fd);
}

/** Why something could not be done, in plain words, with the system error's syscall and code. */
export interface ProbeError {
  syscall: string; // "open", "ioctl", ...
  code: string; // "EACCES", "ENOTTY", ...
  message: string;
}

export interface DrmNode {
  path: string; // "/dev/dri/card0"
  name: string; // "card0"
  kind: 'primary' | 'render'; // card* / renderD*
  /** The driver's name from DRM_IOCTL_VERSION (e.g. "vgem", "virtio_gpu"), when the node opened and answered. */
  driver?: string;
  version?: DrmVersion;
  error?: ProbeError;
}

const NODE_NAME = /^(card|renderD)(\d+)$/;

/**
 * The DRM nodes in `dir` (/dev/dri): card* (primary) and renderD* (render), cards first, each by number. Each is
 * opened read-write (node:fs opens close-on-exec), asked DRM_IOCTL_VERSION and closed again; the driver or the
 * open/ioctl error is reported. [] when the directory does not exist.
 * Opening a primary node while no process is DRM master briefly makes this process master (as any opener does).
 */
export function listDrmNodes(dir = '/dev/dri'): DrmNode[] {
  const entries = readdirOrEmpty(dir);
  const nodes = entries
    .map((name) => ({ name, match: NODE_NAME.exec(name) }))
    .filter((e): e is { name: string; match: RegExpExecArray } => e.match !== null)
    .sort((a, b) => {
      if (a.match[1] !== b.match[1]) return a.match[1] === 'card' ? -1 : 1;
      return Number(a.match[2]) - Number(b.match[2]);
    });
  return nodes.map(({ name, match }) => {
    const node: DrmNode = { path: path.join(dir, name), name, kind: match[1] === 'card' ? 'primary' : 'render' };
    let fd: number;
    try {
      fd = fs.openSync(node.path, fs.constants.O_RDWR);
    } catch (error) {
      node.error = probeError(error, 'open', node.path);
      return node;
    }
    try {
      node.version = drmVersion(fd);
      node.driver = node.version.name;
    } catch (error) {
      node.error = probeError(error, 'ioctl', node.path);
    } finally {
      fs.closeSync(fd);
    }
    return node;
  });
}

export interface DmaHeap {
  name: string; // "system", "linux,cma", ...
  path: string; // "/dev/dma_heap/system"
  /** null when this process may open it read-only (what DMA_HEAP_IOCTL_ALLOC needs), otherwise why not. */
  error: ProbeError | null;
}

/** The dma-buf heaps in `dir` (/dev/dma_heap), by name; [] when the directory does not exist. */
export function listDmaHeaps(dir = '/dev/dma_heap'): DmaHeap[] {
  return readdirOrEmpty(dir)
    .sort()
    .map((name) => {
      const heapPath = path.join(dir, name);
      let error: ProbeError | null = null;
      try {
        fs.accessSync(heapPath, fs.constants.R_OK);
      } catch (e) {
        error = probeError(e, 'access', heapPath);
      }
      return { name, path: heapPath, error };
    });
}

export interface UdmabufStatus {
  available: boolean;
  /** When not available: why, in plain words, naming the device path. */
  reason?: string;
}

/** Whether this process can open `devicePath` (/dev/udmabuf) read-write, which is what creating udmabufs
 *  (dma-bufs over memfd pages) needs. */
export function udmabufAvailable(devicePath = '/dev/udmabuf'): UdmabufStatus {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(devicePath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const reason = fs.existsSync('/sys/module/udmabuf')
        ? `${devicePath} does not exist although the udmabuf module is loaded (no device node was created: is devtmpfs mounted on /dev?)`
        : `${devicePath} does not exist: the udmabuf kernel module is not loaded (modprobe udmabuf) or this kernel lacks it (CONFIG_UDMABUF)`;
      return { available: false, reason };
    }
    return { available: false, reason: probeError(error, 'stat', devicePath).message };
  }
  if (!stat.isCharacterDevice()) return { available: false, reason: `${devicePath} is not a character device` };
  const driver = charDeviceName(stat.rdev);
  if (driver !== null && driver !== 'udmabuf') {
    return { available: false, reason: `${devicePath} is the character device "${driver}", not udmabuf` };
  }
  try {
    fs.closeSync(fs.openSync(devicePath, fs.constants.O_RDWR));
  } catch (error) {
    return { available: false, reason: probeError(error, 'open', devicePath).message };
  }
  return { available: true };
}

// The kernel's name for a character device (e.g. "udmabuf", "null"), from /sys/dev/char/MAJOR:MINOR; null when sysfs
// does not say.
function charDeviceName(rdev: number): string | null {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  try {
    return path.basename(fs.readlinkSync(`/sys/dev/char/${major}:${minor}`));
  } catch {
    return null;
  }
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

const PLAIN: Record<string, string> = {
  ENOENT: 'does not exist',
  EACCES: 'permission denied (check the owner, group and mode of the device node)',
  EPERM: 'operation not permitted',
  ENXIO: 'no device behind this node (is its driver loaded?)',
  ENODEV: 'no device behind this node (is its driver loaded?)',
  ENOTTY: 'not a DRM device (it does not answer DRM_IOCTL_VERSION)',
  EINVAL: 'not a DRM device (it refuses DRM_IOCTL_VERSION)',
  EBUSY: 'device busy',
};

function probeError(error: unknown, fallbackSyscall: string, devicePath: string): ProbeError {
  const e = error as NodeJS.ErrnoException;
  const code = e.code ?? 'UNKNOWN';
  const syscall = e.syscall ?? fallbackSyscall;
  const words = PLAIN[code] ?? e.message;
  return { syscall, code, message: `${syscall} ${devicePath}: ${words} (${code})` };
}
