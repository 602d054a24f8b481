// Lab tier: the native dmabuf and sync_file layer against a kernel that has udmabuf and sw_sync.
import { describe, expect, it } from 'vitest';
import { memfdCreate, ftruncate, addSeals, close, constants, mmap, munmap, pwrite, listOpenFds } from '../../src/native/fds.js';
import { udmabufCreate, udmabufCreateList, dmabufBeginCpuAccess, dmabufEndCpuAccess, dmabufExportSyncFile, dmabufImportSyncFile } from '../../src/native/dmabuf.js';
import { SwSyncTimeline, syncFileInfo, syncMerge } from '../../src/native/sync-file.js';
import { waitFence } from '../../src/sync/fence.js';

const PAGE = constants.PAGE_SIZE;

function memfd(pages: number, seal = true): number {
  const fd = memfdCreate('lab', true);
  ftruncate(fd, pages * PAGE);
  if (seal) addSeals(fd, constants.F_SEAL_SHRINK);
  return fd;
}

describe('udmabuf', () => {
  it('makes a dmabuf whose pages are the memfd pages (no copy)', () => {
    const m = memfd(4);
    pwrite(m, Buffer.from('guest pixels'), PAGE + 16);
    const dmabuf = udmabufCreate(m, PAGE, 2 * PAGE);
    try {
      dmabufBeginCpuAccess(dmabuf, 'read');
      const map = mmap(dmabuf, 0, 2 * PAGE, false);
      const text = Buffer.from(map, 16, 12).toString();
      munmap(map); // map briefly: the lab kernel dislikes dmabuf mappings that outlive their users
      dmabufEndCpuAccess(dmabuf, 'read');
      expect(text).toBe('guest pixels');
      pwrite(m, Buffer.from('changed'), PAGE + 16); // a later write to the memfd shows through the dmabuf
      const again = mmap(dmabuf, 0, PAGE, false);
      expect(Buffer.from(again, 16, 7).toString()).toBe('changed');
      munmap(again);
    } finally {
      close(dmabuf);
      close(m);
    }
  });

  it('concatenates ranges of several memfds with UDMABUF_CREATE_LIST', () => {
    const a = memfd(2);
    const b = memfd(2);
    pwrite(a, Buffer.from('AAAA'), PAGE);
    pwrite(b, Buffer.from('BBBB'), 0);
    const dmabuf = udmabufCreateList([{ memfd: a, offset: PAGE, size: PAGE }, { memfd: b, offset: 0, size: PAGE }]);
    const map = mmap(dmabuf, 0, 2 * PAGE, false);
    expect([Buffer.from(map, 0, 4).toString(), Buffer.from(map, PAGE, 4).toString()]).toEqual(['AAAA', 'BBBB']);
    munmap(map);
    close(dmabuf); close(a); close(b);
  });

  it('is refused by the kernel for an unsealed memfd or an unaligned range, with errno errors', () => {
    const before = listOpenFds();
    const unsealed = memfd(2, false);
    expect(() => udmabufCreate(unsealed, 0, PAGE)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'ioctl(UDMABUF_CREATE)' }));
    const sealed = memfd(2);
    expect(() => udmabufCreate(sealed, 100, PAGE)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    close(unsealed); close(sealed);
    expect(listOpenFds()).toEqual(before);
  });
});

describe('sync_file and sw_sync', () => {
  it('gives real fences: active until the timeline advances, then signalled, with a poll that does not block', async () => {
    const timeline = new SwSyncTimeline();
    const fence = timeline.createFence(1, 'lab-fence');
    try {
      expect(syncFileInfo(fence)).toMatchObject({ status: 0, fences: [{ driverName: 'sw_sync', status: 0 }] });
      const wait = waitFence(fence, 5000);
      let settled = false;
      void wait.result.then(() => { settled = true; });
      await new Promise((r) => setTimeout(r, 100));
      expect(settled).toBe(false);
      timeline.advance();
      expect(await wait.result).toBe('signalled');
      expect(syncFileInfo(fence).status).toBe(1);
      expect(syncFileInfo(fence).fences[0].timestampNs).toBeGreaterThan(0n);
    } finally {
      close(fence);
      timeline.close();
    }
  });

  it('merges fences and times out a fence that never signals', async () => {
    const timeline = new SwSyncTimeline();
    const f1 = timeline.createFence(1);
    const f2 = timeline.createFence(2);
    const merged = syncMerge('both', f1, f2);
    timeline.advance();
    expect(syncFileInfo(merged).status).toBe(0);
    expect(await waitFence(merged, 100).result).toBe('timeout');
    timeline.advance();
    expect(await waitFence(merged, 1000).result).toBe('signalled');
    [f1, f2, merged].forEach(close);
    timeline.close();
  });

  it('attaches a fence to a dmabuf and exports it back (implicit sync)', async () => {
    const m = memfd(1);
    const dmabuf = udmabufCreate(m, 0, PAGE);
    const timeline = new SwSyncTimeline();
    const fence = timeline.createFence(1);
    try {
      dmabufImportSyncFile(dmabuf, 'write', fence);
      const exported = dmabufExportSyncFile(dmabuf, 'read');
      expect(syncFileInfo(exported).status).toBe(0);
      timeline.advance();
      expect(await waitFence(exported, 1000).result).toBe('signalled');
      close(exported);
    } finally {
      close(fence); close(dmabuf); close(m);
      timeline.close();
    }
  });
});
