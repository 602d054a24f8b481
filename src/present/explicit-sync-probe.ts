// Some compositors advertise zwp_linux_explicit_synchronization_v1 but cannot honour it: weston 10 with a
// renderer without native fences fails every release fence (fatally for the client) and *aborts* on an acquire
// fence. Before handing fences to the compositor, the presenter asks for one release fence on a throwaway
// connection — never an acquire fence: a renderer that can make release fences can also wait on acquire ones.
import { Connection } from '../wayland/connection.js';
import type { WlBuffer } from '../wayland/protocols/index.js';
import { bindGlobals } from './globals.js';
import { Window } from './window.js';
import { SurfaceSync } from './explicit-sync.js';
import { memfdCreate, ftruncate, addSeals, close, constants } from '../native/fds.js';
import { udmabufCreate } from '../native/dmabuf.js';
import { formatByName } from '../formats.js';

export interface ExplicitSyncProbe {
  usable: boolean;
  reason: string;
}

/** Whether explicit sync works for a dmabuf: a one-page udmabuf (from makeDmabuf, closed here) is shown in a
 *  small window with a release object, then replaced, and the release must arrive without an error. */
export async function probeExplicitSync(display: string | undefined,
  makeDmabuf: () => { fd: number; stride: number; fourcc: number; modifier: bigint },
  timeoutMs = 5000): Promise<ExplicitSyncProbe> {
  const connection = new Connection(display);
  let dmabuf: ReturnType<typeof makeDmabuf> | null = null;
  try {
    const globals = await bindGlobals(connection);
    if (!globals.explicitSync || !globals.linuxDmabuf) return { usable: false, reason: 'not offered' };
    dmabuf = makeDmabuf();
    const failed = new Promise<string>((resolve) => connection.once('error', (e) => resolve(`the compositor ended the probe's connection (${e.message})`)));
    const window = new Window(globals, { title: 'wlscanout explicit-sync probe' });
    await Promise.race([new Promise<void>((r) => window.once('configured', () => r())), failed]);
    const params = globals.linuxDmabuf.createParams();
    const modifier = globals.dmabufFormats.wireModifier(dmabuf.fourcc, dmabuf.modifier) ?? dmabuf.modifier;
    params.add(dmabuf.fd, 0, 0, dmabuf.stride, Number(modifier >> 32n), Number(modifier & 0xffffffffn));
    const buffer = await Promise.race([
      new Promise<WlBuffer | string>((resolve) => {
        params.on({ created: (b) => resolve(b), failed: () => resolve('the compositor refused the probe dmabuf') });
        params.create(16, 16, dmabuf!.fourcc, 0);
      }),
      failed,
    ]);
    if (typeof buffer === 'string') return { usable: false, reason: buffer };
    const sync = new SurfaceSync(globals.explicitSync, window.surface);
    window.applySize({ width: 16, height: 16 });
    window.surface.attach(buffer, 0, 0);
    const released = new Promise<string | null>((resolve) => sync.requestRelease((f) => { if (f !== null) close(f); resolve(null); }));
    window.surface.damageBuffer(0, 0, 16, 16);
    const shown = new Promise<null>((resolve) => window.surface.frame().on({ done: () => resolve(null) }));
    window.surface.commit();
    await Promise.race([shown, failed]);
    // The release (and any failure to make its fence) comes at the next buffer change: show nothing next.
    window.surface.attach(null, 0, 0);
    window.surface.commit();
    const timeout = new Promise<string>((r) => setTimeout(() => r(`no release within ${timeoutMs} ms`), timeoutMs).unref());
    const outcome = await Promise.race([released, failed, timeout.then((t) => `timeout: ${t}`)]);
    if (outcome !== null) return { usable: false, reason: `advertised, but ${outcome}` };
    await connection.roundtrip();
    return { usable: true, reason: `zwp_linux_explicit_synchronization_v1 v${globals.explicitSync.version} works for dmabufs` };
  } catch (e) {
    const why = connection.failure ? `the compositor ended the probe's connection (${connection.failure.message})` : `the probe failed: ${(e as Error).message}`;
    return { usable: false, reason: `advertised, but ${why}` };
  } finally {
    if (dmabuf) close(dmabuf.fd);
    connection.close();
  }
}

/** A one-page linear XRGB8888 udmabuf. */
export function probeDmabuf(): { fd: number; stride: number; fourcc: number; modifier: bigint } {
  const memfd = memfdCreate('wlscanout-sync-probe', true);
  try {
    ftruncate(memfd, constants.PAGE_SIZE);
    addSeals(memfd, constants.F_SEAL_SHRINK);
    const fd = udmabufCreate(memfd, 0, constants.PAGE_SIZE);
    return { fd, stride: 64, fourcc: formatByName('XRGB8888')!.fourcc, modifier: 0n };
  } finally {
    close(memfd);
  }
}
