// The lab tier's tests, run inside the lab VM (lab/boot.sh) by test/lab.test.ts. Plain .mjs: the project is
// mounted read-only there, and a TypeScript config would be bundled into node_modules first.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  cacheDir: '/tmp/vitest-cache',
  test: {
    include: ['lab/tests/**/*.lab.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    maxWorkers: 1,
    reporters: ['default', ['json', { outputFile: '/mnt/lab-results.json' }]],
  },
});
