import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './addon-types.js';

// Found from the package root, so src/ (tests), dist/ and dist-examples/ all load the same build.
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('wlscanout: package.json not found above the native addon loader');
    dir = parent;
  }
  return dir;
}

const require = createRequire(import.meta.url);
export const addon = require(join(packageRoot(), 'native/build/Release/wlscanout.node')) as NativeAddon;
