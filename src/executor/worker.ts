// An executor thread: holds prepared functions and their instances and runs
// invocations one at a time, so a guest never runs on the network thread.
// Invocations come through the task ring, everything else (and what does not
// fit) by message, and all run in the pool's order (see pool.ts); invocation
// replies go into the reply ring, everything else by message.
import { parentPort, workerData } from 'node:worker_threads';
import { PreparedFunction } from '../engine/index.js';
import { buildReport, summarize } from '../metering/report.js';
import { EncodedAnswer, encode } from '../protocol/codec.js';
import { InternalError, KilnError } from '../protocol/errors.js';
import { InstanceCache, type CachedFunction } from './instances.js';
import {
  DOORBELL,
  readInvokeTask,
  taskSeq,
  writeInvokeReply,
  type ForgetTask,
  type InvokeReply,
  type InvokeTask,
  type PoolMessage,
  type PostedTask,
  type Task,
  type TaskReply,
  type WorkerMessage,
} from './messages.js';
import { Ring } from './ring.js';

/** What the pool passes to each worker it starts. */
export interface WorkerOptions {
  /** This executor's share of the daemon's memory budget for idle instances and pooled memories. */
  memoryBudgetBytes: number;
  /** The ring of invoke tasks to this executor, and the ring of its invoke replies. */
  tasks: SharedArrayBuffer;
  replies: SharedArrayBuffer;
}

/** Tasks run before the event loop gets a turn (for the reaping timer), however many are waiting. */
const TASKS_PER_TURN = 64;

const port = parentPort!;
const post = (message: WorkerMessage) => port.postMessage(message);
const options = workerData as WorkerOptions;
const tasks = new Ring(options.tasks);
const replies = new Ring(options.replies);
const cache = new InstanceCache(options.memoryBudgetBytes, (change) => post({ op: 'held', ...change }));

function invoke(task: InvokeTask, entry: CachedFunction): InvokeReply {
  const instance = cache.take(entry);
  const outcome = instance.invoke(task.invocation);
  cache.giveBack(entry, instance);
  const { config } = entry.prepared;
  const report = buildReport(
    { requestId: task.invocation.requestId, function: config.functionName, version: config.functionVersion },
    outcome,
  );
  // Encoded here, off the network thread, which only frames the bytes. The
  // bytes are a view into msgpackr's reused buffer until reply() has sent them.
  const answer = outcome.error
    ? new EncodedAnswer(encode({ ...outcome.error, data: { ...(outcome.error.data as object | undefined), report } }), true)
    : new EncodedAnswer(encode({ payload: outcome.payload, contentType: outcome.contentType, report }), false);
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

function reply(message: TaskReply): void {
  if (message.op !== 'invoke') return post(message);
  if (writeInvokeReply(replies, message)) {
    if (replies.wake()) post(DOORBELL);
    return;
  }
  // A copy sized to the encoding: cloning a view to another thread clones the whole buffer.
  const { bytes, isError } = message.answer;
  post({ ...message, answer: new EncodedAnswer(bytes.slice(), isError) });
}

// Each reply leaves as soon as its task is done, so a later task that never
// returns cannot hold back an earlier answer; the refill comes after it.
function execute(task: Task | ForgetTask): void {
  if (task.op === 'forget') {
    cache.forget(task.key);
    return;
  }
  let result: TaskReply;
  let refill: CachedFunction | undefined;
  try {
    [result, refill] = run(task);
  } catch (error) {
    const wire = error instanceof KilnError ? error.toWire() : new InternalError(`executor failed: ${String(error)}`).toWire();
    result = { id: task.id, op: 'error', error: wire };
  }
  reply(result);
  try {
    if (refill) cache.refill(refill);
  } catch {
    // A restore that fails here is retried on the request path, where its error has someone to go to.
  }
}

/** Tasks that came by message, oldest first, and the sequence number of the next task to run. */
const posted: PostedTask[] = [];
let nextSeq = 0;
/** What next() returns when the ring holds a later task: the next one is a message on its way. */
const MESSAGE_DUE = Symbol('message due');

/** The next task in the pool's order, whichever way it came; undefined if there is none. */
function next(): Task | ForgetTask | typeof MESSAGE_DUE | undefined {
  const first = posted[0];
  if (first?.seq === nextSeq) {
    posted.shift();
    nextSeq = (nextSeq + 1) >>> 0;
    return first.task;
  }
  const at = tasks.peek();
  if (at < 0) return undefined;
  if (taskSeq(tasks, at) !== nextSeq) return MESSAGE_DUE;
  const task = readInvokeTask(tasks, at);
  tasks.release(at);
  nextSeq = (nextSeq + 1) >>> 0;
  return task;
}

function drain(): void {
  for (let turn = 0; turn < TASKS_PER_TURN; turn++) {
    const task = next();
    if (task === MESSAGE_DUE) return; // its arrival drains again
    if (task) execute(task);
    else if (tasks.sleep()) return; // the pool rings for the next one
  }
  setImmediate(drain);
}

port.on('message', (message: PoolMessage) => {
  if (message !== DOORBELL) posted.push(...message);
  drain();
});
