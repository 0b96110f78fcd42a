// Messages between the executor pool (network thread) and its workers, and
// the flat records that invocations and their replies take in the rings
// (src/executor/ring.ts; the order of the two ways is explained in pool.ts).
import type { WireError } from '../protocol/errors.js';
import type { GuestConfig, Invocation } from '../engine/index.js';
import type { ReportSubject, ReportSummary } from '../metering/report.js';
import { EncodedAnswer } from '../protocol/codec.js';
import type { GuestKind } from '../protocol/methods.js';
import type { Ring } from './ring.js';

/** What an executor needs to hold a function version: sent only when it is not known to hold it already. */
export interface FunctionLoad {
  /** The stored prepared form. */
  prepared: Uint8Array;
  config: GuestConfig;
  idleTtlMs: number;
}

export interface PrepareTask {
  op: 'prepare';
  id: number;
  artifact: Uint8Array;
  config: GuestConfig;
}

export interface InvokeTask {
  op: 'invoke';
  id: number;
  /** Identifies one immutable function version; the worker caches its prepared form under it. */
  key: string;
  load?: FunctionLoad;
  invocation: Invocation;
}

/** Keep `count` instances of the function restored on this executor, whatever the load. */
export interface ProvisionTask {
  op: 'provision';
  id: number;
  key: string;
  load?: FunctionLoad;
  count: number;
}

/** Drop the function: a newer version replaced it, or it was deleted. No reply. */
export interface ForgetTask {
  op: 'forget';
  key: string;
}

export type Task = PrepareTask | InvokeTask | ProvisionTask;

/** How many instances of a function an executor holds ready, and their linear memory. */
export interface Held {
  ready: number;
  bytes: number;
}

export interface InvokeReply {
  id: number;
  op: 'invoke';
  answer: EncodedAnswer;
  summary: ReportSummary;
}

export type TaskReply =
  | { id: number; op: 'prepare'; kind: GuestKind; prepared: Uint8Array }
  | InvokeReply
  | { id: number; op: 'provision' }
  /** The worker does not hold the key (evicted or restarted): resend with the load. */
  | { id: number; op: 'need-artifact' }
  | { id: number; op: 'error'; error: WireError };

/** Sent by a worker on its own when what it holds for a function changed. */
export interface HeldNotice {
  op: 'held';
  key: string;
  held: Held;
  reaped: number;
  evicted: number;
}

/** "Read your ring": posted only to a side that said it may be asleep. */
export const DOORBELL = 0;
export type Doorbell = typeof DOORBELL;

/** A task that goes by message, numbered in the same sequence as the task ring's records. */
export interface PostedTask {
  seq: number;
  task: Task | ForgetTask;
}

export type PoolMessage = PostedTask[] | Doorbell;
export type WorkerMessage = TaskReply | HeldNotice | Doorbell;

// The records, little-endian; strings are UTF-8, which takes at most three
// bytes per UTF-16 unit (what a writer reserves before it knows).
//
// invoke task   0 seq u32 · 4 key bytes u32 · 8 id f64 · 16 deadlineMs f64 ·
//               24 contentType bytes u32 · 28 requestId bytes u32 ·
//               32 key · contentType · requestId · payload (to the end)
// invoke reply  0 id f64 · 8 durationMs f64 · 16 billedMs f64 ·
//               24 fuelUsed f64 · 32 memoryBytes f64 · 40 isError u8 ·
//               41 cold u8 · 42 error code bytes u16 ·
//               44 error code · the encoded answer (to the end)
//
// A reply carries the summary's measurements only: its requestId, function
// and version are those of the task it answers, which the pool fills in.
const TASK_HEAD = 32;
const REPLY_HEAD = 44;

