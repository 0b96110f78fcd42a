// Messages between the executor pool (network thread) and its workers.
import type { WireError } from '../protocol/errors.js';
import type { GuestConfig, Invocation } from '../engine/index.js';
import type { ReportSummary } from '../metering/report.js';
import type { EncodedAnswer } from '../protocol/codec.js';
import type { GuestKind } from '../protocol/methods.js';

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
  /** The stored prepared form, with the config: sent only when the worker is not known to hold the key. */
  prepare?: { prepared: Uint8Array; config: GuestConfig };
  invocation: Invocation;
}

export type Task = PrepareTask | InvokeTask;

export type TaskReply =
  | { id: number; op: 'prepare'; kind: GuestKind; prepared: Uint8Array }
  | { id: number; op: 'invoke'; answer: EncodedAnswer; summary: ReportSummary }
  /** The worker does not hold the key (evicted or restarted): resend with the artifact. */
  | { id: number; op: 'need-artifact' }
  | { id: number; op: 'error'; error: WireError };
