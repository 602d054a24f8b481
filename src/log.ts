// Structured logs (pino): quiet by default, pretty on a terminal, JSON otherwise.
import pino from 'pino';

const level = process.env.WLSCANOUT_LOG_LEVEL ?? 'warn';

function createLogger(levelName: string): pino.Logger {
  if (process.stderr.isTTY) {
    return pino({ level: levelName }, pino.transport({ target: 'pino-pretty', options: { destination: 2 } }));
  }
  return pino({ level: levelName }, pino.destination(2));
}

export let log = createLogger(level);

export function setLogLevel(levelName: string): void {
  if (!Object.keys(pino.levels.values).includes(levelName) && levelName !== 'silent') {
    throw new Error(`unknown log level '${levelName}' (use one of ${Object.keys(pino.levels.values).join(', ')}, silent)`);
  }
  log.level = levelName;
}
