// The embedding examples run as documented and their frames reach the compositor.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startWeston } from '../src/embedded/compositors.js';
import { sleep } from './helpers.js';

// Both examples fill one 640x480 frame with the same blue and show it in a window.
it.each(['present-memfd-frames', 'vmm-blob-scanout'])('examples/%s shows its frame in weston', async (name) => {
  const weston = await startWeston({ width: 800, height: 600 });
  const example = spawn(process.execPath, [join(import.meta.dirname, `../dist-examples/examples/${name}.js`)],
    { env: weston.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  example.stderr.on('data', (d) => { stderr += d; });
  try {
    let blue = 0;
    for (let attempt = 0; attempt < 40 && blue < 640 * 480; attempt++) {
      await sleep(100);
      const image = await weston.capture();
      blue = 0;
      for (let i = 0; i < image.data.length; i += 4) {
        if (image.data[i] === 0 && image.data[i + 1] === 128 && image.data[i + 2] === 255) blue++;
      }
    }
    expect(blue, stderr).toBe(640 * 480);
  } finally {
    example.kill('SIGKILL');
    await weston.stop();
  }
}, 30_000);
