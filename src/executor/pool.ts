// A pool of executor threads. Tasks wait in a FIFO queue on the network
// thread and are handed to the least-loaded executor, up to
// EXECUTOR_PIPELINE_DEPTH at a time so an executor finishing one task finds
// the next already waiting. An executor runs its tasks in order, so the
// oldest unanswered task is the one running: at a deadline only it fails,
// and the tasks queued behind it go back to the pool's queue untouched.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { GuestConfig, Invocation } from '../engine/index.js';
import type { ReportSummary } from '../metering/report.js';
import { EncodedAnswer } from '../protocol/codec.js';
import { EXECUTOR_PIPELINE_DEPTH, EXECUTOR_STALL_MS, MAX_QUEUED_TASKS, PREPARE_TIMEOUT_MS } from '../limits.js';
import { errorFromWire, InternalError, KilnError, ThrottledError, TimeoutError, UnavailableError } from '../protocol/errors.js';
import type { GuestKind } from '../protocol/methods.js';
import type { InvokeTask, PrepareTask, Task, TaskReply } from './messages.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

/** A finished invocation: its answer, encoded by the executor, and the summary for the REPORT log. */
export interface Executed {
  answer: EncodedAnswer;
  summary: ReportSummary;
}

export interface FunctionRef {
  key: string;
  config: GuestConfig;
  timeoutMs: number;
  /** The stored prepared form (what prepare() returned at deploy). */
  loadPrepared: () => Uint8Array;
}

export interface Prepared {
  kind: GuestKind;
  /** The prepared form to store; executors compile it instead of preparing again. */
  prepared: Uint8Array;
}

interface Pending {
  task: Task;
  fn: FunctionRef | undefined;
  timeoutMs: number;
  resolve: (value: never) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Handed to this worker and not yet answered, oldest (running) first. */
  inflight: Pending[];
  /** When the oldest in-flight task became the running one. */
  headSince: number;
  timer: NodeJS.Timeout | undefined;
  /** Keys this worker holds prepared (or has been sent the artifact for). */
  keys: Set<string>;
  /** Tasks to post at the end of this tick, in one message. */
  outbox: Task[];
}

