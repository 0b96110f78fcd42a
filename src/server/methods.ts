// The protocol's methods, implemented on the registry and the executors.
// This is the router of DESIGN.md: it resolves a function name to one
// immutable version and hands the invocation to the executors.
import { randomUUID } from 'node:crypto';
import type { GuestConfig, InvocationOutcome } from '../engine/index.js';
import type { Executed, ExecutorPool, FunctionRef } from '../executor/pool.js';
import { buildReport, summarize } from '../metering/report.js';
import type { EncodedAnswer } from '../protocol/codec.js';
import type { Logger } from '../observability/logger.js';
import { KilnError, MethodNotFoundError, NotFoundError, PayloadTooLargeError, ThrottledError, TimeoutError } from '../protocol/errors.js';
import { Admission } from '../scheduler/admission.js';
import {
  parseDeployParams,
  parseInvokeParams,
  parseListParams,
  parseNameParams,
  type FunctionInfo,
  type FunctionLive,
  type Method,
} from '../protocol/methods.js';
import { MAX_ARTIFACT_BYTES } from '../limits.js';
import { sha256Hex } from '../registry/artifacts.js';
import { resolveConfig } from '../registry/function-config.js';
import type { Store } from '../registry/store.js';

export type MethodHandler = (params: unknown[]) => unknown;

const guestConfig = (info: Pick<FunctionInfo, 'name' | 'version' | 'config'>): GuestConfig => ({
  functionName: info.name,
  functionVersion: info.version,
  env: info.config.env,
  memoryMb: info.config.memoryMb,
  fuel: info.config.fuel,
  instanceMode: info.config.instanceMode,
});

/**
 * The outcome of an invocation no executor reported on (its thread was
 * stopped at the deadline or crashed, the daemon shut down, its prepared form
 * could not be read): billed for the time it waited and ran, nothing else known.
 */
function lostOutcome(error: KilnError, durationMs: number): InvocationOutcome {
  return {
    payload: null,
    contentType: '',
    error: error.toWire(),
    metering: { durationMs, fuelUsed: 0, cold: false, initUs: 0, memoryBytes: 0 },
    stdout: '',
    stderr: '',
    logsTruncated: false,
  };
}

/** One function version as the executors know it, and what it has done since the daemon started. */
interface Deployed {
  ref: FunctionRef;
  counters: { inflight: number; invocations: number; coldStarts: number; errors: number; timeouts: number; throttled: number };
}

const keyOf = (info: FunctionInfo) => `${info.name}@${info.version}/${info.createdAt}`;

export class Methods {
  /** Typed by the protocol's method list, so a method the protocol names cannot go unimplemented. */
  private readonly table: Record<Method, MethodHandler>;
  private readonly admission = new Admission();
  /** Per immutable version, by key, from first use until a redeploy or delete retires it. */
  private readonly deployed = new Map<string, Deployed>();

  constructor(
    private readonly store: Store,
    private readonly pool: ExecutorPool,
    private readonly log: Logger,
  ) {
    this.table = {
      'functions.deploy': (p) => this.deploy(p),
      'functions.get': (p) => this.describe(parseNameParams(p, 'functions.get')),
      'functions.list': (p) => (parseListParams(p), this.store.list()),
      'functions.delete': (p) => this.remove(parseNameParams(p, 'functions.delete')),
      invoke: (p) => this.invoke(p),
    };
  }

  /** Runs a method; throws (or rejects with) a KilnError for the client. */
  call(method: string, params: unknown[]): unknown {
    const handler = Object.hasOwn(this.table, method) ? this.table[method as Method] : undefined;
    if (!handler) throw new MethodNotFoundError(`unknown method "${method}"`, { methods: Object.keys(this.table) });
    return handler(params);
  }

  private async deploy(params: unknown[]): Promise<FunctionInfo> {
    const { name, wasm, config: input } = parseDeployParams(params);
    if (wasm.length > MAX_ARTIFACT_BYTES) {
      throw new PayloadTooLargeError(`the artifact is ${wasm.length} bytes; the limit is ${MAX_ARTIFACT_BYTES}`, { limit: MAX_ARTIFACT_BYTES });
    }
    const config = resolveConfig(input);
    // Validation, rewriting and init happen in an executor, once per artifact
    // and config; only a runnable function is stored.
    const known = this.store.findPrepared(name, sha256Hex(wasm), config);
    const { kind, prepared } = known
      ? { kind: known.kind, prepared: this.store.readArtifact(known.preparedDigest) }
      : await this.pool.prepare(wasm, guestConfig({ name, version: 0, config }));
    const previous = this.store.get(name);
    const info = this.store.publish({ name, kind, artifact: wasm, prepared, config });
    this.log.info({ function: name, version: info.version, kind, digest: info.digest, size: info.size }, 'deployed');
    // The old version's instances go; invocations already on their way still finish on it.
    if (previous) this.retire(previous);
    await this.provision(info);
    return info;
  }

