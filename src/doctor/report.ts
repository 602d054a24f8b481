// What this host and its compositor offer for each wlscanout path, gathered from the real devices, libEGL and
// the compositor's globals, and the decision each path leads to, with its reason.
import { listDrmNodes, listDmaHeaps, udmabufAvailable, type DrmNode, type DmaHeap, type UdmabufStatus } from '../native/drm.js';
import { eglProbe, type EglProbeResult } from '../native/egl.js';
import { SwSyncTimeline, SW_SYNC_PATH } from '../native/sync-file.js';
import { Connection } from '../wayland/connection.js';
import { bindGlobals, type Global } from '../present/globals.js';
import type { DmabufTranche } from '../present/dmabuf-formats.js';
import { probeExplicitSync, probeDmabuf, type ExplicitSyncProbe } from '../present/explicit-sync-probe.js';
import { fourccToString, formatByFourcc, formatByName, FORMATS } from '../formats.js';

export interface CompositorReport {
  display: string;
  error?: string;
  globals: Global[];
  linuxDmabuf: {
    version: number; source: string; formats: { fourcc: string; modifiers: string[] }[]; tranches: DmabufTranche[];
    /** Whether guest memory (linear XRGB8888) can go as a dmabuf, as the presenter decides it. */
    takesLinearXrgb: boolean;
  } | null;
  explicitSync: number | null;
  /** Whether explicit sync really works, tried as the presenter tries it (null: not tried). */
  explicitSyncProbe: ExplicitSyncProbe | null;
  shmFormats: string[];
  screencopy: string | null;
}

export interface Decision {
  topic: string;
  choice: string;
  why: string;
}

export interface DoctorReport {
  udmabuf: UdmabufStatus;
  drmNodes: DrmNode[];
  dmaHeaps: DmaHeap[];
  swSync: { available: boolean; path: string };
  egl: EglProbeResult;
  compositor: CompositorReport | null;
  decisions: Decision[];
}

export async function gatherReport(display: string | undefined): Promise<DoctorReport> {
  const report: DoctorReport = {
    udmabuf: udmabufAvailable(),
    drmNodes: listDrmNodes(),
    dmaHeaps: listDmaHeaps(),
    swSync: { available: SwSyncTimeline.available(), path: SW_SYNC_PATH },
    egl: eglProbe(),
    compositor: display === undefined && !process.env.WAYLAND_DISPLAY ? null : await probeCompositor(display),
    decisions: [],
  };
  const c = report.compositor;
  if (c && !c.error && c.explicitSync && c.linuxDmabuf && report.udmabuf.available) {
    c.explicitSyncProbe = await probeExplicitSync(display, probeDmabuf);
  }
  report.decisions = decide(report);
  return report;
}

async function probeCompositor(display: string | undefined): Promise<CompositorReport> {
  const name = display ?? process.env.WAYLAND_DISPLAY ?? 'wayland-0';
  const empty: CompositorReport = { display: name, globals: [], linuxDmabuf: null, explicitSync: null, explicitSyncProbe: null, shmFormats: [], screencopy: null };
  let connection: Connection;
  try {
    connection = new Connection(display);
  } catch (e) {
    return { ...empty, error: (e as Error).message };
  }
  try {
    const globals = await bindGlobals(connection);
    const version = (iface: string) => globals.all.find((g) => g.interface === iface)?.version ?? null;
    const f = globals.dmabufFormats;
    return {
      ...empty,
      globals: globals.all,
      linuxDmabuf: globals.linuxDmabuf ? {
        version: globals.linuxDmabuf.version, source: f.source, tranches: f.tranches,
        formats: [...f.modifiers].map(([fourcc, mods]) => ({ fourcc: fourccName(fourcc), modifiers: [...mods].map(hex) })),
        takesLinearXrgb: f.accepts(formatByName('XRGB8888')!.fourcc, 0n),
      } : null,
      explicitSync: version('zwp_linux_explicit_synchronization_v1'),
      shmFormats: FORMATS.filter((fmt) => globals.shmFormats.has(fmt.shm)).map((fmt) => fmt.name),
      screencopy: globals.screencopyManager ? 'wlr-screencopy' : version('weston_screenshooter') ? 'weston_screenshooter (needs weston --debug)' : null,
    };
  } catch (e) {
    return { ...empty, error: (e as Error).message };
  } finally {
    connection.close();
  }
}

const hex = (m: bigint): string => `0x${m.toString(16).padStart(16, '0')}`;

/** XRGB8888 for the formats wlscanout knows, else the four characters (e.g. 'NV12'). */
function fourccName(code: number): string {
  return formatByFourcc(code)?.name ?? fourccToString(code);
}

function decide(r: DoctorReport): Decision[] {
  const decisions: Decision[] = [];
  const c = r.compositor;
  const dmabuf = c?.linuxDmabuf;
  if (!c || c.error) {
    decisions.push({ topic: 'guest memory frames', choice: 'unknown', why: c ? `cannot reach the compositor: ${c.error}` : 'no compositor given (--display or $WAYLAND_DISPLAY)' });
  } else if (!r.udmabuf.available) {
    decisions.push({ topic: 'guest memory frames', choice: 'wl_shm (zero-copy on the guest memfd)', why: `no udmabuf: ${r.udmabuf.reason}` });
  } else if (!dmabuf) {
    decisions.push({ topic: 'guest memory frames', choice: 'wl_shm (zero-copy on the guest memfd)', why: 'the compositor offers no zwp_linux_dmabuf_v1' });
  } else if (!dmabuf.takesLinearXrgb) {
    decisions.push({ topic: 'guest memory frames', choice: 'wl_shm (zero-copy on the guest memfd)', why: 'the compositor lists no linear XRGB8888 dmabuf format' });
  } else {
    decisions.push({ topic: 'guest memory frames', choice: 'udmabuf → linux-dmabuf (zero-copy)', why: `/dev/udmabuf works and the compositor takes linear XRGB8888 (zwp_linux_dmabuf_v1 v${dmabuf.version})` });
  }
  if (c && !c.error) {
    decisions.push({
      topic: 'dmabuf frames (QEMU gl=on, VMM dmabufs)',
      choice: dmabuf ? 'passed straight through as linux-dmabuf' : 'cannot be shown',
      why: dmabuf ? `zwp_linux_dmabuf_v1 v${dmabuf.version} (${dmabuf.source})` : 'the compositor offers no zwp_linux_dmabuf_v1',
    });
    decisions.push({
      topic: 'guest fences',
      choice: c.explicitSyncProbe?.usable ? 'handed to the compositor (explicit sync) for dmabuf frames; waited on here otherwise' : 'waited on here, off the event loop, before commit',
      why: c.explicitSyncProbe ? `explicit sync ${c.explicitSyncProbe.usable ? 'works' : 'is not usable'}: ${c.explicitSyncProbe.reason}`
        : c.explicitSync ? `zwp_linux_explicit_synchronization_v1 v${c.explicitSync} is offered, but only applies to dmabuf buffers, and none will be used`
          : 'the compositor offers no explicit synchronization',
    });
    decisions.push({ topic: 'output capture', choice: c.screencopy ?? 'not possible', why: c.screencopy ? 'offered by the compositor' : 'neither wlr-screencopy nor weston_screenshooter (weston needs --debug)' });
  }
  decisions.push({
    topic: 'test fences (lab)',
    choice: r.swSync.available ? 'sw_sync timelines' : 'none',
    why: r.swSync.available ? `${r.swSync.path} is writable` : `${r.swSync.path} is missing (CONFIG_SW_SYNC and debugfs needed)`,
  });
  return decisions;
}
