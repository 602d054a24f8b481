// The capture tap: a frame sink that hands each frame to the presenter and to a capture session. 'committed'
// follows the presenter, so a guest paced by the display is not slowed by the recorder.
import { EventEmitter } from 'node:events';
import type { FrameSink, ScanoutFrame } from '../source/frame.js';
import { shareFrame } from '../source/frame-share.js';
import type { CaptureSession } from './session.js';

export class FrameTee extends EventEmitter<{ committed: [ScanoutFrame] }> implements FrameSink {
  private readonly forward = (frame: ScanoutFrame): void => { this.emit('committed', frame); };

  constructor(private readonly display: FrameSink, private readonly capture: CaptureSession) {
    super();
    display.on('committed', this.forward);
  }

  present(frame: ScanoutFrame): void {
    const [shown, captured] = shareFrame(frame, 2);
    this.capture.present(captured);
    this.display.present(shown);
  }

  close(): void {
    this.display.off('committed', this.forward);
  }
}