/** Writes an invoke task (without a load) into the ring; false if it does not fit. */
export function writeInvokeTask(ring: Ring, seq: number, task: InvokeTask): boolean {
  const { key, invocation } = task;
  const { payload, contentType, requestId } = invocation;
  const at = ring.reserve(TASK_HEAD + 3 * (key.length + contentType.length + requestId.length) + payload.length);
  if (at < 0) return false;
  const { bytes, view } = ring;
  let end = at + TASK_HEAD;
  const keyBytes = bytes.write(key, end);
  end += keyBytes;
  const contentTypeBytes = bytes.write(contentType, end);
  end += contentTypeBytes;
  const requestIdBytes = bytes.write(requestId, end);
  end += requestIdBytes;
  bytes.set(payload, end);
  end += payload.length;
  view.setUint32(at, seq, true);
  view.setUint32(at + 4, keyBytes, true);
  view.setFloat64(at + 8, task.id, true);
  view.setFloat64(at + 16, invocation.deadlineMs, true);
  view.setUint32(at + 24, contentTypeBytes, true);
  view.setUint32(at + 28, requestIdBytes, true);
  ring.commit(end - at);
  return true;
}

export const taskSeq = (ring: Ring, at: number): number => ring.view.getUint32(at, true);

/** The invoke task at `at`, copied out of the ring. */
export function readInvokeTask(ring: Ring, at: number): InvokeTask {
  const { bytes, view } = ring;
  let start = at + TASK_HEAD;
  const key = bytes.toString('utf8', start, (start += view.getUint32(at + 4, true)));
  const contentType = bytes.toString('utf8', start, (start += view.getUint32(at + 24, true)));
  const requestId = bytes.toString('utf8', start, (start += view.getUint32(at + 28, true)));
  return {
    op: 'invoke',
    id: view.getFloat64(at + 8, true),
    key,
    invocation: {
      payload: new Uint8Array(bytes.subarray(start, at + ring.lengthAt(at))),
      contentType,
      requestId,
      deadlineMs: view.getFloat64(at + 16, true),
    },
  };
}

/** Writes an invoke reply into the ring; false if it does not fit. */
export function writeInvokeReply(ring: Ring, reply: InvokeReply): boolean {
  const { answer, summary } = reply;
  const error = summary.error ?? '';
  const at = ring.reserve(REPLY_HEAD + 3 * error.length + answer.bytes.length);
  if (at < 0) return false;
  const { bytes, view } = ring;
  const errorBytes = bytes.write(error, at + REPLY_HEAD);
  bytes.set(answer.bytes, at + REPLY_HEAD + errorBytes);
  view.setFloat64(at, reply.id, true);
  view.setFloat64(at + 8, summary.durationMs, true);
  view.setFloat64(at + 16, summary.billedMs, true);
  view.setFloat64(at + 24, summary.fuelUsed, true);
  view.setFloat64(at + 32, summary.memoryBytes, true);
  bytes[at + 40] = answer.isError ? 1 : 0;
  bytes[at + 41] = summary.cold ? 1 : 0;
  view.setUint16(at + 42, errorBytes, true);
  ring.commit(REPLY_HEAD + errorBytes + answer.bytes.length);
  return true;
}

export const replyId = (ring: Ring, at: number): number => ring.view.getFloat64(at, true);

/** The invoke reply at `at`, copied out of the ring, for the task with this subject. */
export function readInvokeReply(ring: Ring, at: number, subject: ReportSubject): Pick<InvokeReply, 'answer' | 'summary'> {
  const { bytes, view } = ring;
  const errorBytes = view.getUint16(at + 42, true);
  const start = at + REPLY_HEAD + errorBytes;
  return {
    answer: new EncodedAnswer(new Uint8Array(bytes.subarray(start, at + ring.lengthAt(at))), bytes[at + 40] === 1),
    // In summarize()'s key order: the REPORT log line lists them in this order.
    summary: {
      requestId: subject.requestId,
      function: subject.function,
      version: subject.version,
      durationMs: view.getFloat64(at + 8, true),
      billedMs: view.getFloat64(at + 16, true),
      fuelUsed: view.getFloat64(at + 24, true),
      cold: bytes[at + 41] === 1,
      memoryBytes: view.getFloat64(at + 32, true),
      error: errorBytes > 0 ? bytes.toString('utf8', at + REPLY_HEAD, start) : undefined,
    },
  };
}
