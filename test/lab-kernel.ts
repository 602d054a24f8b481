// The lab kernel's bzImage, from lab/build-kernel.sh (cached outside the clone; built by `make test` first).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../lab/build-kernel.sh', import.meta.url));

/** $WLSCANOUT_LAB_KERNEL, else the cached build for this tree's lab/kernel.config and patches. */
export function labKernel(): string {
  const fromEnv = process.env.WLSCANOUT_LAB_KERNEL;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`WLSCANOUT_LAB_KERNEL=${fromEnv} does not exist`);
    return fromEnv;
  }
  try {
    return execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20 * 60_000 }).trim();
  } catch (e) {
    throw new Error(`THE LAB KERNEL IS MISSING and could not be built (lab/build-kernel.sh): ${(e as Error).message}`);
  }
}
