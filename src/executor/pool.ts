// A pool of executor threads. Tasks wait on the network thread, one queue per
// function served round robin (src/scheduler/run-queue.ts), and are handed to
// the least-loaded executor, preferring one that holds the function. Quick
// tasks are pipelined, up to EXECUTOR_PIPELINE_DEPTH at a time, so an executor
// finishing one finds the next already waiting; nothing is queued behind a
// slow one (a function whose recent invocations ran past EXECUTOR_STALL_MS, a
// prepare), and no function may take every executor, so a CPU-heavy function
// at full load leaves one for the others. An executor runs its tasks in
// order, so the oldest unanswered task is the one running: at a deadline only
// it fails, and the tasks queued behind it go back to the queue untouched.
//
// The pool also keeps the live view of every function's instances: each
// executor reports what it holds when that changes (src/executor/instances.ts
// decides), and provisioned instances are spread over the executors and
// restored again on an executor that replaces a stopped one.
//
// The hand-off to an executor goes through two shared-memory rings, one each
// way (src/executor/ring.ts), without a message per task: invocations and
// their replies take them as flat records (messages.ts). The rest (prepare,
// provision, forget, an invocation that carries its function's load or does
// not fit) goes by message, and so do held notices, which need no order.
// What needs order keeps it:
// - To an executor, every task, ring or message, takes the next number of
//   one sequence, and the executor runs them in that order: ring tasks
//   behind a message that is still on its way wait for it.
// - From an executor, replies come in the order of its tasks, so the pool
//   takes the oldest in-flight task's reply from whichever way it comes; a
//   later one that arrives first waits for it.
// Tasks leave once per loop turn. Replies are read when the doorbell rings
// and then, while they keep coming, once every turn without one. At a
// deadline the ring is read before the executor is stopped, so only a task
// that has not answered fails; a replacement gets new rings, and nothing its
// predecessor writes later is read.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { GuestConfig, Invocation } from '../engine/index.js';
import type { ReportSummary } from '../metering/report.js';
import { EncodedAnswer } from '../protocol/codec.js';
import { EXECUTOR_PIPELINE_DEPTH, EXECUTOR_STALL_MS, MAX_QUEUED_TASKS, PREPARE_TIMEOUT_MS } from '../limits.js';
import { errorFromWire, InternalError, KilnError, ThrottledError, TimeoutError, UnavailableError } from '../protocol/errors.js';
import type { GuestKind } from '../protocol/methods.js';
import { RunQueue } from '../scheduler/run-queue.js';
import {
  DOORBELL,
  readInvokeReply,
  replyId,
  writeInvokeTask,
  type ForgetTask,
  type FunctionLoad,
  type Held,
  type InvokeTask,
  type PostedTask,
  type PrepareTask,
  type ProvisionTask,
  type Task,
  type TaskReply,
  type WorkerMessage,
} from './messages.js';
import { Ring } from './ring.js';
import type { WorkerOptions } from './worker.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);
/** Data bytes per ring: a full pipeline of ordinary invocations fits many times over. */
const RING_BYTES = 1 << 20;

/** A finished invocation: its answer, encoded by the executor, and the summary for the REPORT log. */
export interface Executed {
  answer: EncodedAnswer;
  summary: ReportSummary;
}

export interface FunctionRef {
  key: string;
  config: GuestConfig;
  timeoutMs: number;
  idleTtlMs: number;
  /** The stored prepared form (what prepare() returned at deploy). */
  loadPrepared: () => Uint8Array;
  /**
   * Set once a newer version replaced it or it was deleted (after forget()):
   * invocations already on their way still run, but no executor keeps it.
   */
  retired?: boolean;
}

export interface Prepared {
  kind: GuestKind;
  /** The prepared form to store; executors compile it instead of preparing again. */
  prepared: Uint8Array;
}

/** What the executors hold for one function version, over all of them, and what they dropped since it was deployed. */
export interface InstanceStats {
  instances: number;
  instanceBytes: number;
  executors: number;
  reaped: number;
  evicted: number;
}

export interface ExecutorPoolOptions {
  /** Executor threads; default one per core. */
  size?: number;
  /** Bytes that idle instances and pooled memories may hold, over all executors. */
  memoryBudgetBytes: number;
}

