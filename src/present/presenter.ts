// The presenter: guest frames go to an xdg_toplevel window without a copy — blob resources as linux-dmabuf
// buffers (through udmabuf), memfd frames (and blobs the compositor cannot take as dmabufs) as wl_shm buffers.
// Sync: a frame's acquire fence is handed to the compositor (explicit sync) or waited on here, off the event
// loop, with a deadline; a frame whose fence never signals is dropped and released, the last good one stays.
// Pacing: one commit per frame callback; a frame that arrives while one is waiting replaces it (its damage is
// kept) and is released at once. A frame goes back to the source when the compositor releases its buffer.
import { EventEmitter } from 'node:events';
import { Connection, type ConnectionError } from '../wayland/connection.js';
import { bindGlobals, type Globals } from './globals.js';
import { Window, type WindowOptions, type Size } from './window.js';
import { ShmBufferCache } from './shm-buffers.js';
import { DmabufBufferCache, type DmabufBuffer } from './dmabuf-buffers.js';
import { SurfaceSync } from './explicit-sync.js';
import { probeExplicitSync, probeDmabuf, type ExplicitSyncProbe } from './explicit-sync-probe.js';
import { udmabufAvailable } from '../native/drm.js';
import { requestFeedback, type PresentedFrame } from './feedback.js';
import { WindowInput } from './window-input.js';
import { importMemfdFrame, type ShmImport } from '../import/shm.js';
import { ImportError } from '../import/errors.js';
import { isBlobFrame, type BlobFrame, type MemfdFrame, type ScanoutFrame } from '../source/frame.js';
import type { BlobResource } from '../source/blob-resource.js';
import { waitFence, type FenceWait } from '../sync/fence.js';
import { close as closeFd } from '../native/fds.js';
import { fourccToString } from '../formats.js';
import { clipRect, type Rect } from '../geometry.js';
import { log } from '../log.js';

export interface PresenterOptions extends WindowOptions {
  /** Wayland display name or socket path; default $WAYLAND_DISPLAY. */
  display?: string;
  /** Blob frames as linux-dmabuf buffers where possible (default); false: always wl_shm. */
  dmabuf?: boolean;
  /** 'auto' (default): the compositor waits on acquire fences when it offers explicit sync; 'client': always here. */
  fenceWait?: 'auto' | 'client';
  /** Longest wait for a guest's acquire fence before its frame is dropped (default 1000 ms). */
  fenceTimeoutMs?: number;
}

/** Which buffer path a frame took and why (for logs, `doctor` and tests). */
export interface PathChoice {
  path: 'dmabuf' | 'shm';
  reason: string;
}

type Prepared =
  | { kind: 'shm'; frame: MemfdFrame; imp: ShmImport; seq: number }
  | { kind: 'dmabuf'; frame: BlobFrame; buffer: DmabufBuffer; acquireFence: number | null; seq: number };

export interface PresenterStats {
  framesReceived: number;
  framesCommitted: number;
  /** Replaced while waiting for the frame callback: never shown. */
  framesSkipped: number;
  framesPresented: number;
  framesDiscarded: number;
  /** Acquire fences waited on here / handed to the compositor / that never signalled in time (frame dropped). */
  fencesWaited: number;
  fencesPassed: number;
  fencesTimedOut: number;
  /** Frames refused after presentation began (the compositor failed a dmabuf and no fallback existed, or the
   *  source closed a frame's memfd before releasing the frame). */
  framesFailed: number;
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
  /** A frame went to the compositor in a commit (a blob frame on the wl_shm path as its memfd view, same seq). */
  committed: [ScanoutFrame];
  configured: [Size];
  close: [];
  error: [Error];
};

export class Presenter extends EventEmitter<PresenterEvents> {
  readonly stats: PresenterStats = {
    framesReceived: 0, framesCommitted: 0, framesSkipped: 0, framesPresented: 0, framesDiscarded: 0, feedbackOutstanding: 0, lastPresented: null,
    fencesWaited: 0, fencesPassed: 0, fencesTimedOut: 0, framesFailed: 0,
  };
  readonly buffers: ShmBufferCache;
  readonly dmabufBuffers: DmabufBufferCache | null;
  /** The path each blob resource takes, decided at its first frame. */
  readonly paths = new Map<BlobResource, PathChoice>();
  private pending: Prepared | null = null;
  private readonly fenceWaits = new Set<{ wait: FenceWait; frame: BlobFrame; fence: number }>();
  private surfaceSync: SurfaceSync | null = null;
  private pendingDamage: Rect[] | null = [];
  private shown: { width: number; height: number } | null = null;
  private waitingForFrameCallback = false;
  private closed = false;
  private readonly unsealedWarned = new Set<string>();
  /** Keyboard and pointer on the window, for a source to forward to its guest (F11 toggles fullscreen). */
  readonly input: WindowInput;

