// The daemon's log: pino JSON lines on stdout. Guest output never goes here;
// it travels in each invocation's report.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = process.env.KILN_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'kiln' } });
}