interface Pending {
  task: Task;
  fn: FunctionRef | undefined;
  /** Set for a task that must run on this executor (a provisioned share). */
  pinned?: Slot;
  /** Expected to hold its executor for a while (decided at dispatch): nothing is pipelined behind it. */
  slow: boolean;
  timeoutMs: number;
  resolve: (value: never) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Invoke tasks to the worker, written here. */
  tasks: Ring;
  /** Its invoke replies, read here. */
  replies: Ring;
  /** The sequence number of the next task sent to the worker, by ring or by message. */
  seq: number;
  /** Replies that came by message ahead of ring replies still unread, oldest first. */
  early: TaskReply[];
  /** Replies came this turn: read again next turn, without waiting for the doorbell. */
  polling: boolean;
  /** Handed to this worker and not yet answered, oldest (running) first. */
  inflight: Pending[];
  /** When the oldest in-flight task became the running one. */
  headSince: number;
  timer: NodeJS.Timeout | undefined;
  /** Keys this worker holds prepared (or has been sent the artifact for). */
  keys: Set<string>;
  /** What it last reported holding ready, by key. */
  held: Map<string, Held>;
  /** Tasks to send at the end of this loop turn, all together. */
  outbox: Array<Task | ForgetTask>;
  /** In-flight tasks that are slow. */
  slow: number;
  /** In-flight tasks by function key. */
  running: Map<string, number>;
}

/** Weight of the newest run time in a function's running average. */
const RUN_TIME_SMOOTHING = 0.3;
const PREPARE_QUEUE = '';

/**
 * One executor per core, plus one: a function may occupy all but one
 * executor, so one CPU-heavy function at full load still gets every core.
 */
export const defaultExecutors = (): number => availableParallelism() + 1;

export class ExecutorPool {
  private readonly slots: Slot[] = [];
  private readonly queue = new RunQueue<Pending>((pending) => pending.fn?.key ?? PREPARE_QUEUE);
  /** Executors one function may occupy at once: all but one, so others always find one. */
  private readonly maxPerFunction: number;
  /** Executors with tasks of a function in flight, by key. */
  private readonly occupied = new Map<string, number>();
  /** Running average of a function's run time on an executor, ms, by key. */
  private readonly runTimes = new Map<string, number>();
  private nextId = 1;
  private closed = false;
  private flushScheduled = false;
  private readonly workerOptions: Omit<WorkerOptions, 'tasks' | 'replies'>;
  /** Functions with provisioned instances, by key: each executor keeps its share restored. */
  private readonly provisioned = new Map<string, { fn: FunctionRef; count: number }>();
  private readonly dropped = new Map<string, { reaped: number; evicted: number }>();

