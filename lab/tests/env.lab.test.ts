import fs from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('lab VM', () => {
  it('has udmabuf, sw_sync, dma-heaps and a vgem render node', () => {
    expect(fs.existsSync('/dev/udmabuf')).toBe(true);
    expect(fs.existsSync('/sys/kernel/debug/sync/sw_sync')).toBe(true);
    expect(fs.existsSync('/dev/dma_heap/system')).toBe(true);
    expect(fs.existsSync('/dev/dri/renderD128')).toBe(true);
  });
});
