// Frames an output really showed, counted from the compositor's side: wlr-screencopy's copy_with_damage answers
// only once the output has changed, so the number of copies in a time window is the number of new frames on
// screen, whoever drew them (QEMU's GTK UI or wlscanout). It costs the compositor a copy per frame, so it runs
// after the CPU measurement, not during it.
import { Connection } from '../src/wayland/connection.js';
import { bindGlobals } from '../src/present/globals.js';
import { onShmOffered, shmTarget, type ShmTarget } from '../src/capture/output-capture.js';

/** New frames shown on the compositor's first output over `seconds`. */
export async function countOutputFrames(display: string, seconds: number): Promise<number> {
  const connection = new Connection(display);
  let target = null as ShmTarget | null; // made at the first copy, reused for the rest
  try {
    const globals = await bindGlobals(connection);
    const manager = globals.screencopyManager;
    const output = [...globals.outputs.values()][0]?.output;
    if (!manager || !output) throw new Error('output frames: the compositor offers no wlr-screencopy or no output');
    return await new Promise<number>((resolve, reject) => {
      let frames = 0;
      let counting = false;
      const timer = setTimeout(() => { counting = false; resolve(frames); }, seconds * 1000 + 1000);
      setTimeout(() => { counting = true; }, 1000); // the first copy answers at once: start counting after it
      const onError = (e: Error): void => { clearTimeout(timer); reject(e); };
      connection.once('error', onError);
      const next = (): void => {
        const frame = manager.captureOutput(0, output);
        onShmOffered(frame, (shm) => {
          if (!shm) return onError(new Error('output frames: wlr-screencopy offered no 32-bit wl_shm format'));
          target ??= shmTarget(globals, shm.width, shm.height, shm.stride, shm.format);
          frame.copyWithDamage(target.buffer);
        });
        frame.on({
          ready: () => {
            frame.destroy();
            if (counting) frames++;
            next();
          },
          failed: () => {
            frame.destroy();
            onError(new Error('output frames: the compositor failed a wlr-screencopy copy'));
          },
        });
      };
      next();
    });
  } finally {
    target?.release();
    connection.close();
  }
}
