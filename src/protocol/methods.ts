// The protocol's method set (docs/protocol.md, version 1): names, parameter
// and result shapes, and the validation of parameters as they arrive.
import { MAX_CONTENT_TYPE_LENGTH, MAX_PAYLOAD_BYTES } from '../limits.js';
import { InvalidArgumentError, PayloadTooLargeError } from './errors.js';

export const PROTOCOL_VERSION = 1;
/** The WebSocket endpoint's path. */
export const ENDPOINT_PATH = '/v1';

export const METHODS = ['functions.deploy', 'functions.get', 'functions.list', 'functions.delete', 'invoke'] as const;
export type Method = (typeof METHODS)[number];

export type GuestKind = 'component' | 'command';

/**
 * `reuse`: an instance serves invocations one at a time and keeps its state
 * until it faults (Lambda's model). `fresh`: every invocation gets a new
 * instance restored from the snapshot, so nothing leaks between invocations.
 */
export const INSTANCE_MODES = ['reuse', 'fresh'] as const;
export type InstanceMode = (typeof INSTANCE_MODES)[number];

/** What a deploy may set; absent fields take the defaults in src/limits.ts. */
export interface FunctionConfigInput {
  env?: Record<string, string>;
  memoryMb?: number;
  timeoutMs?: number;
  fuel?: number;
  instanceMode?: InstanceMode;
  /** Invocations that may run at once (reserved concurrency); absent: no limit. */
  maxConcurrency?: number;
  /** Invocations that may wait for a slot when maxConcurrency are running; the rest get THROTTLED. */
  maxQueue?: number;
  /** Instances kept restored at all times, spread over the executors (provisioned concurrency). */
  provisioned?: number;
  /** Idle time after which an instance beyond the provisioned ones is dropped. */
  idleTtlMs?: number;
}

export interface FunctionConfig {
  env: Record<string, string>;
  memoryMb: number;
  timeoutMs: number;
  fuel: number;
  instanceMode: InstanceMode;
  maxConcurrency?: number;
  maxQueue: number;
  provisioned: number;
  idleTtlMs: number;
}

/** What the daemon holds for a function's current version right now, and what it has done since it started. */
export interface FunctionLive {
  /** Instances restored and ready to serve, over all executors. */
  instances: number;
  /** Executors holding the compiled function. */
  executors: number;
  /** Bytes of linear memory those instances hold. */
  instanceBytes: number;
  /** Invocations running or waiting for an executor, and waiting at the concurrency limit. */
  inflight: number;
  queued: number;
  invocations: number;
  coldStarts: number;
  errors: number;
  timeouts: number;
  throttled: number;
  /** Instances dropped after idling past idleTtlMs, and to keep the memory budget. */
  reaped: number;
  evicted: number;
}

export interface FunctionInfo {
  name: string;
  version: number;
  kind: GuestKind;
  /** sha256 of the artifact, hex. */
  digest: string;
  /** sha256 of the prepared form (rewritten module + snapshot) executors run, hex. */
  preparedDigest: string;
  size: number;
  config: FunctionConfig;
  /** ISO-8601 time of the deploy that made this version. */
  createdAt: string;
}

export interface DeployParams {
  name: string;
  wasm: Uint8Array;
  config: FunctionConfigInput;
}

export interface InvokeParams {
  function: string;
  payload: Uint8Array;
  contentType: string;
}

/** The metering record of one invocation, returned with its result or error. */
export interface InvocationReport {
  requestId: string;
  function: string;
  version: number;
  /** Wall time inside the engine, milliseconds (fractional). */
  durationMs: number;
  /** durationMs rounded up to whole milliseconds, the billing unit. */
  billedMs: number;
  fuelUsed: number;
  /** True when this invocation had to create its instance. */
  cold: boolean;
  /** Time to create the instance (0 when warm), microseconds. */
  initUs: number;
  memoryBytes: number;
  stdout: string;
  stderr: string;
  /** True when stdout or stderr hit the per-invocation cap and was cut. */
  logsTruncated: boolean;
}

export interface InvokeResult {
  payload: Uint8Array;
  contentType: string;
  report: InvocationReport;
}

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;

function single(params: unknown[], method: string): Record<string, unknown> {
  const [first] = params;
  if (params.length !== 1 || !first || typeof first !== 'object' || Array.isArray(first) || first instanceof Uint8Array) {
    throw new InvalidArgumentError(`${method} takes one parameter: a map of named fields`);
  }
  return first as Record<string, unknown>;
}

