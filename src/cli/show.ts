import { parseArgs } from 'node:util';
import { Presenter } from '../present/presenter.js';
import { QemuDisplay } from '../source/qemu/display.js';
import { QemuSource } from '../source/qemu/qemu-source.js';
import { log } from '../log.js';
import { parseCount, UsageError } from './args.js';

export const showHelp = `wlscanout show --qmp SOCKET [options]
  Shows a running QEMU's display in a window. QEMU must run with -display dbus,p2p=yes and a QMP socket
  (-qmp unix:SOCKET,server=on,wait=off). With gl=on and a render node, QEMU's dmabuf scan-outs (e.g.
  virtio-gpu blob resources, udmabufs) go to the compositor as linux-dmabuf buffers without a copy; with
  gl=off the pixels QEMU sends are copied once into a shared-memory surface. Runs until QEMU exits, the
  window is closed or Ctrl-C.

      --qmp SOCKET       QEMU's QMP unix socket (required)
      --console N        QEMU console to show (default: 0)
      --fullscreen       ask for a fullscreen window
      --no-dmabuf        show dmabuf scan-outs through wl_shm where possible (for comparison)
      --display NAME     Wayland display name or socket path (default: $WAYLAND_DISPLAY)

  Example: qemu-system-x86_64 -m 1G -device virtio-gpu-pci,blob=true \\
             -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem \\
             -display dbus,p2p=yes,gl=on,rendernode=/dev/dri/renderD128 -qmp unix:/tmp/vm.qmp,server=on,wait=off ...
           wlscanout show --qmp /tmp/vm.qmp`;

export async function showCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      qmp: { type: 'string' }, console: { type: 'string' }, fullscreen: { type: 'boolean' },
      'no-dmabuf': { type: 'boolean' }, display: { type: 'string' },
    },
  });
  if (!values.qmp) throw new UsageError('show needs --qmp SOCKET (QEMU\'s QMP unix socket)');
  const consoleId = parseCount('--console', values.console, 0, 0, 255);
  const presenter = await Presenter.open({
    display: values.display, title: 'wlscanout: QEMU', appId: 'wlscanout', fullscreen: values.fullscreen,
    dmabuf: !values['no-dmabuf'],
  });
  let display: QemuDisplay | null = null;
  let source: QemuSource | null = null;
  try {
    display = await QemuDisplay.attach({ qmpPath: values.qmp, console: consoleId });
    source = new QemuSource(display, presenter); // at once: events held by attach() are delivered next
    const d = display;
    presenter.window.setTitle(`wlscanout: ${d.vm.name || 'QEMU'} (${d.console.label})`);
    log.info({ vm: d.vm.name, console: d.console }, 'attached to QEMU');
    const outcome = await new Promise<{ code: number; why: string }>((resolve) => {
      d.once('close', (reason) => resolve({ code: 0, why: `QEMU closed the display${reason ? `: ${reason.message}` : ''}` }));
      presenter.once('close', () => resolve({ code: 0, why: 'window closed' }));
      presenter.once('error', (e) => resolve({ code: 1, why: e.message }));
      process.once('SIGINT', () => resolve({ code: 0, why: 'interrupted' }));
      process.once('SIGTERM', () => resolve({ code: 0, why: 'terminated' }));
    });
    const s = source.stats;
    process.stderr.write(`${outcome.why}; ${s.dmabufScanouts} dmabuf scan-outs, ${s.dmabufUpdates} dmabuf updates, ` +
      `${s.scanouts} scan-outs, ${s.updates} updates (${s.bytesCopied} bytes copied), ${presenter.stats.framesCommitted} frames shown` +
      `${presenter.dmabufBuffers ? `, ${presenter.dmabufBuffers.stats.imports} dmabuf imports` : ''}\n`);
    return outcome.code;
  } finally {
    source?.close();
    display?.close();
    presenter.close();
  }
}
