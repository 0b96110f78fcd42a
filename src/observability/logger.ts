// The daemon's log: pino JSON lines on stdout. Guest output never goes here;
// it travels in each invocation's report.
import { pino, type Logger } from 'pino';

export type { Logger };

/** Log lines are written in batches of at least this many bytes… */
const BUFFER_BYTES = 8 * 1024;
/** …or at least this often, so a quiet daemon's log is never stale for long. */
const FLUSH_INTERVAL_MS = 250;

export interface DaemonLogger {
  log: Logger;
  /** Writes whatever is buffered (call before exiting). */
  flush(): void;
}

// One REPORT line per invocation: an unbuffered write per line would cost a
// syscall (and a thread-pool wake) on every call.
export function createLogger(level = process.env.KILN_LOG_LEVEL ?? 'info'): DaemonLogger {
  const destination = pino.destination({ dest: 1, minLength: BUFFER_BYTES, sync: false });
  const timer = setInterval(() => destination.flush(), FLUSH_INTERVAL_MS);
  timer.unref();
  const log = pino({ level, base: { service: 'kiln' } }, destination);
  return {
    log,
    flush: () => {
      clearInterval(timer);
      destination.flushSync();
    },
  };
}
