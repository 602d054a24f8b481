// One head of `wlscanout show`: a QEMU console in its own window, with the window's input forwarded to the
// console and the guest's cursor on the window.
import { Presenter } from '../present/presenter.js';
import type { QemuDisplay } from '../source/qemu/display.js';
import { QemuSource } from '../source/qemu/qemu-source.js';
import { forwardInput, type InputForwarding } from '../source/qemu/qemu-input.js';
import { log } from '../log.js';

export interface HeadOptions {
  display?: string;
  fullscreen?: boolean;
  dmabuf: boolean;
}

/** Waits this long after Disable before calling the display disabled: QEMU 7.2 sends Disable right before each
 *  new dmabuf scan-out, which is not a blank. */
const DISABLE_GRACE_MS = 300;

export class ShowHead {
  private source: QemuSource | null = null;
  private input: InputForwarding | null = null;
  private console: QemuDisplay | null = null;
  private disableTimer: NodeJS.Timeout | null = null;
  private state = '';

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
    this.source = new QemuSource(display, this.presenter); // at once: events held by attach() come next
    this.input = forwardInput(this.presenter.input, display);
    display.on('disable', this.onDisable);
    display.on('scanout', this.onFrame);
    display.on('scanout-dmabuf', this.onFrame);
    this.setState('');
  }

  /** Detaches from the console; the window keeps its last frame and shows `state` in its title. */
  disconnect(state = ''): void {
    if (this.disableTimer) clearTimeout(this.disableTimer);
    this.disableTimer = null;
    this.input?.stop();
    this.source?.close();
    this.console?.off('disable', this.onDisable);
    this.console?.off('scanout', this.onFrame);
    this.console?.off('scanout-dmabuf', this.onFrame);
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
  }

  private readonly onDisable = (): void => {
    if (this.disableTimer) clearTimeout(this.disableTimer);
    this.disableTimer = setTimeout(() => {
      this.disableTimer = null;
      log.info({ title: this.title }, 'qemu: the guest disabled this display');
      this.setState('display disabled');
    }, DISABLE_GRACE_MS);
  };

  private readonly onFrame = (): void => {
    if (this.disableTimer) clearTimeout(this.disableTimer);
    this.disableTimer = null;
    if (this.state === 'display disabled') this.setState('');
  };

  private setState(state: string): void {
    this.state = state;
    this.presenter.window.setTitle(state ? `${this.title} (${state})` : this.title);
  }
}