export function functionName(value: unknown, field = 'name'): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(`${field} must be a string`);
  if (!NAME_PATTERN.test(value)) {
    throw new InvalidArgumentError(`${field} "${value}" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`);
  }
  return value;
}

function bytes(value: unknown, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidArgumentError(`${field} must be MessagePack bin (bytes)`);
  return value;
}

function optionalNumber(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidArgumentError(`${field} must be a number`);
  return value;
}

function configInput(value: unknown): FunctionConfigInput {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new InvalidArgumentError('config must be a map');
  const raw = value as Record<string, unknown>;
  const config: FunctionConfigInput = {};
  if (raw.env !== undefined && raw.env !== null) {
    if (typeof raw.env !== 'object' || Array.isArray(raw.env)) throw new InvalidArgumentError('config.env must be a map of strings');
    for (const [key, entry] of Object.entries(raw.env)) {
      if (typeof entry !== 'string') throw new InvalidArgumentError(`config.env.${key} must be a string`);
    }
    config.env = raw.env as Record<string, string>;
  }
  const memoryMb = optionalNumber(raw.memoryMb, 'config.memoryMb');
  const timeoutMs = optionalNumber(raw.timeoutMs, 'config.timeoutMs');
  const fuel = optionalNumber(raw.fuel, 'config.fuel');
  const maxConcurrency = optionalNumber(raw.maxConcurrency, 'config.maxConcurrency');
  const maxQueue = optionalNumber(raw.maxQueue, 'config.maxQueue');
  const provisioned = optionalNumber(raw.provisioned, 'config.provisioned');
  const idleTtlMs = optionalNumber(raw.idleTtlMs, 'config.idleTtlMs');
  if (maxConcurrency !== undefined) config.maxConcurrency = maxConcurrency;
  if (maxQueue !== undefined) config.maxQueue = maxQueue;
  if (provisioned !== undefined) config.provisioned = provisioned;
  if (idleTtlMs !== undefined) config.idleTtlMs = idleTtlMs;
  if (memoryMb !== undefined) config.memoryMb = memoryMb;
  if (timeoutMs !== undefined) config.timeoutMs = timeoutMs;
  if (fuel !== undefined) config.fuel = fuel;
  if (raw.instanceMode !== undefined && raw.instanceMode !== null) {
    if (!(INSTANCE_MODES as readonly unknown[]).includes(raw.instanceMode)) {
      throw new InvalidArgumentError(`config.instanceMode must be one of ${INSTANCE_MODES.join(', ')}`);
    }
    config.instanceMode = raw.instanceMode as InstanceMode;
  }
  return config;
}

export function parseDeployParams(params: unknown[]): DeployParams {
  const raw = single(params, 'functions.deploy');
  return { name: functionName(raw.name), wasm: bytes(raw.wasm, 'wasm'), config: configInput(raw.config) };
}

/** functions.get and functions.delete: `{name}`. */
export function parseNameParams(params: unknown[], method: string): string {
  return functionName(single(params, method).name);
}

export function parseListParams(params: unknown[]): void {
  if (params.length > 1 || (params.length === 1 && (typeof params[0] !== 'object' || Array.isArray(params[0])))) {
    throw new InvalidArgumentError('functions.list takes no parameters (or one empty map)');
  }
}

export function parseInvokeParams(params: unknown[]): InvokeParams {
  const raw = single(params, 'invoke');
  const payload = raw.payload === undefined || raw.payload === null ? new Uint8Array(0) : bytes(raw.payload, 'payload');
  if (payload.length > MAX_PAYLOAD_BYTES) {
    throw new PayloadTooLargeError(`payload is ${payload.length} bytes; the limit is ${MAX_PAYLOAD_BYTES}`, {
      limit: MAX_PAYLOAD_BYTES,
    });
  }
  const contentType = raw.contentType ?? DEFAULT_CONTENT_TYPE;
  if (typeof contentType !== 'string' || contentType.length > MAX_CONTENT_TYPE_LENGTH) {
    throw new InvalidArgumentError(`contentType must be a string of at most ${MAX_CONTENT_TYPE_LENGTH} characters`);
  }
  return { function: functionName(raw.function, 'function'), payload, contentType };
}