  private constructor(readonly connection: Connection, readonly globals: Globals, readonly window: Window,
    private readonly options: PresenterOptions, readonly explicitSync: ExplicitSyncProbe) {
    super();
    this.buffers = new ShmBufferCache(connection, globals.shm);
    this.dmabufBuffers = globals.linuxDmabuf && options.dmabuf !== false ? new DmabufBufferCache(connection, globals.linuxDmabuf, globals.dmabufFormats) : null;
    this.dmabufBuffers?.on('ready', () => this.maybeCommit());
    this.dmabufBuffers?.on('failed', (buffer, error) => this.onDmabufFailed(buffer.resource, error));
    // v4: the surface's own feedback (e.g. a scanout tranche once fullscreen) replaces the default one.
    if (this.dmabufBuffers && globals.linuxDmabuf!.version >= 4) {
      globals.dmabufFormats.follow(globals.linuxDmabuf!.getSurfaceFeedback(window.surface));
    }
    if (globals.explicitSync && explicitSync.usable && this.dmabufBuffers) {
      this.surfaceSync = new SurfaceSync(globals.explicitSync, window.surface);
    }
    connection.on('error', (e) => this.fail(e));
    window.on('configured', () => this.onConfigured());
    window.on('close', () => this.emit('close'));
    this.input = new WindowInput(globals, window);
  }

  static async open(options: PresenterOptions): Promise<Presenter> {
    const connection = new Connection(options.display);
    try {
      const globals = await bindGlobals(connection);
      log.debug({ globals: globals.all.map((g) => `${g.interface}@${g.version}`) }, 'compositor globals');
      const explicitSync = await checkExplicitSync(globals, options);
      log.info({ explicitSync }, 'explicit sync');
      const window = new Window(globals, options);
      return new Presenter(connection, globals, window, options, explicitSync);
    } catch (e) {
      connection.close();
      throw e;
    }
  }

  /** Shows `frame` as soon as the compositor is ready (and its fence has signalled). Throws ImportError for a
   *  frame that cannot be shown; such a frame is released (and its fence closed) before the throw. */
  present(frame: ScanoutFrame): void {
    if (this.closed) {
      discard(frame);
      throw new Error('presenter is closed');
    }
    this.stats.framesReceived++;
    let prepared: Prepared;
    try {
      prepared = isBlobFrame(frame) ? this.prepareBlob(frame) : this.prepareShm(frame, frame.seq);
    } catch (e) {
      log.debug({ seq: frame.seq, err: (e as Error).message }, 'frame refused');
      discard(frame);
      throw e;
    }
    if (isBlobFrame(frame) && frame.acquireFence !== null && !(prepared.kind === 'dmabuf' && this.surfaceSync)) {
      this.waitThenEnqueue(frame, frame.acquireFence, prepared);
    } else {
      this.enqueue(prepared);
    }
  }

  /** The path blob frames of `resource` take; decided once per resource. */
  pathFor(resource: BlobResource): PathChoice {
    let choice = this.paths.get(resource);
    if (!choice) {
      choice = this.choosePath(resource);
      this.paths.set(resource, choice);
      resource.once('destroyed', () => this.paths.delete(resource));
      log.info({ resource: resource.id, ...choice }, 'blob resource path');
    }
    return choice;
  }

  private choosePath(resource: BlobResource): PathChoice {
    const { fourcc, name } = resource.format;
    if (!this.dmabufBuffers) {
      return { path: 'shm', reason: this.options.dmabuf === false ? 'dmabuf disabled by option' : 'the compositor offers no zwp_linux_dmabuf_v1' };
    }
    if (!this.globals.dmabufFormats.accepts(fourcc, resource.modifier)) {
      return { path: 'shm', reason: `the compositor does not list ${name} with modifier 0x${resource.modifier.toString(16)} for linux-dmabuf` };
    }
    const scanout = this.globals.dmabufFormats.scanoutCapable(fourcc, resource.modifier) ? ' (in a scanout tranche)' : '';
    return { path: 'dmabuf', reason: `the compositor takes ${fourccToString(fourcc)} modifier 0x${resource.modifier.toString(16)} as a dmabuf${scanout}` };
  }

