import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // One file at a time: several start QEMU guests or the lab VM (TCG), whose timing-sensitive peers (QEMU
    // waits at most 1 s for an UpdateDMABUF answer) must not share the two cores with another suite.
    fileParallelism: false,
  },
});
