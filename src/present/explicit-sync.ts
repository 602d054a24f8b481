// zwp_linux_explicit_synchronization_v1 for one surface: the guest's acquire fence goes with the commit (the
// compositor waits, not us) and a per-commit release object says when the compositor is done with the buffer.
import type { WlSurface, ZwpLinuxExplicitSynchronizationV1, ZwpLinuxSurfaceSynchronizationV1 } from '../wayland/protocols/index.js';
import { close } from '../native/fds.js';

export class SurfaceSync {
  private readonly sync: ZwpLinuxSurfaceSynchronizationV1;

  constructor(manager: ZwpLinuxExplicitSynchronizationV1, surface: WlSurface) {
    this.sync = manager.getSynchronization(surface);
  }

  /** For the next commit, which must attach a dmabuf buffer. Takes ownership of fence (closed once sent). */
  setAcquireFence(fence: number): void {
    try {
      this.sync.setAcquireFence(fence);
    } finally {
      close(fence); // libwayland sent a dup of it
    }
  }

  /** Asks for the release of the buffer attached by the next commit; onRelease gets a fence fd (owned by the
   *  callee) or null when the buffer is released at once. */
  requestRelease(onRelease: (fence: number | null) => void): void {
    this.sync.getRelease().on({
      fencedRelease: (fence) => onRelease(fence),
      immediateRelease: () => onRelease(null),
    });
  }

  destroy(): void {
    if (!this.sync.destroyed) this.sync.destroy();
  }
}
