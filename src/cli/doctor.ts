import { parseArgs } from 'node:util';
import { gatherReport, type DoctorReport } from '../doctor/report.js';

export const doctorHelp = `wlscanout doctor [options]
  Reports what this host and the compositor offer — /dev/udmabuf, DRM render nodes and their drivers,
  dma-heaps, sw_sync, EGL dmabuf import and native fences, the compositor's globals, linux-dmabuf formats
  and modifiers per tranche, explicit sync — and which path wlscanout will take for each kind of frame.

      --display NAME   Wayland display name or socket path (default: $WAYLAND_DISPLAY; none: no compositor part)
      --json           print the report as JSON

  Example: wlscanout doctor --display wayland-1`;

export async function doctorCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: { display: { type: 'string' }, json: { type: 'boolean' } },
  });
  const report = await gatherReport(values.display);
  process.stdout.write(values.json
    ? `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 2)}\n`
    : formatReport(report));
  return 0;
}

export function formatReport(r: DoctorReport): string {
  const lines: string[] = ['host'];
  lines.push(`  udmabuf:      ${r.udmabuf.available ? '/dev/udmabuf usable' : `no — ${r.udmabuf.reason}`}`);
  if (r.drmNodes.length === 0) lines.push('  DRM nodes:    none (/dev/dri is empty or missing)');
  for (const n of r.drmNodes) {
    lines.push(`  DRM node:     ${n.path} (${n.kind}) ${n.driver ? `driver ${n.driver}` : `error: ${n.error?.message}`}`);
  }
  lines.push(`  dma-heaps:    ${r.dmaHeaps.length ? r.dmaHeaps.map((h) => h.name + (h.error ? ` (${h.error.message})` : '')).join(', ') : 'none'}`);
  lines.push(`  sw_sync:      ${r.swSync.available ? r.swSync.path : 'no'}`);
  if (!r.egl.library) lines.push(`  EGL:          ${r.egl.error}`);
  for (const d of r.egl.displays) {
    const where = d.platform + (d.deviceIndex !== undefined ? ` device ${d.deviceIndex}` : '');
    if (d.error !== undefined) {
      lines.push(`  EGL ${where}: ${d.error}`);
      continue;
    }
    const yes = (k: keyof typeof d.features) => (d.features[k] ? 'yes' : 'no');
    lines.push(`  EGL ${where}: ${d.vendor ?? '?'} ${d.version ?? ''}, driver ${d.driver ?? '?'}; dmabuf import ${yes('EGL_EXT_image_dma_buf_import')}` +
      ` (modifiers ${yes('EGL_EXT_image_dma_buf_import_modifiers')}), dmabuf export ${yes('EGL_MESA_image_dma_buf_export')},` +
      ` native fences ${yes('EGL_ANDROID_native_fence_sync')}` + (d.dmabufFormats ? `, ${d.dmabufFormats.length} dmabuf formats` : ''));
  }
  const c = r.compositor;
  lines.push('', 'compositor');
  if (!c) lines.push('  not probed: no --display and no $WAYLAND_DISPLAY');
  else if (c.error) lines.push(`  ${c.display}: cannot connect: ${c.error}`);
  else {
    lines.push(`  display:      ${c.display}`);
    lines.push(`  globals:      ${c.globals.map((g) => `${g.interface} v${g.version}`).join(', ')}`);
    lines.push(`  wl_shm:       ${c.shmFormats.join(' ')}`);
    if (!c.linuxDmabuf) lines.push('  linux-dmabuf: not offered');
    else {
      lines.push(`  linux-dmabuf: v${c.linuxDmabuf.version}, formats from ${c.linuxDmabuf.source}`);
      if (c.linuxDmabuf.tranches.length) {
        c.linuxDmabuf.tranches.forEach((t, i) => lines.push(`    tranche ${i}${t.flags & 1 ? ' (scanout)' : ''}: ${t.formats.length} format/modifier pairs`));
      }
      for (const f of c.linuxDmabuf.formats) lines.push(`    ${f.fourcc}: ${f.modifiers.join(' ') || '(implicit modifier)'}`);
    }
    lines.push(`  explicit sync: ${c.explicitSync ? `zwp_linux_explicit_synchronization_v1 v${c.explicitSync}` : 'not offered'}` +
      (c.explicitSyncProbe ? ` (tried: ${c.explicitSyncProbe.usable ? 'works' : c.explicitSyncProbe.reason})` : ''));
  }
  lines.push('', 'paths');
  for (const d of r.decisions) lines.push(`  ${d.topic}: ${d.choice}`, `    because ${d.why}`);
  return `${lines.join('\n')}\n`;
}