  /** Restores the provisioned instances of every stored function (at daemon start). */
  provisionAll(): void {
    for (const info of this.store.list()) void this.provision(info);
  }

  private async provision(info: FunctionInfo): Promise<void> {
    if (info.config.provisioned === 0) return;
    try {
      await this.pool.provision(this.deployedFor(info).ref, info.config.provisioned);
    } catch (error) {
      // The function still runs, cold; the failure is the operator's to see.
      this.log.warn({ function: info.name, version: info.version, err: error }, 'provisioning failed');
    }
  }

  private describe(name: string): FunctionInfo & { live: FunctionLive } {
    const info = this.get(name);
    const { ref, counters } = this.deployedFor(info);
    const { instances, instanceBytes, executors, reaped, evicted } = this.pool.stats(ref.key);
    return { ...info, live: { instances, instanceBytes, executors, queued: this.admission.queued(info.name), ...counters, reaped, evicted } };
  }

  private get(name: string): FunctionInfo {
    const info = this.store.get(name);
    if (!info) throw new NotFoundError(`function "${name}" does not exist`);
    return info;
  }

  private remove(name: string): { deleted: true } {
    const info = this.store.get(name);
    if (!info || !this.store.delete(name)) throw new NotFoundError(`function "${name}" does not exist`);
    this.retire(info);
    this.log.info({ function: name }, 'deleted');
    return { deleted: true };
  }

  /** Resolves with the answer as the executor encoded it; the client decodes an InvokeResult. */
  private async invoke(params: unknown[]): Promise<EncodedAnswer> {
    const request = parseInvokeParams(params);
    const info = this.get(request.function);
    const { ref, counters } = this.deployedFor(info);
    counters.invocations++;
    counters.inflight++;
    const requestId = randomUUID();
    const started = performance.now();
    let executed: Executed;
    try {
      executed = await this.admission.run(info.name, info.config, () =>
        this.pool.invoke(ref, {
          payload: request.payload,
          contentType: request.contentType,
          requestId,
          deadlineMs: Date.now() + info.config.timeoutMs,
        }),
      );
    } catch (error) {
      if (error instanceof ThrottledError) {
        counters.throttled++;
        throw error; // refused before it ran: nothing to report
      }
      counters.errors++;
      if (error instanceof TimeoutError) counters.timeouts++;
      if (!(error instanceof KilnError)) throw error;
      const report = buildReport(
        { requestId, function: info.name, version: info.version },
        lostOutcome(error, performance.now() - started),
      );
      this.log.info(summarize(report, error.code), 'REPORT');
      throw new KilnError(error.code, error.message, { ...(error.data as object | undefined), report });
    } finally {
      counters.inflight--;
    }
    if (executed.summary.cold) counters.coldStarts++;
    if (executed.answer.isError) counters.errors++;
    this.log.info(executed.summary, 'REPORT');
    return executed.answer;
  }

  /** A version replaced or deleted: the executors drop it; invocations already on their way still finish on it. */
  private retire(info: FunctionInfo): void {
    const key = keyOf(info);
    const deployed = this.deployed.get(key);
    if (deployed) deployed.ref.retired = true;
    this.deployed.delete(key);
    this.pool.forget(key);
  }

  private deployedFor(info: FunctionInfo): Deployed {
    const key = keyOf(info);
    let deployed = this.deployed.get(key);
    if (!deployed) {
      const ref: FunctionRef = {
        key,
        config: guestConfig(info),
        timeoutMs: info.config.timeoutMs,
        idleTtlMs: info.config.idleTtlMs,
        loadPrepared: () => {
          try {
            return this.store.readArtifact(info.preparedDigest);
          } catch (error) {
            // Deleted while this invocation was on its way.
            if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`function "${info.name}" was deleted`);
            throw error;
          }
        },
      };
      deployed = { ref, counters: { inflight: 0, invocations: 0, coldStarts: 0, errors: 0, timeouts: 0, throttled: 0 } };
      this.deployed.set(key, deployed);
    }
    return deployed;
  }
}
