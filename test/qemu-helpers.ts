// Shared by the suites (and benchmarks) that run a real QEMU: booting the KMS guest, waiting for QMP, comparing a
// capture with a known picture.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RgbaImage } from '../src/capture/png.js';
import { QmpClient } from '../src/source/qemu/qmp.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once QEMU accepts QMP connections on `path` (the socket file appears a moment before it listens). */
export async function waitForQmp(path: string, timeoutMs = 10_000, running: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const qmp = await QmpClient.connect(path).catch((e: Error) => e);
    if (qmp instanceof QmpClient) return qmp.close();
    if (!running()) throw new Error(`QEMU exited before its QMP socket ${path} answered`);
    if (Date.now() > deadline) throw new Error(`QEMU's QMP socket ${path} does not answer: ${qmp.message}`);
    await sleep(50);
  }
}

/** Pixels of `image` whose RGB differs from `expected` (0x00RRGGBB per pixel, same size). */
export function rgbMismatches(image: RgbaImage, expected: Uint32Array): number {
  let mismatches = 0;
  for (let i = 0; i < expected.length; i++) {
    const [r, g, b] = image.data.subarray(i * 4, i * 4 + 3);
    if (((r << 16) | (g << 8) | b) !== expected[i]) mismatches++;
  }
  return mismatches;
}

/** lab/guest/build/kms-guest: the KMS test-pattern guest (built by `make build`). Found from the project root, as
 *  this module also runs compiled from dist-bench/. */
export const KMS_GUEST = join(projectRoot(), 'lab/guest/build/kms-guest');

function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

/** QEMU arguments that boot `kernel` (the lab kernel) with the KMS guest as init over a read-only 9p root;
 *  `params` are its kernel command-line settings (wlscanout.frames=…, wlscanout.full=1, …). */
export function kmsGuestBootArgs(kernel: string, params: string): string[] {
  return ['-kernel', kernel,
    '-fsdev', 'local,id=root,path=/,security_model=none,readonly=on,multidevs=remap',
    '-device', 'virtio-9p-pci,fsdev=root,mount_tag=root',
    '-append', 'console=ttyS0 root=root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000 ro ' +
      `init=${KMS_GUEST} panic=-1 quiet ${params}`];
}