  private prepareBlob(frame: BlobFrame): Prepared {
    const resource = frame.resource;
    if (!resource.alive) throw new ImportError('bad-fd', `${resource} was already destroyed`);
    let choice = this.pathFor(resource);
    if (choice.path === 'dmabuf') {
      try {
        const buffer = this.dmabufBuffers!.bufferFor(resource);
        if (buffer.state !== 'failed') return { kind: 'dmabuf', frame, buffer, acquireFence: frame.acquireFence, seq: frame.seq };
        choice = { path: 'shm', reason: 'the compositor refused its dmabuf' };
      } catch (e) {
        if (!(e instanceof ImportError) || resource.dmabufs) throw e;
        choice = { path: 'shm', reason: e.message };
      }
      this.paths.set(resource, choice);
      log.warn({ resource: resource.id, reason: choice.reason }, 'dmabuf import failed: falling back to wl_shm');
    }
    return this.prepareShm(shmView(frame), frame.seq);
  }

  private prepareShm(frame: MemfdFrame, seq: number): Prepared {
    const imp = importMemfdFrame(frame);
    if (!this.globals.shmFormats.has(imp.format.shm)) {
      throw new ImportError('unsupported-format', `the compositor does not accept wl_shm format ${imp.format.name}`);
    }
    if (!imp.sealedAgainstShrink && !this.unsealedWarned.has(imp.memoryKey)) {
      this.unsealedWarned.add(imp.memoryKey);
      log.warn({ fd: frame.fd, memfd: imp.memoryKey }, 'memfd is not sealed against shrinking: if the source truncates it, the compositor may fail');
    }
    return { kind: 'shm', frame, imp, seq };
  }

  private waitThenEnqueue(frame: BlobFrame, fence: number, prepared: Prepared): void {
    this.stats.fencesWaited++;
    if (prepared.kind === 'dmabuf') prepared.acquireFence = null; // waited here, not handed on
    const entry = { wait: waitFence(fence, this.options.fenceTimeoutMs ?? 1000), frame, fence };
    this.fenceWaits.add(entry);
    void entry.wait.result.then((outcome) => {
      this.fenceWaits.delete(entry);
      closeFd(fence);
      if (outcome === 'cancelled') return;
      if (outcome === 'signalled') {
        this.enqueue(prepared);
        return;
      }
      this.stats.fencesTimedOut++;
      // Later frames' damage builds on this one: what it changed must still be redrawn with the next commit.
      this.pendingDamage = mergeDamage(this.pendingDamage, frame.damage);
      log.warn({ resource: frame.resource.id, seq: frame.seq, outcome, timeoutMs: this.options.fenceTimeoutMs ?? 1000 },
        'guest fence did not signal: frame dropped, the last good frame stays on screen');
      frame.release();
    });
  }

  private enqueue(prepared: Prepared): void {
    if (this.closed) {
      discardPrepared(prepared);
      return;
    }
    if (this.pending && this.pending.seq > prepared.seq) { // an older frame whose fence signalled late
      this.stats.framesSkipped++;
      this.pendingDamage = mergeDamage(this.pendingDamage, prepared.frame.damage); // the newer one builds on it
      discardPrepared(prepared);
      return;
    }
    if (this.pending) {
      this.stats.framesSkipped++;
      discardPrepared(this.pending);
    }
    // Damage accumulates until a commit: from frames replaced while waiting and from frames that were dropped.
    this.pendingDamage = mergeDamage(this.pendingDamage, prepared.frame.damage);
    this.pending = prepared;
    this.maybeCommit();
  }

  setFullscreen(on: boolean): void {
    this.window.setFullscreen(on);
  }

