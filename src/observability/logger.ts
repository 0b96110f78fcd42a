// The daemon's log: pino JSON lines on stdout. Guest output never goes here;
// it travels in each invocation's report.
import { pino, type DestinationStream, type Logger } from 'pino';

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

/**
 * Gathers lines and hands them to the destination joined, BUFFER_BYTES at a
 * time. One REPORT line is written per invocation: unbuffered, that is a
 * syscall each; buffered by sonic-boom itself, each line is appended to one
 * growing string whose byte length is measured again on every write
 * (profiled at about a third of the logging cost on the network thread).
 */
class LineBatch implements DestinationStream {
  private lines: string[] = [];
  private size = 0;

  constructor(private readonly sink: DestinationStream) {}

  write(line: string): void {
    this.lines.push(line);
    this.size += line.length;
    if (this.size >= BUFFER_BYTES) this.drain();
  }

  drain(): void {
    if (this.size === 0) return;
    const chunk = this.lines.join('');
    this.lines = [];
    this.size = 0;
    this.sink.write(chunk);
  }
}

export function createLogger(level = process.env.KILN_LOG_LEVEL ?? 'info'): DaemonLogger {
  const destination = pino.destination({ dest: 1, minLength: 0, sync: false });
  const batch = new LineBatch(destination);
  const timer = setInterval(() => batch.drain(), FLUSH_INTERVAL_MS);
  timer.unref();
  const log = pino({ level, base: { service: 'kiln' } }, batch);
  return {
    log,
    flush: () => {
      clearInterval(timer);
      batch.drain();
      destination.flushSync();
    },
  };
}
