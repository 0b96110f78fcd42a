// A pool of executor threads. Each runs one task at a time; tasks wait in a
// FIFO queue on the network thread, so a worker killed at a deadline takes
// only its own invocation with it and the queue refills the replacement.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { GuestConfig, Invocation, InvocationOutcome } from '../engine/index.js';
import { PREPARE_TIMEOUT_MS } from '../limits.js';
import { errorFromWire, InternalError, TimeoutError, UnavailableError } from '../protocol/errors.js';
import type { GuestKind } from '../protocol/methods.js';
import type { InvokeTask, PrepareTask, Task, TaskReply } from './messages.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

export interface FunctionRef {
  key: string;
  config: GuestConfig;
  timeoutMs: number;
  loadArtifact: () => Uint8Array;
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
  current: Pending | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Keys this worker is known to hold prepared. */
  keys: Set<string>;
}

export class ExecutorPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(size = availableParallelism()) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const slot = { current: undefined, timer: undefined } as Slot;
      this.startWorker(slot);
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** Validates and compiles an artifact in a worker (never on the network thread). */
  prepare(artifact: Uint8Array, config: GuestConfig): Promise<GuestKind> {
    const task: PrepareTask = { op: 'prepare', id: this.nextId++, artifact, config };
    return this.submit(task, undefined, PREPARE_TIMEOUT_MS);
  }

  invoke(fn: FunctionRef, invocation: Invocation): Promise<InvocationOutcome> {
    const task: InvokeTask = { op: 'invoke', id: this.nextId++, key: fn.key, config: fn.config, invocation };
    return this.submit(task, fn, fn.timeoutMs);
  }

  /** Fails everything still queued and stops the workers (in-flight tasks fail too). */
  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.queue.splice(0)) pending.reject(new UnavailableError('the daemon is shutting down'));
    await Promise.all(
      this.slots.map(async (slot) => {
        this.settle(slot)?.reject(new UnavailableError('the daemon is shutting down'));
        await slot.worker.terminate();
      }),
    );
  }

  private submit<T>(task: Task, fn: FunctionRef | undefined, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new UnavailableError('the daemon is shutting down'));
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

  private pump(): void {
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      const idle = this.slots.filter((s) => !s.current);
      if (idle.length === 0) return;
      // Affinity: a worker that already holds the function skips a compile.
      const slot = (next.fn && idle.find((s) => s.keys.has(next.fn!.key))) || idle[0]!;
      this.queue.shift();
      this.dispatch(slot, next);
    }
  }

  private dispatch(slot: Slot, pending: Pending): void {
    const { task, fn } = pending;
    if (task.op === 'invoke' && fn && !slot.keys.has(fn.key)) {
      try {
        task.artifact = fn.loadArtifact();
      } catch (error) {
        pending.reject(new InternalError(`cannot read the function's artifact: ${(error as Error).message}`));
        return this.pump();
      }
    }
    slot.current = pending;
    slot.timer = setTimeout(() => this.onTimeout(slot), pending.timeoutMs);
    slot.worker.postMessage(task);
    if (task.op === 'invoke') delete task.artifact;
  }

  /** Detaches the slot's current task and its timer, returning the task. */
  private settle(slot: Slot): Pending | undefined {
    const pending = slot.current;
    clearTimeout(slot.timer);
    slot.current = undefined;
    slot.timer = undefined;
    return pending;
  }

  private onReply(slot: Slot, reply: TaskReply): void {
    const pending = this.settle(slot);
    if (!pending || pending.task.id !== reply.id) return; // a reply for a task already timed out
    switch (reply.op) {
      case 'need-artifact':
        slot.keys.delete(pending.fn!.key);
        this.dispatch(slot, pending);
        return;
      case 'invoke':
        slot.keys.add(pending.fn!.key);
        pending.resolve(reply.outcome as never);
        break;
      case 'prepare':
        pending.resolve(reply.kind as never);
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
    const pending = slot.current;
    const seconds = pending ? pending.timeoutMs / 1000 : 0;
    this.replace(
      slot,
      pending?.task.op === 'prepare'
        ? new InternalError(`preparing the artifact took longer than ${seconds} s`)
        : new TimeoutError(`the invocation exceeded its ${pending?.timeoutMs} ms timeout`, { timeoutMs: pending?.timeoutMs }),
    );
  }

  private replace(slot: Slot, error: Error): void {
    this.settle(slot)?.reject(error);
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
