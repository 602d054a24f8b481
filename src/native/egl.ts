// Typed access to native/src/egl.cc: EGL probing without a window system (surfaceless platform and EGL devices).
import { addon } from './addon.js';
import type { EglFeature, EglProbeResult } from './addon-types.js';

export type {
  EglDeviceInfo, EglDisplayFailure, EglDisplayInfo, EglDisplayProbe, EglDmaBufFormat, EglDmaBufModifier, EglFeature,
  EglProbeResult,
} from './addon-types.js';

/** The extensions reported individually in each display's `features`. */
export const EGL_FEATURES: readonly EglFeature[] = [
  'EGL_EXT_image_dma_buf_import',
  'EGL_EXT_image_dma_buf_import_modifiers',
  'EGL_MESA_image_dma_buf_export',
  'EGL_ANDROID_native_fence_sync',
  'EGL_KHR_fence_sync',
  'EGL_KHR_wait_sync',
];

/**
 * Probes EGL: loads libEGL.so.1 on first use (dlopen; the addon itself does not need it), then initializes, describes
 * and terminates the surfaceless display (EGL_PLATFORM_SURFACELESS_MESA) and, with EGL_EXT_device_enumeration, a
 * display on each EGL device. Nothing missing is thrown: a missing libEGL is `{library: null, error}`, a display
 * that fails is `{platform, error}`. Synchronous; the first call loads the drivers (a few hundred ms).
 * Environment variables Mesa reads (LIBGL_ALWAYS_SOFTWARE, EGL_PLATFORM, ...) apply as set in process.env.
 * Without EGL_KHR_display_reference, terminating a display also ends another in-process user's initialization of
 * the same display, so probe before using EGL elsewhere in the process.
 */
export function eglProbe(): EglProbeResult {
  return addon.eglProbe();
}
