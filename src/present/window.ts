// An xdg_toplevel window whose content is scaled through wp_viewporter: the guest's buffers keep their size,
// the window takes whatever size the compositor configures.
import { EventEmitter } from 'node:events';
import type { Globals } from './globals.js';
import type { WlSurface, XdgSurface, XdgToplevel, WpViewport, WpFractionalScaleV1 } from '../wayland/protocols/index.js';
import { XdgToplevelState, ZxdgToplevelDecorationV1Mode } from '../wayland/protocols/index.js';
import { fitAspect } from '../geometry.js';

export interface WindowOptions {
  title: string;
  /** xdg_toplevel app_id (default "wlscanout"). */
  appId?: string;
  fullscreen?: boolean;
  /** 'fit' keeps the guest's aspect ratio inside the configured size; 'stretch' fills it. */
  scaling?: 'fit' | 'stretch';
}

export interface Size {
  width: number;
  height: number;
}

export class Window extends EventEmitter<{ configured: []; close: [] }> {
  readonly surface: WlSurface;
  private readonly xdgSurface: XdgSurface;
  private readonly toplevel: XdgToplevel;
  private readonly viewport: WpViewport | null;
  private readonly fractionalScale: WpFractionalScaleV1 | null;
  private pendingSize: Size = { width: 0, height: 0 };
  private pendingFullscreen = false;
  /** Size imposed by the compositor (0×0: ours to choose). */
  configuredSize: Size = { width: 0, height: 0 };
  fullscreen = false;
  configured = false;
  /** Preferred scale in 120ths (wp_fractional_scale_v1), else from the outputs the surface is on. */
  preferredScale120 = 120;
  private readonly entered = new Set<number>();
  private readonly scaling: 'fit' | 'stretch';
  /** The buffer size and surface-local size of the content last applied. */
  private shown: { buffer: Size; dest: Size } | null = null;

  constructor(private readonly globals: Globals, options: WindowOptions) {
    super();
    if (!globals.wmBase) throw new Error('the compositor offers no xdg_wm_base: cannot open a window');
    this.scaling = options.scaling ?? 'fit';
    this.surface = globals.compositor.createSurface();
    this.surface.on({
      enter: (output) => { this.entered.add(output.handle); this.updateOutputScale(); },
      leave: (output) => { this.entered.delete(output.handle); this.updateOutputScale(); },
    });
    this.viewport = globals.viewporter?.getViewport(this.surface) ?? null;
    this.fractionalScale = globals.fractionalScaleManager?.getFractionalScale(this.surface) ?? null;
    this.fractionalScale?.on({ preferredScale: (scale) => { this.preferredScale120 = scale; this.emit('configured'); } });
    this.xdgSurface = globals.wmBase.getXdgSurface(this.surface);
    this.toplevel = this.xdgSurface.getToplevel();
    this.toplevel.setTitle(options.title);
    this.toplevel.setAppId(options.appId ?? 'wlscanout');
    if (globals.decorationManager) {
      globals.decorationManager.getToplevelDecoration(this.toplevel).setMode(ZxdgToplevelDecorationV1Mode.server_side);
    }
    if (options.fullscreen) this.toplevel.setFullscreen(null);
    this.toplevel.on({
      configure: (width, height, states) => {
        this.pendingSize = { width, height };
        this.pendingFullscreen = new Uint32Array(states.buffer, states.byteOffset, states.byteLength / 4)
          .includes(XdgToplevelState.fullscreen);
      },
      close: () => this.emit('close'),
    });
    this.xdgSurface.on({
      configure: (serial) => {
        this.configuredSize = this.pendingSize;
        this.fullscreen = this.pendingFullscreen;
        this.xdgSurface.ackConfigure(serial);
        this.configured = true;
        this.emit('configured');
      },
    });
    this.surface.commit(); // initial commit without a buffer asks for the first configure
  }

  setTitle(title: string): void {
    this.toplevel.setTitle(title);
  }

  setFullscreen(on: boolean): void {
    if (on) this.toplevel.setFullscreen(null);
    else this.toplevel.unsetFullscreen();
  }

  /** The surface-local size the content is shown at, for a buffer of `buffer` pixels. */
  destinationFor(buffer: Size): Size {
    const scale = this.preferredScale120 / 120;
    const natural = { width: Math.max(1, Math.round(buffer.width / scale)), height: Math.max(1, Math.round(buffer.height / scale)) };
    const c = this.configuredSize;
    if (c.width <= 0 || c.height <= 0) return natural;
    if (!this.viewport) return natural; // no way to scale: show 1:1 and let the compositor crop or pad
    return this.scaling === 'stretch' ? c : fitAspect(buffer, c);
  }

  /** Maps a surface-local point to buffer pixels of the content last shown (clamped); null before any. */
  toBuffer(x: number, y: number): { x: number; y: number } | null {
    const shown = this.shown;
    if (!shown) return null;
    const clamp = (v: number, max: number): number => Math.min(max - 1, Math.max(0, Math.floor(v)));
    return {
      x: clamp((x * shown.buffer.width) / shown.dest.width, shown.buffer.width),
      y: clamp((y * shown.buffer.height) / shown.dest.height, shown.buffer.height),
    };
  }

  /** Sets viewport destination and window geometry for `buffer`; takes effect at the next commit. */
  applySize(buffer: Size): Size {
    const dest = this.destinationFor(buffer);
    this.shown = { buffer: { ...buffer }, dest };
    if (this.viewport) this.viewport.setDestination(dest.width, dest.height);
    this.xdgSurface.setWindowGeometry(0, 0, dest.width, dest.height);
    return dest;
  }

  destroy(): void {
    if (this.surface.destroyed) return;
    this.fractionalScale?.destroy();
    this.viewport?.destroy();
    this.toplevel.destroy();
    this.xdgSurface.destroy();
    this.surface.destroy();
  }

  private updateOutputScale(): void {
    if (this.fractionalScale) return; // the compositor tells us directly
    let scale = 1;
    for (const handle of this.entered) scale = Math.max(scale, this.globals.outputs.get(handle)?.scale ?? 1);
    if (scale * 120 !== this.preferredScale120) {
      this.preferredScale120 = scale * 120;
      this.emit('configured');
    }
  }
}
