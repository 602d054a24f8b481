import { createRequire } from 'node:module';
import type { NativeAddon } from './addon-types.js';

// src/native/addon.ts and dist/native/addon.js both sit two levels below the package root.
const require = createRequire(import.meta.url);
export const addon = require('../../native/build/Release/wlscanout.node') as NativeAddon;
