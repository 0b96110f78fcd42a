// The protocol's methods, implemented on the registry and the executors.
// This is the router of DESIGN.md: it resolves a function name to one
// immutable version and hands the invocation to the executors.
import { randomUUID } from 'node:crypto';
import type { GuestConfig, InvocationOutcome } from '../engine/index.js';
import type { Executed, ExecutorPool, FunctionRef } from '../executor/pool.js';
import { buildReport, summarize } from '../metering/report.js';
import type { EncodedAnswer } from '../protocol/codec.js';
import type { Logger } from '../observability/logger.js';
import { KilnError, MethodNotFoundError, NotFoundError, PayloadTooLargeError, ThrottledError } from '../protocol/errors.js';
import { Admission } from '../scheduler/admission.js';
import {
  parseDeployParams,
  parseInvokeParams,
  parseListParams,
  parseNameParams,
  type FunctionInfo,
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

export class Methods {
  /** Typed by the protocol's method list, so a method the protocol names cannot go unimplemented. */
  private readonly table: Record<Method, MethodHandler>;
  private readonly admission = new Admission();
  /** One executor reference per immutable version (the store hands out the same info object until it changes). */
  private readonly refs = new WeakMap<FunctionInfo, FunctionRef>();

  constructor(
    private readonly store: Store,
    private readonly pool: ExecutorPool,
    private readonly log: Logger,
  ) {
    this.table = {
      'functions.deploy': (p) => this.deploy(p),
      'functions.get': (p) => this.get(parseNameParams(p, 'functions.get')),
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
    const info = this.store.publish({ name, kind, artifact: wasm, prepared, config });
    this.log.info({ function: name, version: info.version, kind, digest: info.digest, size: info.size }, 'deployed');
    return info;
  }

  private get(name: string): FunctionInfo {
    const info = this.store.get(name);
    if (!info) throw new NotFoundError(`function "${name}" does not exist`);
    return info;
  }

  private remove(name: string): { deleted: true } {
    if (!this.store.delete(name)) throw new NotFoundError(`function "${name}" does not exist`);
    this.log.info({ function: name }, 'deleted');
    return { deleted: true };
  }

  /** Resolves with the answer as the executor encoded it; the client decodes an InvokeResult. */
  private async invoke(params: unknown[]): Promise<EncodedAnswer> {
    const request = parseInvokeParams(params);
    const info = this.get(request.function);
    const requestId = randomUUID();
    const started = performance.now();
    let executed: Executed;
    try {
      executed = await this.admission.run(info.name, info.config, () =>
        this.pool.invoke(this.refFor(info), {
          payload: request.payload,
          contentType: request.contentType,
          requestId,
          deadlineMs: Date.now() + info.config.timeoutMs,
        }),
      );
    } catch (error) {
      if (error instanceof ThrottledError) throw error; // refused before it ran: nothing to report
      if (!(error instanceof KilnError)) throw error;
      const report = buildReport(
        { requestId, function: info.name, version: info.version },
        lostOutcome(error, performance.now() - started),
      );
      this.log.info(summarize(report, error.code), 'REPORT');
      throw new KilnError(error.code, error.message, { ...(error.data as object | undefined), report });
    }
    this.log.info(executed.summary, 'REPORT');
    return executed.answer;
  }

  private refFor(info: FunctionInfo): FunctionRef {
    let ref = this.refs.get(info);
    if (!ref) {
      ref = {
        key: `${info.name}@${info.version}/${info.createdAt}`,
        config: guestConfig(info),
        timeoutMs: info.config.timeoutMs,
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
      this.refs.set(info, ref);
    }
    return ref;
  }
}
