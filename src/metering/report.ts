// The metering record of one invocation: built where the invocation ran (an
// executor), returned to the client in the answer, and summarised in the
// daemon's REPORT log line.
import type { InvocationOutcome } from '../engine/index.js';
import type { InvocationReport } from '../protocol/methods.js';

export interface ReportSubject {
  requestId: string;
  function: string;
  version: number;
}

export function buildReport(subject: ReportSubject, outcome: InvocationOutcome): InvocationReport {
  const { metering } = outcome;
  return {
    requestId: subject.requestId,
    function: subject.function,
    version: subject.version,
    durationMs: metering.durationMs,
    // Billed in whole milliseconds, at least one, like Lambda.
    billedMs: Math.max(1, Math.ceil(metering.durationMs)),
    fuelUsed: metering.fuelUsed,
    cold: metering.cold,
    initUs: Math.round(metering.initUs),
    memoryBytes: metering.memoryBytes,
    stdout: outcome.stdout,
    stderr: outcome.stderr,
    logsTruncated: outcome.logsTruncated,
  };
}

/** The fields of the REPORT log line (no guest output: that stays in the answer). */
export type ReportSummary = Pick<
  InvocationReport,
  'requestId' | 'function' | 'version' | 'durationMs' | 'billedMs' | 'fuelUsed' | 'cold' | 'memoryBytes'
> & { error: string | undefined };

export const summarize = (report: InvocationReport, error: string | undefined): ReportSummary => ({
  requestId: report.requestId,
  function: report.function,
  version: report.version,
  durationMs: Number(report.durationMs.toFixed(3)),
  billedMs: report.billedMs,
  fuelUsed: report.fuelUsed,
  cold: report.cold,
  memoryBytes: report.memoryBytes,
  error,
});
