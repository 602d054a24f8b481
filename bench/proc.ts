// Measuring helpers shared by the scenarios: CPU and page faults of a process from /proc, and the memcpy floor.
import { readFileSync } from 'node:fs';

/** /proc stat fields after the command name: of one thread (tid), or of the whole process (no tid). */
export function procStat(pid: number, tid?: number): string[] {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

export function cpuTicks(pid: number, tid?: number): number {
  const fields = procStat(pid, tid);
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks
}

export function minorFaults(pid: number): number {
  return Number(procStat(pid)[7]);
}

/** One memcpy of `bytes`, in ms (a few rounds, after a first one that faults the pages in): the physical floor
 *  copy paths are reported against. */
export function memcpyMs(bytes: number): number {
  const a = Buffer.alloc(bytes, 7);
  const b = Buffer.alloc(bytes);
  a.copy(b);
  const rounds = 20;
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) a.copy(b);
  return Number(process.hrtime.bigint() - start) / 1e6 / rounds;
}
