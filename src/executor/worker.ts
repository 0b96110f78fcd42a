// An executor thread: holds prepared functions and their instances and runs
// invocations one at a time, so a guest never runs on the network thread.
import { parentPort } from 'node:worker_threads';
import { PreparedFunction, type GuestInstance } from '../engine/index.js';
import { MemoryPool } from '../engine/snapshot/memory-pool.js';
import { MAX_CACHED_FUNCTIONS_PER_EXECUTOR } from '../limits.js';
import { buildReport, summarize } from '../metering/report.js';
import { EncodedAnswer, encode } from '../protocol/codec.js';
import { InternalError, KilnError } from '../protocol/errors.js';
import type { InvokeTask, Task, TaskReply } from './messages.js';


interface Cached {
  prepared: PreparedFunction;
  instance: GuestInstance | undefined;
}

const cache = new Map<string, Cached>();
/** Pre-touched linear memories, reused across this executor's instances. */
const memories = new MemoryPool();

function lookup(task: InvokeTask): Cached | undefined {
  let entry = cache.get(task.key);
  if (entry) {
    cache.delete(task.key); // re-insert: Map order is the LRU order
  } else if (task.prepare) {
    entry = { prepared: PreparedFunction.decode(task.prepare.prepared, task.prepare.config), instance: undefined };
    if (cache.size >= MAX_CACHED_FUNCTIONS_PER_EXECUTOR) {
      const oldest = cache.keys().next().value!;
      cache.get(oldest)!.instance?.reset();
      cache.delete(oldest);
    }
  } else {
    return undefined;
  }
  cache.set(task.key, entry);
  return entry;
}

function run(task: Task): TaskReply {
  if (task.op === 'prepare') {
    const prepared = PreparedFunction.prepare(task.artifact, task.config);
    return { id: task.id, op: 'prepare', kind: prepared.kind, prepared: prepared.encode() };
  }
  const entry = lookup(task);
  if (!entry) return { id: task.id, op: 'need-artifact' };
  const instance = (entry.instance ??= entry.prepared.instantiate(memories));
  const outcome = instance.invoke(task.invocation);
  // The host side is kept; the Wasm instance goes after a fault, in fresh mode,
  // and after every command run (it lives for one run anyway; keeping it would only keep its memory).
  if (!instance.healthy || entry.prepared.config.instanceMode === 'fresh' || entry.prepared.kind === 'command') instance.reset();
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

// Tasks arrive in batches; each reply leaves as soon as its task is done, so
// a later task that never returns cannot hold back an earlier answer.
parentPort!.on('message', (tasks: Task[]) => {
  for (const task of tasks) {
    let reply: TaskReply;
    try {
      reply = run(task);
    } catch (error) {
      const wire = error instanceof KilnError ? error.toWire() : new InternalError(`executor failed: ${String(error)}`).toWire();
      reply = { id: task.id, op: 'error', error: wire };
    }
    parentPort!.postMessage(reply);
  }
});
