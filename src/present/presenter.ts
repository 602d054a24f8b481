// The wl_shm presenter: guest memfd frames go to an xdg_toplevel window without a copy.
// Pacing: one commit per frame callback; a frame that arrives while one is waiting replaces it (its damage is
// kept) and is released at once. A frame's memory goes back to the source when the compositor releases the
// wl_buffer that showed it.
import { EventEmitter } from 'node:events';
import { Connection, type ConnectionError } from '../wayland/connection.js';
import { bindGlobals, type Globals } from './globals.js';
import { Window, type WindowOptions, type Size } from './window.js';
import { ShmBufferCache } from './shm-buffers.js';
import { requestFeedback, type PresentedFrame } from './feedback.js';
import { installShortcuts } from './shortcuts.js';
import { importMemfdFrame, type ShmImport } from '../import/shm.js';
import { ImportError } from '../import/errors.js';
import type { MemfdFrame } from '../source/frame.js';
import { clipRect, type Rect } from '../geometry.js';
import { log } from '../log.js';

export interface PresenterOptions extends WindowOptions {
  /** Wayland display name or socket path; default $WAYLAND_DISPLAY. */
  display?: string;
}

export interface PresenterStats {
  framesReceived: number;
  framesCommitted: number;
  /** Replaced while waiting for the frame callback: never shown. */
  framesSkipped: number;
  framesPresented: number;
  framesDiscarded: number;
  /** Feedback requested and not yet answered; capped, since some compositors (sway 1.7 headless) never answer. */
  feedbackOutstanding: number;
  lastPresented: PresentedFrame | null;
}

// wp_presentation_feedback has no destroy request: a compositor that never answers would make them pile up.
const MAX_OUTSTANDING_FEEDBACK = 16;

type PresenterEvents = {
  /** The compositor is ready for a new frame (frame callback): a good moment for the guest to draw. */
  'frame-done': [time: number];
  presented: [PresentedFrame];
  configured: [Size];
  close: [];
  error: [Error];
};

export class ShmPresenter extends EventEmitter<PresenterEvents> {
  readonly stats: PresenterStats = {
    framesReceived: 0, framesCommitted: 0, framesSkipped: 0, framesPresented: 0, framesDiscarded: 0, feedbackOutstanding: 0, lastPresented: null,
  };
  readonly buffers: ShmBufferCache;
  private pending: { frame: MemfdFrame; imp: ShmImport } | null = null;
  private pendingDamage: Rect[] | null = [];
  private shown: { width: number; height: number } | null = null;
  private waitingForFrameCallback = false;
  private closed = false;
  private readonly unsealedWarned = new Set<string>();
  private readonly removeShortcuts: () => void;

  private constructor(readonly connection: Connection, readonly globals: Globals, readonly window: Window) {
    super();
    this.buffers = new ShmBufferCache(connection, globals.shm);
    connection.on('error', (e) => this.fail(e));
    window.on('configured', () => this.onConfigured());
    window.on('close', () => this.emit('close'));
    this.removeShortcuts = installShortcuts(globals, window);
  }

  static async open(options: PresenterOptions): Promise<ShmPresenter> {
    const connection = new Connection(options.display);
    try {
      const globals = await bindGlobals(connection);
      log.debug({ globals: globals.all.map((g) => `${g.interface}@${g.version}`) }, 'compositor globals');
      const window = new Window(globals, options);
      return new ShmPresenter(connection, globals, window);
    } catch (e) {
      connection.close();
      throw e;
    }
  }

