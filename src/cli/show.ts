import { parseArgs } from 'node:util';
import { QemuVm, type QemuDisplay } from '../source/qemu/display.js';
import { log } from '../log.js';
import { parseCount, UsageError } from './args.js';
import { ShowHead, type HeadOptions } from './show-head.js';

export const showHelp = `wlscanout show (--qmp SOCKET | --dbus-address ADDR) [options]
  Shows a running QEMU's display in a window per graphic console (each titled with the VM's name and
  the console's label), and forwards the window's keyboard and pointer to the guest. QEMU must run with
  -display dbus,p2p=yes and a QMP socket (-qmp unix:SOCKET,server=on,wait=off). With gl=on and a render
  node, QEMU's dmabuf scan-outs (e.g. virtio-gpu blob resources, udmabufs) go to the compositor as
  linux-dmabuf buffers without a copy; with gl=off the pixels QEMU sends are copied once into a
  shared-memory surface. The guest's cursor is the pointer's image over the window; F11 toggles
  fullscreen (it is not forwarded). Runs until QEMU exits, a window is closed or Ctrl-C.

      --qmp SOCKET       QEMU's QMP unix socket (peer to peer: -display dbus,p2p=yes)
      --dbus-address ADDR  bus mode (-display dbus[,addr=ADDR]): the bus QEMU is on, "session" for
                         $DBUS_SESSION_BUS_ADDRESS, or a unix: D-Bus address
      --console N        show only this console (default: every graphic console)
      --wait             when QEMU goes away, keep the windows (titled "disconnected") and attach
                         again when QEMU serves the socket anew, instead of exiting
      --fullscreen       ask for fullscreen windows
      --no-dmabuf        show dmabuf scan-outs through wl_shm where possible (for comparison)
      --display NAME     Wayland display name or socket path (default: $WAYLAND_DISPLAY)

  exit status: 0 a window was closed, or Ctrl-C; 1 an error (the compositor went away, QEMU refused);
  2 bad command line; 3 QEMU exited or closed the display (without --wait)

  Example: qemu-system-x86_64 -m 1G -device virtio-gpu-pci,blob=true \\
             -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem \\
             -display dbus,p2p=yes,gl=on,rendernode=/dev/dri/renderD128 -qmp unix:/tmp/vm.qmp,server=on,wait=off ...
           wlscanout show --qmp /tmp/vm.qmp
           qemu-system-x86_64 ... -display dbus,addr=unix:path=/tmp/bus; wlscanout show --dbus-address unix:path=/tmp/bus`;

/** Exit status when QEMU went away. */
export const EXIT_QEMU_GONE = 3;

interface Attached {
  vm: QemuVm;
  consoles: QemuDisplay[];
}

type Target = { qmpPath?: string; dbusAddress?: string };

/**
 * Attaches to QEMU and shows each console in a head (opening the heads that do not exist yet). Each console is
 * connected in the same turn as openConsole() resolves, before its held events are let go, so none is missed.
 */
async function attach(target: Target, only: number | null, heads: ShowHead[], headOptions: HeadOptions): Promise<Attached> {
  const vm = await QemuVm.attach(target);
  const consoles: QemuDisplay[] = [];
  try {
    const ids = only !== null ? [only] : await vm.graphicConsoles();
    if (ids.length === 0) throw new Error('QEMU has no graphic console');
    for (const [i, id] of ids.entries()) {
      const info = await vm.consoleInfo(id);
      heads[i] ??= await ShowHead.open(titleFor(vm.vm.name, info.label, id), headOptions);
      const display = await vm.openConsole(id);
      heads[i].connect(display, titleOf(display));
      consoles.push(display);
      log.info({ vm: vm.vm.name, console: display.console }, 'showing QEMU console');
    }
    return { vm, consoles };
  } catch (e) {
    for (const display of consoles) display.close();
    vm.close();
    throw e;
  }
}

function titleFor(vmName: string, label: string, id: number): string {
  return `wlscanout: ${vmName || 'QEMU'} — ${label || `console ${id}`}`;
}