  constructor(options: ExecutorPoolOptions) {
    const size = Math.max(1, options.size ?? defaultExecutors());
    this.maxPerFunction = Math.max(1, size - 1);
    this.workerOptions = { memoryBudgetBytes: Math.floor(options.memoryBudgetBytes / size) };
    for (let i = 0; i < size; i++) {
      const slot = { inflight: [], headSince: 0, timer: undefined, outbox: [], slow: 0, running: new Map() } as unknown as Slot;
      this.slots.push(slot);
      this.startWorker(slot);
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

  /**
   * Keeps `count` instances of the function restored, spread over the
   * executors, from now until forget(); resolves once they are. 0 stops.
   */
  async provision(fn: FunctionRef, count: number): Promise<void> {
    if (count === 0) {
      this.provisioned.delete(fn.key);
      return;
    }
    this.provisioned.set(fn.key, { fn, count });
    await Promise.all(this.slots.map((slot) => this.provisionOn(slot, fn.key)));
  }

  /** Drops a function version from every executor (a redeploy replaced it, or it was deleted). */
  forget(key: string): void {
    this.provisioned.delete(key);
    this.dropped.delete(key);
    this.runTimes.delete(key);
    for (const slot of this.slots) {
      slot.held.delete(key);
      if (slot.keys.delete(key)) this.post(slot, { op: 'forget', key });
    }
  }

  /** The live view of one function version's instances. */
  stats(key: string): InstanceStats {
    const stats: InstanceStats = { instances: 0, instanceBytes: 0, executors: 0, reaped: 0, evicted: 0, ...this.dropped.get(key) };
    for (const slot of this.slots) {
      if (slot.keys.has(key)) stats.executors++;
      const held = slot.held.get(key);
      if (held) {
        stats.instances += held.ready;
        stats.instanceBytes += held.bytes;
      }
    }
    return stats;
  }

  /** Fails everything queued or in flight and stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    const shutdown = () => new UnavailableError('the daemon is shutting down');
    for (const pending of this.queue.drain()) pending.reject(shutdown());
    await Promise.all(
      this.slots.map(async (slot) => {
        clearTimeout(slot.timer);
        for (const pending of this.takeInflight(slot)) pending.reject(shutdown());
        await slot.worker.terminate();
      }),
    );
  }

  private submit<T>(task: Task, fn: FunctionRef | undefined, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new UnavailableError('the daemon is shutting down'));
    if (this.queue.size >= MAX_QUEUED_TASKS) {
      return Promise.reject(new ThrottledError(`the daemon has ${MAX_QUEUED_TASKS} invocations waiting for an executor`, { retryAfterMs: 100 }));
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ task, fn, slow: false, timeoutMs, resolve: resolve as (value: never) => void, reject });
      this.pump();
    });
  }

  /** Starts the executor of a slot; resolves per provisioned key once its share is restored there. */
  private startWorker(slot: Slot): Map<string, Promise<void>> {
    const tasks = Ring.allocate(RING_BYTES);
    const replies = Ring.allocate(RING_BYTES);
    const workerData: WorkerOptions = { ...this.workerOptions, tasks: tasks.buffer, replies: replies.buffer };
    const worker = new Worker(WORKER_URL, { workerData });
    worker.on('message', (message: WorkerMessage) => this.onMessage(slot, message));
    worker.on('error', (error) => this.onCrash(slot, error));
    worker.unref();
    slot.worker = worker;
    slot.tasks = tasks;
    slot.replies = replies;
    slot.seq = 0;
    slot.early = [];
    slot.polling = false;
    slot.keys = new Set();
    slot.held = new Map();
    // A replacement restores the provisioned instances its predecessor held.
    const provisioning = new Map<string, Promise<void>>();
    for (const key of this.provisioned.keys()) {
      const done = this.provisionOn(slot, key);
      done.catch(() => {});
      provisioning.set(key, done);
    }
    return provisioning;
  }

  /** Sends this executor its share of a provisioned function (the first executors take the remainder). */
  private provisionOn(slot: Slot, key: string): Promise<void> {
    const entry = this.provisioned.get(key);
    if (!entry || this.closed) return Promise.resolve();
    const index = this.slots.indexOf(slot);
    const count = Math.floor(entry.count / this.slots.length) + (index < entry.count % this.slots.length ? 1 : 0);
    if (count === 0) return Promise.resolve();
    const task: ProvisionTask = { op: 'provision', id: this.nextId++, key, count };
    return new Promise((resolve, reject) => {
      const pending: Pending = { task, fn: entry.fn, pinned: slot, slow: true, timeoutMs: PREPARE_TIMEOUT_MS, resolve: resolve as (value: never) => void, reject };
      this.dispatch(slot, pending, performance.now());
    });
  }

  /** Whether a task is expected to hold its executor past EXECUTOR_STALL_MS: a prepare or provision, or a function that recently did. */
  private isSlow(pending: Pending): boolean {
    return pending.task.op !== 'invoke' || (this.runTimes.get(pending.task.key) ?? 0) > EXECUTOR_STALL_MS;
  }

  /**
   * The executor for the next task: least loaded, then one that holds the
   * function; none if all are full, busy with something slow, or (for this
   * function) if it already occupies all the executors it may.
   */
  private pick(pending: Pending, now: number): Slot | undefined {
    const { fn } = pending;
    const slow = this.isSlow(pending);
    const atLimit = fn !== undefined && (this.occupied.get(fn.key) ?? 0) >= this.maxPerFunction;
    let best: Slot | undefined;
    let bestScore = Infinity;
    for (const slot of this.slots) {
      const load = slot.inflight.length;
      if (load >= EXECUTOR_PIPELINE_DEPTH) continue;
      // Nothing behind a slow task, nor a slow task behind anything: it would wait, or make others wait, for all of it.
      if (load > 0 && (slow || slot.slow > 0 || now - slot.headSince > EXECUTOR_STALL_MS)) continue;
      if (atLimit && !slot.running.has(fn.key)) continue;
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
    while (this.queue.size > 0) {
      const next = this.queue.next((pending) => this.pick(pending, now));
      if (!next) return;
      this.dispatch(next[1], next[0], now);
    }
  }

  private dispatch(slot: Slot, pending: Pending, now: number): void {
    const { task, fn } = pending;
    let dropAfter = false;
    if (task.op !== 'prepare' && fn && !slot.keys.has(fn.key)) {
      try {
        task.load = { prepared: fn.loadPrepared(), config: fn.config, idleTtlMs: fn.idleTtlMs } satisfies FunctionLoad;
      } catch (error) {
        pending.reject(error instanceof KilnError ? error : new InternalError("cannot read the function's prepared form"));
        return;
      }
      // A retired version is loaded for this one task and dropped right after it (the order holds).
      if (fn.retired) dropAfter = true;
      else slot.keys.add(fn.key);
    }
    pending.slow = this.isSlow(pending);
    if (pending.slow) slot.slow++;
    if (fn) {
      const count = slot.running.get(fn.key) ?? 0;
      slot.running.set(fn.key, count + 1);
      if (count === 0) this.occupied.set(fn.key, (this.occupied.get(fn.key) ?? 0) + 1);
    }
    slot.inflight.push(pending);
    if (slot.inflight.length === 1) this.startHead(slot, now);
    this.post(slot, task);
    if (dropAfter) this.post(slot, { op: 'forget', key: fn!.key });
  }

  /** Removes a task from its executor's books (it was answered, or is going back to the queue). */
  private settle(slot: Slot, pending: Pending): void {
    if (pending.slow) slot.slow--;
    const key = pending.fn?.key;
    if (key === undefined) return;
    const count = slot.running.get(key)! - 1;
    if (count > 0) {
      slot.running.set(key, count);
      return;
    }
    slot.running.delete(key);
    const occupied = this.occupied.get(key)! - 1;
    if (occupied > 0) this.occupied.set(key, occupied);
    else this.occupied.delete(key);
  }

  /** Every task in flight on an executor, taken off its books, oldest first. */
  private takeInflight(slot: Slot): Pending[] {
    const all = slot.inflight.splice(0);
    for (const pending of all) this.settle(slot, pending);
    return all;
  }

  private post(slot: Slot, task: Task | ForgetTask): void {
    slot.outbox.push(task);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  // Once per loop turn, after the poll phase has delivered every frame and
  // message that was ready (a microtask would run after each one of them):
  // reads the replies still coming, then sends what was dispatched meanwhile,
  // so one turn's tasks cost an executor at most one wake-up.
  private flush(): void {
    // Replies first: what they free the executors for leaves below, this turn.
    let read = 0;
    for (const slot of this.slots) {
      if (!slot.polling) continue;
      slot.polling = false;
      read += this.readReplies(slot);
    }
    if (read > 0) this.pump();
    this.flushScheduled = false;
    for (const slot of this.slots) if (slot.outbox.length > 0) this.send(slot);
    if (this.slots.some((slot) => slot.polling)) this.schedule(); // replies came: look again next turn
  }

  /** Invocations into the ring, the rest (and what does not fit) in one message; the message, if any, is the doorbell. */
  private send(slot: Slot): void {
    let posted: PostedTask[] | undefined;
    let wrote = false;
    for (const task of slot.outbox) {
      const seq = slot.seq;
      slot.seq = (seq + 1) >>> 0;
      if (task.op === 'invoke' && !task.load && writeInvokeTask(slot.tasks, seq, task)) wrote = true;
      else (posted ??= []).push({ seq, task });
    }
    slot.outbox = [];
    const asleep = wrote && slot.tasks.wake();
    if (posted) {
      slot.worker.postMessage(posted);
      for (const { task } of posted) if ('load' in task) delete task.load;
    } else if (asleep) {
      slot.worker.postMessage(DOORBELL);
    }
  }

  private startHead(slot: Slot, now: number): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.headSince = now;
    const head = slot.inflight[0];
    if (head) slot.timer = setTimeout(() => this.onTimeout(slot), head.timeoutMs);
  }

  private onMessage(slot: Slot, message: WorkerMessage): void {
    if (message === DOORBELL) {
      if (this.readReplies(slot) > 0) this.pump();
      return;
    }
    if (message.op === 'held') {
      if (!slot.keys.has(message.key)) return; // forgotten since
      slot.held.set(message.key, message.held);
      if (message.reaped > 0 || message.evicted > 0) {
        const dropped = this.dropped.get(message.key) ?? { reaped: 0, evicted: 0 };
        dropped.reaped += message.reaped;
        dropped.evicted += message.evicted;
        this.dropped.set(message.key, dropped);
      }
      return;
    }
    // Structured cloning keeps the fields, not the class.
    if (message.op === 'invoke') message.answer = new EncodedAnswer(message.answer.bytes, message.answer.isError);
    slot.early.push(message);
    if (this.readReplies(slot) > 0) this.pump();
  }

  /**
   * Handles the worker's replies that are here, in the order of its tasks,
   * and returns how many. After some, it looks again next turn rather than
   * sleeping: a busy worker then need not ring.
   */
  private readReplies(slot: Slot): number {
    const ring = slot.replies;
    let count = 0;
    for (;;) {
      const head = slot.inflight[0];
      if (head && slot.early[0]?.id === head.task.id) {
        this.onReply(slot, head, slot.early.shift()!);
        count++;
        continue;
      }
      const at = ring.peek();
      if (at >= 0) {
        // Not the head's: the head's reply is a message on its way, whose arrival reads on.
        if (head?.task.op !== 'invoke' || replyId(ring, at) !== head.task.id) return count;
        const { config } = head.fn!;
        const { answer, summary } = readInvokeReply(ring, at, {
          requestId: head.task.invocation.requestId,
          function: config.functionName,
          version: config.functionVersion,
        });
        ring.release(at);
        this.onReply(slot, head, { id: head.task.id, op: 'invoke', answer, summary });
        count++;
        continue;
      }
      if (count > 0) {
        slot.polling = true;
        this.schedule();
        return count;
      }
      if (ring.sleep()) return 0;
    }
  }

  /** Takes the oldest in-flight task, `pending`, off the executor with its reply. */
  private onReply(slot: Slot, pending: Pending, reply: TaskReply): void {
    const now = performance.now();
    slot.inflight.shift();
    this.settle(slot, pending);
    if (pending.task.op === 'invoke' && reply.op === 'invoke' && !pending.fn?.retired) this.recordRunTime(pending.task.key, now - slot.headSince);
    this.startHead(slot, now);
    switch (reply.op) {
      case 'need-artifact':
        slot.keys.delete(pending.fn!.key);
        if (pending.pinned && pending.fn!.retired) pending.resolve(undefined as never);
        else if (pending.pinned) this.dispatch(slot, pending, now);
        else this.queue.requeue([pending]);
        break;
      case 'invoke':
        pending.resolve({ answer: reply.answer, summary: reply.summary } as never);
        break;
      case 'prepare':
        pending.resolve({ kind: reply.kind, prepared: reply.prepared } as never);
        break;
      case 'provision':
        pending.resolve(undefined as never);
        break;
      case 'error':
        pending.reject(errorFromWire(reply.error));
        break;
    }
  }

  private recordRunTime(key: string, ms: number): void {
    const average = this.runTimes.get(key);
    this.runTimes.set(key, average === undefined ? ms : average + RUN_TIME_SMOOTHING * (ms - average));
  }

  // V8 cannot interrupt a guest that never returns: the only sure stop is to
  // terminate its thread. The replacement starts empty and the queue refills it.
  private onTimeout(slot: Slot): void {
    const head = slot.inflight[0];
    // Its reply may be here already, unread: in the ring, or in a message the
    // loop has not handled yet (timers run before the poll phase). So look one
    // turn later: if it finished, nothing need stop.
    setImmediate(() => {
      if (!head || slot.inflight[0] !== head) return; // answered meanwhile, or replaced
      if (this.readReplies(slot) > 0) {
        this.pump();
        return;
      }
      this.stop(slot, head);
    });
  }

  private stop(slot: Slot, head: Pending): void {
    const seconds = head.timeoutMs / 1000;
    this.replace(
      slot,
      head.task.op !== 'invoke'
        ? new TimeoutError(`${head.task.op === 'prepare' ? 'preparing' : 'provisioning'} the function took longer than ${seconds} s`)
        : new TimeoutError(`the invocation exceeded its ${head.timeoutMs} ms timeout`, { timeoutMs: head.timeoutMs }),
    );
  }

  private onCrash(slot: Slot, error: Error): void {
    // What it answered before it stopped stands: the oldest task left is the one it was running.
    this.readReplies(slot);
    this.replace(slot, new InternalError(`an executor crashed: ${error.message}`));
  }

  /** Fails the running task with `error`, requeues the ones behind it, and starts a fresh worker. */
  private replace(slot: Slot, error: Error): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    const [running, ...waiting] = this.takeInflight(slot);
    running?.reject(error);
    if (running?.task.op === 'invoke' && !running.fn?.retired) this.recordRunTime(running.task.key, running.timeoutMs);
    const pinned = waiting.filter((pending) => pending.pinned);
    this.queue.requeue(waiting.filter((pending) => !pending.pinned));
    slot.outbox = [];
    const old = slot.worker;
    old.removeAllListeners('message');
    old.removeAllListeners('error');
    old.on('error', () => {}); // a dying worker may still report; nobody is listening
    void old.terminate();
    if (this.closed) {
      for (const pending of pinned) pending.resolve(undefined as never);
      return;
    }
    // Provisioning belongs to this executor: the replacement does it afresh, and
    // what waited for the old one's is done when the new one's is.
    const provisioning = this.startWorker(slot);
    for (const pending of pinned) {
      const settle = () => pending.resolve(undefined as never);
      void (provisioning.get(pending.fn!.key) ?? Promise.resolve()).then(settle, settle);
    }
    this.pump();
  }
}