  /** Shows `frame` as soon as the compositor is ready. Throws ImportError for a frame that cannot be shown;
   *  such a frame is released before the throw. */
  present(frame: MemfdFrame): void {
    if (this.closed) {
      frame.release();
      throw new Error('presenter is closed');
    }
    this.stats.framesReceived++;
    let imp: ShmImport;
    try {
      imp = importMemfdFrame(frame);
      if (!this.globals.shmFormats.has(imp.format.shm)) {
        throw new ImportError('unsupported-format', `the compositor does not accept wl_shm format ${imp.format.name}`);
      }
    } catch (e) {
      log.debug({ seq: frame.seq, fd: frame.fd, err: (e as Error).message }, 'frame refused');
      frame.release();
      throw e;
    }
    if (!imp.sealedAgainstShrink && !this.unsealedWarned.has(imp.memoryKey)) {
      this.unsealedWarned.add(imp.memoryKey);
      log.warn({ fd: frame.fd, memfd: imp.memoryKey }, 'memfd is not sealed against shrinking: if the source truncates it, the compositor may fail');
    }
    if (this.pending) {
      this.stats.framesSkipped++;
      this.pending.frame.release();
      this.pendingDamage = mergeDamage(this.pendingDamage, frame.damage);
    } else {
      this.pendingDamage = frame.damage;
    }
    this.pending = { frame, imp };
    this.maybeCommit();
  }

  setFullscreen(on: boolean): void {
    this.window.setFullscreen(on);
  }

  /** Releases every frame, destroys the window and disconnects. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending?.frame.release();
    this.pending = null;
    const alive = !this.connection.failure && !this.connection.isClosed;
    this.buffers.destroy();
    if (alive) {
      this.removeShortcuts();
      this.window.destroy();
    }
    this.connection.close();
  }

  private maybeCommit(): void {
    if (!this.pending || this.waitingForFrameCallback || !this.window.configured || this.closed) return;
    const { frame, imp } = this.pending;
    this.pending = null;
    const buffer = this.buffers.bufferFor(frame, imp);
    const surface = this.window.surface;
    const size = { width: frame.width, height: frame.height };
    const sizeChanged = !this.shown || this.shown.width !== size.width || this.shown.height !== size.height;
    if (sizeChanged) this.window.applySize(size);
    this.shown = size;
    surface.attach(buffer.wlBuffer, 0, 0);
    this.buffers.hold(buffer, frame);
    const damage = sizeChanged || this.pendingDamage === null ? [{ x: 0, y: 0, ...size }] : this.pendingDamage;
    for (const r of damage) {
      const c = clipRect(r, size.width, size.height);
      if (c) surface.damageBuffer(c.x, c.y, c.width, c.height);
    }
    this.pendingDamage = [];
    surface.frame().on({ done: (time) => this.onFrameDone(time) });
    this.waitingForFrameCallback = true;
    if (this.globals.presentation && this.stats.feedbackOutstanding < MAX_OUTSTANDING_FEEDBACK) {
      this.stats.feedbackOutstanding++;
      requestFeedback(this.globals.presentation, this.globals.presentationClock ?? 1, surface, frame.seq, frame.flushedAt,
        (p) => {
          this.stats.feedbackOutstanding--;
          this.stats.framesPresented++;
          this.stats.lastPresented = p;
          this.emit('presented', p);
        },
        () => { this.stats.feedbackOutstanding--; this.stats.framesDiscarded++; });
    }
    surface.commit();
    this.stats.framesCommitted++;
  }

  private onFrameDone(time: number): void {
    this.waitingForFrameCallback = false;
    this.emit('frame-done', time);
    this.maybeCommit();
  }

  private onConfigured(): void {
    log.debug({ size: this.window.configuredSize, fullscreen: this.window.fullscreen, scale120: this.window.preferredScale120 },
      'window configured');
    if (this.shown) {
      const dest = this.window.applySize(this.shown);
      this.window.surface.commit(); // new viewport destination, same buffer: no guest reallocation
      this.emit('configured', dest);
    } else {
      this.emit('configured', this.window.configuredSize);
    }
    this.maybeCommit();
  }

  private fail(error: ConnectionError): void {
    if (this.closed) return;
    const wrapped = new Error(`lost the compositor connection: ${error.message}`, { cause: error });
    this.close();
    this.emit('error', wrapped);
  }
}

function mergeDamage(a: Rect[] | null, b: Rect[] | null): Rect[] | null {
  return a === null || b === null ? null : [...a, ...b];
}
