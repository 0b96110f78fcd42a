// An executor thread: holds prepared functions and their instances and runs
// invocations one at a time, so a guest never runs on the network thread.
import { parentPort, workerData } from 'node:worker_threads';
import { PreparedFunction } from '../engine/index.js';
import { buildReport, summarize } from '../metering/report.js';
import { EncodedAnswer, encode } from '../protocol/codec.js';
import { InternalError, KilnError } from '../protocol/errors.js';
import { InstanceCache, type CachedFunction } from './instances.js';
import type { ForgetTask, InvokeTask, Task, TaskReply, WorkerMessage } from './messages.js';

/** What the pool passes to each worker it starts. */
export interface WorkerOptions {
  /** This executor's share of the daemon's memory budget for idle instances and pooled memories. */
  memoryBudgetBytes: number;
}

const port = parentPort!;
const post = (message: WorkerMessage) => port.postMessage(message);
const { memoryBudgetBytes } = workerData as WorkerOptions;
const cache = new InstanceCache(memoryBudgetBytes, (change) => post({ op: 'held', ...change }));

function invoke(task: InvokeTask, entry: CachedFunction): TaskReply {
  const instance = cache.take(entry);
  const outcome = instance.invoke(task.invocation);
  cache.giveBack(entry, instance);
  const { config } = entry.prepared;
  const report = buildReport(
    { requestId: task.invocation.requestId, function: config.functionName, version: config.functionVersion },
    outcome,
  );
  // Encoded here, off the network thread, which only frames the bytes.
  // A copy sized to the encoding: msgpackr's output is a view into its reused
  // buffer, and cloning a view to another thread clones the whole buffer.
  const answer = outcome.error
    ? new EncodedAnswer(encode({ ...outcome.error, data: { ...(outcome.error.data as object | undefined), report } }).slice(), true)
    : new EncodedAnswer(encode({ payload: outcome.payload, contentType: outcome.contentType, report }).slice(), false);
  return { id: task.id, op: 'invoke', answer, summary: summarize(report, outcome.error?.code) };
}

/** Runs one task; returns its reply and, for a function, the entry to refill once the reply has left. */
function run(task: Task): [TaskReply, CachedFunction | undefined] {
  if (task.op === 'prepare') {
    const prepared = PreparedFunction.prepare(task.artifact, task.config);
    return [{ id: task.id, op: 'prepare', kind: prepared.kind, prepared: prepared.encode() }, undefined];
  }
  const entry = cache.lookup(task.key, task.load);
  if (!entry) return [{ id: task.id, op: 'need-artifact' }, undefined];
  if (task.op === 'provision') {
    cache.provision(entry, task.count);
    return [{ id: task.id, op: 'provision' }, undefined];
  }
  return [invoke(task, entry), entry];
}

// Tasks arrive in batches; each reply leaves as soon as its task is done, so
// a later task that never returns cannot hold back an earlier answer.
port.on('message', (tasks: Array<Task | ForgetTask>) => {
  for (const task of tasks) {
    if (task.op === 'forget') {
      cache.forget(task.key);
      continue;
    }
    let reply: TaskReply;
    let refill: CachedFunction | undefined;
    try {
      [reply, refill] = run(task);
    } catch (error) {
      const wire = error instanceof KilnError ? error.toWire() : new InternalError(`executor failed: ${String(error)}`).toWire();
      reply = { id: task.id, op: 'error', error: wire };
    }
    post(reply);
    try {
      if (refill) cache.refill(refill);
    } catch {
      // A restore that fails here is retried on the request path, where its error has someone to go to.
    }
  }
});
