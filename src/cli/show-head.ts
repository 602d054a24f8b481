// One head of `wlscanout show`: a QEMU console in its own window, with the window's input forwarded to the
// console and the guest's cursor on the window.
import { Presenter } from '../present/presenter.js';
import type { QemuDisplay } from '../source/qemu/display.js';
import { QemuSource } from '../source/qemu/qemu-source.js';
import { forwardInput, type InputForwarding } from '../source/qemu/qemu-input.js';
import { log } from '../log.js';
import { addSeals, close, constants, ftruncate, memfdCreate, pwrite } from '../native/fds.js';
import { formatByName } from '../formats.js';
import type { MemfdFrame } from '../source/frame.js';

export interface HeadOptions {
  display?: string;
  fullscreen?: boolean;
  dmabuf: boolean;
}

/** Waits this long after Disable before calling the display disabled: QEMU 7.2 sends Disable right before each
 *  new dmabuf scan-out, which is not a blank. */
const DISABLE_GRACE_MS = 300;
/** Everything that brings the guest's picture back after a Disable (QEMU 7.2 sends Disable before each new dmabuf
 *  scan-out and then only UpdateDMABUFs). */
const FRAME_EVENTS = ['scanout', 'update', 'scanout-dmabuf', 'update-dmabuf', 'scanout-map', 'update-map', 'scanout-dmabuf2'] as const;
/** A console that has shown nothing this long after attaching gets the placeholder (its window maps). */
const FIRST_FRAME_GRACE_MS = 1000;
const PLACEHOLDER_GREY = 0x30;

/** A uniform dark frame for a console with nothing to show (disabled, or no scan-out yet). */
class Placeholder {
  private fd: number | null = null;
  /** Memfds of earlier sizes: frames borrow them until released, so they stay open until close(). */
  private readonly retired: number[] = [];
  private size = { width: 0, height: 0 };
  private seq = 0;

  frame(width: number, height: number): MemfdFrame {
    const w = width > 0 && width <= 16384 ? width : 640;
    const h = height > 0 && height <= 16384 ? height : 480;
    if (this.fd === null || this.size.width !== w || this.size.height !== h) {
      if (this.fd !== null) this.retired.push(this.fd);
      this.fd = null;
      const fd = memfdCreate('wlscanout-placeholder', true);
      try {
        ftruncate(fd, w * h * 4);
        pwrite(fd, Buffer.alloc(w * h * 4, PLACEHOLDER_GREY), 0);
        addSeals(fd, constants.F_SEAL_SHRINK | constants.F_SEAL_GROW); // not F_SEAL_WRITE: libwayland maps pools writable
      } catch (e) {
        close(fd);
        throw e;
      }
      this.fd = fd;
      this.size = { width: w, height: h };
    }
    // Negative seqs: QemuSource answers QEMU when 'committed' names one of its own frames' seqs, never these.
    return {
      fd: this.fd, offset: 0, width: w, height: h, stride: w * 4, fourcc: formatByName('XRGB8888')!.fourcc,
      damage: null, seq: -1 - this.seq++, flushedAt: process.hrtime.bigint(), release: () => {},
    };
  }

  close(): void {
    if (this.fd !== null) close(this.fd);
    this.fd = null;
    this.retired.splice(0).forEach((fd) => close(fd));
  }
}

export class ShowHead {
  private source: QemuSource | null = null;
  private input: InputForwarding | null = null;
  private console: QemuDisplay | null = null;
  private disableTimer: NodeJS.Timeout | null = null;
  private state = '';
  private framesSeen = false;
  private showingPlaceholder = false;
  private readonly placeholder = new Placeholder();

  private constructor(readonly presenter: Presenter, private title: string) {}

  static async open(title: string, options: HeadOptions): Promise<ShowHead> {
    const presenter = await Presenter.open({
      display: options.display, title, appId: 'wlscanout', fullscreen: options.fullscreen, dmabuf: options.dmabuf,
    });
    return new ShowHead(presenter, title);
  }

  /** Shows `display` in this head's window (again, after a re-attach). */
  connect(display: QemuDisplay, title: string): void {
    this.disconnect();
    this.console = display;
    this.title = title;
    // Before the source: a frame after the placeholder must find the presenter invalidated already.
    for (const event of FRAME_EVENTS) display.on(event, this.onFrame);
    display.on('disable', this.onDisable);
    this.source = new QemuSource(display, this.presenter); // at once: events held by attach() come next
    this.input = forwardInput(this.presenter.input, display);
    this.setState('');
    this.framesSeen = false;
    this.armTimer(FIRST_FRAME_GRACE_MS, () => {
      if (!this.framesSeen) this.showPlaceholder('no display output yet');
    });
  }

  /** Detaches from the console; the window keeps its last frame and shows `state` in its title. */
  disconnect(state = ''): void {
    if (this.disableTimer) clearTimeout(this.disableTimer);
    this.disableTimer = null;
    this.input?.stop();
    this.source?.close();
    this.console?.off('disable', this.onDisable);
    for (const event of FRAME_EVENTS) this.console?.off(event, this.onFrame);
    this.input = null;
    this.source = null;
    this.console = null;
    if (state) this.setState(state);
  }

  get stats(): string {
    const s = this.source?.stats;
    const p = this.presenter;
    return `${s ? `${s.dmabufScanouts} dmabuf scan-outs, ${s.dmabufUpdates} dmabuf updates, ${s.scanouts} scan-outs, ` +
      `${s.updates} updates (${s.bytesCopied} bytes copied), ` : ''}${p.stats.framesCommitted} frames shown` +
      `${p.dmabufBuffers ? `, ${p.dmabufBuffers.stats.imports} dmabuf imports` : ''}` +
      `${this.input ? `, ${this.input.stats.keys} keys and ${this.input.stats.motions} pointer moves forwarded` : ''}`;
  }

  close(): void {
    this.disconnect();
    this.presenter.close();
    this.placeholder.close();
  }

  private readonly onDisable = (): void => {
    this.armTimer(DISABLE_GRACE_MS, () => {
      log.info({ title: this.title }, 'qemu: the guest disabled this display');
      this.showPlaceholder('display disabled');
    });
  };

  private readonly onFrame = (): void => {
    this.framesSeen = true;
    if (this.disableTimer) clearTimeout(this.disableTimer);
    this.disableTimer = null;
    if (this.showingPlaceholder) {
      // The guest's frames carry damage relative to the guest's previous frame, not to the placeholder.
      this.presenter.invalidate();
      this.showingPlaceholder = false;
    }
    if (this.state) this.setState('');
  };

  private armTimer(ms: number, run: () => void): void {
    if (this.disableTimer) clearTimeout(this.disableTimer);
    this.disableTimer = setTimeout(() => {
      this.disableTimer = null;
      run();
    }, ms);
  }

  private showPlaceholder(state: string): void {
    const c = this.console?.console;
    try {
      this.presenter.present(this.placeholder.frame(c?.width ?? 0, c?.height ?? 0));
      this.showingPlaceholder = true;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'show: cannot show the placeholder');
    }
    this.setState(state);
  }

  private setState(state: string): void {
    this.state = state;
    this.presenter.window.setTitle(state ? `${this.title} (${state})` : this.title);
  }
}
