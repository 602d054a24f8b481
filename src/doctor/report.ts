// What this host and its compositor offer for each wlscanout path, gathered from the real devices, libEGL and
// the compositor's globals, and the decision each path leads to, with its reason.
import { listDrmNodes, listDmaHeaps, udmabufAvailable, type DrmNode, type DmaHeap, type UdmabufStatus } from '../native/drm.js';
import { eglProbe, type EglProbeResult } from '../native/egl.js';
import { SwSyncTimeline, SW_SYNC_PATH } from '../native/sync-file.js';
import { Connection } from '../wayland/connection.js';
import { bindGlobals, type Global } from '../present/globals.js';
import type { DmabufTranche } from '../present/dmabuf-formats.js';
import { fourccToString, FORMATS } from '../formats.js';

export interface CompositorReport {
  display: string;
  error?: string;
  globals: Global[];
  linuxDmabuf: { version: number; source: string; formats: { fourcc: string; modifiers: string[] }[]; tranches: DmabufTranche[] } | null;
  explicitSync: number | null;
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
  report.decisions = decide(report);
  return report;
}

async function probeCompositor(display: string | undefined): Promise<CompositorReport> {
  const name = display ?? process.env.WAYLAND_DISPLAY ?? 'wayland-0';
  const empty: CompositorReport = { display: name, globals: [], linuxDmabuf: null, explicitSync: null, shmFormats: [], screencopy: null };
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
        formats: [...f.modifiers].map(([fourcc, mods]) => ({ fourcc: fourccToString(fourcc), modifiers: [...mods].map(hex) })),
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

function decide(r: DoctorReport): Decision[] {
  const decisions: Decision[] = [];
  const c = r.compositor;
  const dmabuf = c?.linuxDmabuf;
  const linearXrgb = dmabuf?.formats.find((f) => f.fourcc === 'XR24' && (f.modifiers.length === 0 || f.modifiers.includes(hex(0n))));
  if (!c || c.error) {
    decisions.push({ topic: 'guest memory frames', choice: 'unknown', why: c ? `cannot reach the compositor: ${c.error}` : 'no compositor given (--display or $WAYLAND_DISPLAY)' });
  } else if (!r.udmabuf.available) {
    decisions.push({ topic: 'guest memory frames', choice: 'wl_shm (zero-copy on the guest memfd)', why: `no udmabuf: ${r.udmabuf.reason}` });
  } else if (!dmabuf) {
    decisions.push({ topic: 'guest memory frames', choice: 'wl_shm (zero-copy on the guest memfd)', why: 'the compositor offers no zwp_linux_dmabuf_v1' });
  } else if (!linearXrgb) {
    decisions.push({ topic: 'guest memory frames', choice: 'wl_shm (zero-copy on the guest memfd)', why: 'the compositor lists no linear XRGB8888 dmabuf format' });
  } else {
    decisions.push({ topic: 'guest memory frames', choice: 'udmabuf → linux-dmabuf (zero-copy)', why: `/dev/udmabuf works and the compositor takes linear XR24 (zwp_linux_dmabuf_v1 v${dmabuf.version})` });
  }
  if (c && !c.error) {
    decisions.push({
      topic: 'dmabuf frames (QEMU gl=on, VMM dmabufs)',
      choice: dmabuf ? 'passed straight through as linux-dmabuf' : 'cannot be shown',
      why: dmabuf ? `zwp_linux_dmabuf_v1 v${dmabuf.version} (${dmabuf.source})` : 'the compositor offers no zwp_linux_dmabuf_v1',
    });
    decisions.push({
      topic: 'guest fences',
      choice: c.explicitSync && dmabuf ? 'handed to the compositor (explicit sync) for dmabuf frames; waited on here otherwise' : 'waited on here, off the event loop, before commit',
      why: c.explicitSync ? `zwp_linux_explicit_synchronization_v1 v${c.explicitSync}${dmabuf ? '' : ', but it only applies to dmabuf buffers'}` : 'the compositor offers no explicit synchronization',
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
