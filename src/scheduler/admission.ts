// Per-function admission: at most `maxConcurrency` invocations of a function
// run at once, at most `maxQueue` wait their turn, and the rest are refused
// at once with THROTTLED — so one function's burst cannot take every executor
// or grow the daemon's memory without bound.
import { ThrottledError } from '../protocol/errors.js';

export interface AdmissionLimits {
  /** Invocations of the function that may run at once; undefined: no limit. */
  maxConcurrency?: number;
  maxQueue: number;
}

/** Weight of the newest duration in the running average behind retry-after hints. */
const DURATION_SMOOTHING = 0.2;

class Gate {
  running = 0;
  readonly waiting: Array<() => void> = [];
  averageMs = 0;

  idle(): boolean {
    return this.running === 0 && this.waiting.length === 0;
  }
}

export class Admission {
  private readonly gates = new Map<string, Gate>();

  /** Invocations of the function waiting at its concurrency limit. */
  queued(fn: string): number {
    return this.gates.get(fn)?.waiting.length ?? 0;
  }

  /** Runs `task` when the function has room, or throws THROTTLED if even its queue is full. */
  run<T>(fn: string, limits: AdmissionLimits, task: () => Promise<T>): Promise<T> {
    // Most functions set no limit: no gate, and no extra promise on the invocation path.
    return limits.maxConcurrency === undefined ? task() : this.gated(fn, limits.maxConcurrency, limits.maxQueue, task);
  }

  private async gated<T>(fn: string, maxConcurrency: number, maxQueue: number, task: () => Promise<T>): Promise<T> {
    let gate = this.gates.get(fn);
    if (!gate) {
      gate = new Gate();
      this.gates.set(fn, gate);
    }
    if (gate.running < maxConcurrency) {
      gate.running++;
    } else if (gate.waiting.length < maxQueue) {
      // The slot is handed over by the finishing invocation: running stays counted.
      await new Promise<void>((resolve) => gate.waiting.push(resolve));
    } else {
      const retryAfterMs = Math.max(1, Math.ceil(gate.averageMs * (1 + gate.waiting.length / maxConcurrency)));
      throw new ThrottledError(
        `function "${fn}" is at its concurrency limit (${maxConcurrency} running, ${gate.waiting.length} queued)`,
        { retryAfterMs },
      );
    }
    const started = performance.now();
    try {
      return await task();
    } finally {
      gate.averageMs += DURATION_SMOOTHING * (performance.now() - started - gate.averageMs);
      const next = gate.waiting.shift();
      if (next) next();
      else gate.running--;
      if (gate.idle()) this.gates.delete(fn);
    }
  }
}
