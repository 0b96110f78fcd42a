// Messages between the executor pool (network thread) and its workers.
import type { WireError } from '../protocol/errors.js';
import type { GuestConfig, Invocation } from '../engine/index.js';
import type { ReportSummary } from '../metering/report.js';
import type { EncodedAnswer } from '../protocol/codec.js';
import type { GuestKind } from '../protocol/methods.js';

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

export type TaskReply =
  | { id: number; op: 'prepare'; kind: GuestKind; prepared: Uint8Array }
  | { id: number; op: 'invoke'; answer: EncodedAnswer; summary: ReportSummary }
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

export type WorkerMessage = TaskReply | HeldNotice;