export class ExecutorPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private flushScheduled = false;

  constructor(size = availableParallelism()) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const slot = { inflight: [], headSince: 0, timer: undefined, outbox: [] } as unknown as Slot;
      this.startWorker(slot);
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** Validates, rewrites and (for components) initialises an artifact in a worker, never on the network thread. */
  prepare(artifact: Uint8Array, config: GuestConfig): Promise<Prepared> {
    const task: PrepareTask = { op: 'prepare', id: this.nextId++, artifact, config };
    return this.submit(task, undefined, PREPARE_TIMEOUT_MS);
  }

  invoke(fn: FunctionRef, invocation: Invocation): Promise<Executed> {
    const task: InvokeTask = { op: 'invoke', id: this.nextId++, key: fn.key, invocation };
    return this.submit(task, fn, fn.timeoutMs);
  }

  /** Fails everything queued or in flight and stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    const shutdown = () => new UnavailableError('the daemon is shutting down');
    for (const pending of this.queue.splice(0)) pending.reject(shutdown());
    await Promise.all(
      this.slots.map(async (slot) => {
        clearTimeout(slot.timer);
        for (const pending of slot.inflight.splice(0)) pending.reject(shutdown());
        await slot.worker.terminate();
      }),
    );
  }

  private submit<T>(task: Task, fn: FunctionRef | undefined, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new UnavailableError('the daemon is shutting down'));
    if (this.queue.length >= MAX_QUEUED_TASKS) {
      return Promise.reject(new ThrottledError(`the daemon has ${MAX_QUEUED_TASKS} invocations waiting for an executor`, { retryAfterMs: 100 }));
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ task, fn, timeoutMs, resolve: resolve as (value: never) => void, reject });
      this.pump();
    });
  }

  private startWorker(slot: Slot): void {
    const worker = new Worker(WORKER_URL);
    worker.on('message', (reply: TaskReply) => this.onReply(slot, reply));
    worker.on('error', (error) => this.replace(slot, new InternalError(`an executor crashed: ${error.message}`)));
    worker.unref();
    slot.worker = worker;
    slot.keys = new Set();
  }

  /** The executor for the next task: least loaded, then one that holds the function; none if all are full or stalled. */
  private pick(fn: FunctionRef | undefined, now: number): Slot | undefined {
    let best: Slot | undefined;
    let bestScore = Infinity;
    for (const slot of this.slots) {
      const load = slot.inflight.length;
      if (load >= EXECUTOR_PIPELINE_DEPTH) continue;
      // Busy with a slow guest, or preparing (compiling and running init can take seconds).
      if (load > 0 && (now - slot.headSince > EXECUTOR_STALL_MS || slot.inflight.some((p) => p.task.op === 'prepare'))) continue;
      const score = load * 2 + (fn && slot.keys.has(fn.key) ? 0 : 1);
      if (score < bestScore) {
        best = slot;
        bestScore = score;
      }
    }
    return best;
  }

  private pump(): void {
    const now = performance.now();
    while (this.queue.length > 0) {
      const slot = this.pick(this.queue[0]!.fn, now);
      if (!slot) return;
      this.dispatch(slot, this.queue.shift()!, now);
    }
  }

  private dispatch(slot: Slot, pending: Pending, now: number): void {
    const { task, fn } = pending;
    if (task.op === 'invoke' && fn && !slot.keys.has(fn.key)) {
      try {
        task.prepare = { prepared: fn.loadPrepared(), config: fn.config };
      } catch (error) {
        pending.reject(error instanceof KilnError ? error : new InternalError("cannot read the function's prepared form"));
        return;
      }
      slot.keys.add(fn.key);
    }
    slot.inflight.push(pending);
    if (slot.inflight.length === 1) this.startHead(slot, now);
    slot.outbox.push(task);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  // Tasks dispatched in one tick travel in one message: one thread wake-up for many.
  private flush(): void {
    this.flushScheduled = false;
    for (const slot of this.slots) {
      if (slot.outbox.length === 0) continue;
      slot.worker.postMessage(slot.outbox);
      for (const task of slot.outbox) if (task.op === 'invoke') delete task.prepare;
      slot.outbox = [];
    }
  }

  private startHead(slot: Slot, now: number): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.headSince = now;
    const head = slot.inflight[0];
    if (head) slot.timer = setTimeout(() => this.onTimeout(slot), head.timeoutMs);
  }

  private onReply(slot: Slot, reply: TaskReply): void {
    const pending = slot.inflight[0];
    if (!pending || pending.task.id !== reply.id) return; // from a worker already replaced
    slot.inflight.shift();
    this.startHead(slot, performance.now());
    switch (reply.op) {
      case 'need-artifact':
        slot.keys.delete(pending.fn!.key);
        this.queue.unshift(pending);
        break;
      case 'invoke':
        // Structured cloning keeps the fields, not the class.
        pending.resolve({ answer: new EncodedAnswer(reply.answer.bytes, reply.answer.isError), summary: reply.summary } as never);
        break;
      case 'prepare':
        pending.resolve({ kind: reply.kind, prepared: reply.prepared } as never);
        break;
      case 'error':
        pending.reject(errorFromWire(reply.error));
        break;
    }
    this.pump();
  }

  // V8 cannot interrupt a guest that never returns: the only sure stop is to
  // terminate its thread. The replacement starts empty and the queue refills it.
  private onTimeout(slot: Slot): void {
    const head = slot.inflight[0];
    const seconds = head ? head.timeoutMs / 1000 : 0;
    this.replace(
      slot,
      head?.task.op === 'prepare'
        ? new TimeoutError(`preparing the function (compiling and running its initialisation) took longer than ${seconds} s`)
        : new TimeoutError(`the invocation exceeded its ${head?.timeoutMs} ms timeout`, { timeoutMs: head?.timeoutMs }),
    );
  }

  /** Fails the running task with `error`, requeues the ones behind it, and starts a fresh worker. */
  private replace(slot: Slot, error: Error): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    const [running, ...waiting] = slot.inflight.splice(0);
    running?.reject(error);
    this.queue.unshift(...waiting);
    slot.outbox = [];
    const old = slot.worker;
    old.removeAllListeners('message');
    old.removeAllListeners('error');
    old.on('error', () => {}); // a dying worker may still report; nobody is listening
    void old.terminate();
    if (this.closed) return;
    this.startWorker(slot);
    this.pump();
  }
}