  /** Releases every frame, destroys the window and disconnects. */
  /** The next commit damages the whole surface (the content shown before it came from elsewhere). */
  invalidate(): void {
    this.pendingDamage = null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pending) discardPrepared(this.pending);
    this.pending = null;
    for (const entry of this.fenceWaits) {
      entry.wait.cancel();
      closeFd(entry.fence);
      entry.frame.release();
    }
    this.fenceWaits.clear();
    const alive = !this.connection.failure && !this.connection.isClosed;
    this.buffers.destroy();
    this.dmabufBuffers?.destroy();
    if (alive) {
      this.surfaceSync?.destroy();
      this.input.destroy();
      this.window.destroy();
    }
    this.connection.close();
  }

  private maybeCommit(): void {
    if (!this.pending || this.waitingForFrameCallback || !this.window.configured || this.closed) return;
    if (this.pending.kind === 'dmabuf' && this.pending.buffer.state !== 'ready') {
      if (this.pending.buffer.state === 'creating') return; // 'ready' or 'failed' comes back here
      this.retryAsShm(this.pending);
      if (!this.pending) return;
    }
    const prepared = this.pending;
    this.pending = null;
    const { frame } = prepared;
    let shmBuffer;
    if (prepared.kind === 'shm') {
      try {
        shmBuffer = this.buffers.bufferFor(prepared.frame, prepared.imp);
      } catch (e) {
        // The source broke its promise to keep the memfd open until release: drop the frame, keep the window.
        this.stats.framesFailed++;
        log.error({ seq: frame.seq, fd: prepared.frame.fd, err: (e as Error).message }, 'frame memory unusable at commit: dropped');
        discardPrepared(prepared);
        return;
      }
    }
    const surface = this.window.surface;
    const size = { width: prepared.kind === 'shm' ? prepared.frame.width : prepared.frame.resource.width,
      height: prepared.kind === 'shm' ? prepared.frame.height : prepared.frame.resource.height };
    const sizeChanged = !this.shown || this.shown.width !== size.width || this.shown.height !== size.height;
    if (sizeChanged) this.window.applySize(size);
    this.shown = size;
    if (prepared.kind === 'shm') {
      surface.attach(shmBuffer!.wlBuffer, 0, 0);
      this.buffers.hold(shmBuffer!, prepared.frame);
    } else {
      const { buffer } = prepared;
      surface.attach(buffer.wlBuffer, 0, 0);
      const sync = this.surfaceSync;
      this.dmabufBuffers!.hold(buffer, prepared.frame, sync !== null);
      if (sync) {
        if (prepared.acquireFence !== null) {
          this.stats.fencesPassed++;
          sync.setAcquireFence(prepared.acquireFence);
        }
        sync.requestRelease((fence) => this.dmabufBuffers!.releaseHolder(buffer, prepared.frame, fence));
      }
    }
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
    this.emit('committed', prepared.frame);
  }

  /** The compositor refused a resource's dmabuf: its pending frame and later ones go by wl_shm if they can. */
  private onDmabufFailed(resource: BlobResource, error: Error): void {
    log.warn({ resource: resource.id, err: error.message }, 'dmabuf refused by the compositor: falling back to wl_shm');
    this.paths.set(resource, { path: 'shm', reason: error.message });
    if (this.pending?.kind === 'dmabuf' && this.pending.frame.resource === resource) this.retryAsShm(this.pending);
    this.maybeCommit();
  }

  private retryAsShm(prepared: Prepared & { kind: 'dmabuf' }): void {
    try {
      if (prepared.acquireFence !== null) closeFd(prepared.acquireFence); // the compositor was to wait; too late now
      prepared.acquireFence = null;
      this.pending = this.prepareShm(shmView(prepared.frame), prepared.seq);
    } catch (e) {
      this.pending = null;
      this.stats.framesFailed++;
      log.error({ resource: prepared.frame.resource.id, seq: prepared.seq, err: (e as Error).message }, 'frame cannot be shown');
      prepared.frame.release();
    }
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

async function checkExplicitSync(globals: Globals, options: PresenterOptions): Promise<ExplicitSyncProbe> {
  if (!globals.explicitSync) return { usable: false, reason: 'the compositor offers no zwp_linux_explicit_synchronization_v1' };
  if (options.fenceWait === 'client') return { usable: false, reason: 'fence waits in the client requested (fenceWait: client)' };
  if (!globals.linuxDmabuf || options.dmabuf === false) return { usable: false, reason: 'it applies to dmabuf buffers only, and none are used' };
  const udmabuf = udmabufAvailable();
  if (!udmabuf.available) return { usable: false, reason: `cannot be tried without a dmabuf: ${udmabuf.reason}` };
  return probeExplicitSync(options.display, probeDmabuf);
}

/** A blob frame in guest memory seen as a memfd frame, for the wl_shm path: only a single range can be. */
function shmView(frame: BlobFrame): MemfdFrame {
  const { resource } = frame;
  if (!resource.memory || resource.memory.length !== 1) {
    throw new ImportError('unsupported-format',
      `${resource} cannot go to wl_shm without a copy: it is ${resource.memory ? `${resource.memory.length} memory ranges` : 'a dmabuf'}`);
  }
  const range = resource.memory[0];
  const plane = resource.planes[0];
  return {
    fd: range.memfd, offset: range.offset + plane.offset, width: resource.width, height: resource.height,
    stride: plane.stride, fourcc: resource.format.fourcc, damage: frame.damage, seq: frame.seq, flushedAt: frame.flushedAt,
    release: () => frame.release(),
  };
}

function discard(frame: ScanoutFrame): void {
  if (isBlobFrame(frame) && frame.acquireFence !== null) closeFd(frame.acquireFence);
  frame.release();
}

function discardPrepared(prepared: Prepared): void {
  if (prepared.kind === 'dmabuf' && prepared.acquireFence !== null) closeFd(prepared.acquireFence);
  prepared.frame.release();
}

function mergeDamage(a: Rect[] | null, b: Rect[] | null): Rect[] | null {
  return a === null || b === null ? null : [...a, ...b];
}