function titleOf(display: QemuDisplay): string {
  return titleFor(display.vm.name, display.console.label, display.console.id);
}

export async function showCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      qmp: { type: 'string' }, 'dbus-address': { type: 'string' }, console: { type: 'string' }, fullscreen: { type: 'boolean' }, wait: { type: 'boolean' },
      'no-dmabuf': { type: 'boolean' }, display: { type: 'string' },
    },
  });
  if (!values.qmp === !values['dbus-address']) {
    throw new UsageError('show needs --qmp SOCKET (QEMU\'s QMP unix socket) or --dbus-address ADDR (bus mode), one of them');
  }
  const target: Target = values.qmp ? { qmpPath: values.qmp } : { dbusAddress: values['dbus-address'] };
  const only = values.console === undefined ? null : parseCount('--console', values.console, 0, 0, 255);
  const heads: ShowHead[] = [];
  const headOptions: HeadOptions = { display: values.display, fullscreen: values.fullscreen, dmabuf: !values['no-dmabuf'] };
  let attached: Attached | null = null;
  try {
    attached = await attach(target, only, heads, headOptions);
    for (;;) {
      const outcome = await nextOutcome(heads, attached.vm);
      const summary = `${outcome.why}; ${heads.map((h) => h.stats).join('; ')}`;
      if (outcome.code !== EXIT_QEMU_GONE || !values.wait) {
        process.stderr.write(`${summary}\n`);
        return outcome.code;
      }
      process.stderr.write(`${summary}; waiting for QEMU to come back (--wait)\n`);
      for (const head of heads) head.disconnect('disconnected, waiting for QEMU');
      const stop = new AbortController();
      const again = await Promise.race([reattach(target, only, heads, headOptions, stop.signal), nextOutcome(heads, null)]);
      stop.abort();
      if ('code' in again) {
        process.stderr.write(`${again.why}\n`);
        return again.code;
      }
      attached = again;
      log.info({ consoles: attached.consoles.length }, 'show: attached to QEMU again');
    }
  } finally {
    for (const head of heads) head.close();
    for (const display of attached?.consoles ?? []) display.close();
    attached?.vm.close();
  }
}

/** Resolves with what ends this stretch of showing: QEMU going away (when `vm` is given), a window closed or
 *  failing, or a signal. Its listeners are removed once it resolves. */
function nextOutcome(heads: ShowHead[], vm: QemuVm | null): Promise<{ code: number; why: string }> {
  return new Promise((resolve) => {
    const offs: (() => void)[] = [];
    const on = <T extends unknown[]>(target: { once(e: string, f: (...a: T) => void): unknown; off(e: string, f: (...a: T) => void): unknown },
      event: string, f: (...a: T) => { code: number; why: string }): void => {
      const listener = (...a: T): void => {
        offs.forEach((off) => off());
        resolve(f(...a));
      };
      target.once(event, listener);
      offs.push(() => target.off(event, listener));
    };
    if (vm) on(vm, 'close', (reason: Error | null) => ({ code: EXIT_QEMU_GONE, why: `QEMU closed the display${reason ? `: ${reason.message}` : ''}` }));
    for (const head of heads) {
      on(head.presenter, 'close', () => ({ code: 0, why: 'window closed' }));
      on(head.presenter, 'error', (e: Error) => ({ code: 1, why: e.message }));
    }
    on(process, 'SIGINT', () => ({ code: 0, why: 'interrupted' }));
    on(process, 'SIGTERM', () => ({ code: 0, why: 'terminated' }));
  });
}

/** Attaches again once QEMU serves its QMP socket (tried every second); never resolves once `signal` aborts. */
async function reattach(target: Target, only: number | null, heads: ShowHead[], headOptions: HeadOptions,
  signal: AbortSignal): Promise<Attached> {
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, 1000));
    if (signal.aborted) break;
    try {
      const attached = await attach(target, only, heads, headOptions);
      if (!signal.aborted) return attached;
      for (const display of attached.consoles) display.close();
      attached.vm.close();
    } catch (e) {
      log.debug({ err: (e as Error).message }, 'show: QEMU not back yet');
    }
  }
  return new Promise(() => {});
}
