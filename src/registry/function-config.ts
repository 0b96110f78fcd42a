// A function's configuration: defaults for what a deploy leaves out, and the
// bounds a deploy may not cross.
import {
  DEFAULT_FUEL,
  DEFAULT_INSTANCE_MODE,
  DEFAULT_IDLE_TTL_MS,
  DEFAULT_MAX_QUEUE,
  DEFAULT_PROVISIONED,
  MAX_IDLE_TTL_MS,
  MAX_PROVISIONED,
  MIN_IDLE_TTL_MS,
  MAX_CONCURRENCY,
  MAX_QUEUE,
  DEFAULT_MEMORY_MB,
  DEFAULT_TIMEOUT_MS,
  MAX_ENV_BYTES,
  MAX_ENV_ENTRIES,
  MAX_FUEL,
  MAX_MEMORY_MB,
  MAX_TIMEOUT_MS,
} from '../limits.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import type { FunctionConfig, FunctionConfigInput } from '../protocol/methods.js';

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function integerIn(value: number | undefined, fallback: number, min: number, max: number, field: string): number {
  const resolved = value ?? fallback;
  if (!Number.isInteger(resolved) || resolved < min || resolved > max) {
    throw new InvalidArgumentError(`config.${field} must be an integer from ${min} to ${max}`);
  }
  return resolved;
}

export function resolveConfig(input: FunctionConfigInput): FunctionConfig {
  const env = input.env ?? {};
  const entries = Object.entries(env);
  if (entries.length > MAX_ENV_ENTRIES) throw new InvalidArgumentError(`config.env may hold at most ${MAX_ENV_ENTRIES} variables`);
  let envBytes = 0;
  for (const [key, value] of entries) {
    if (!ENV_KEY.test(key)) throw new InvalidArgumentError(`config.env key "${key}" must match ${ENV_KEY.source}`);
    envBytes += Buffer.byteLength(key) + Buffer.byteLength(value) + 2;
  }
  if (envBytes > MAX_ENV_BYTES) throw new InvalidArgumentError(`config.env may hold at most ${MAX_ENV_BYTES} bytes`);
  return {
    env: { ...env },
    memoryMb: integerIn(input.memoryMb, DEFAULT_MEMORY_MB, 1, MAX_MEMORY_MB, 'memoryMb'),
    timeoutMs: integerIn(input.timeoutMs, DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS, 'timeoutMs'),
    fuel: integerIn(input.fuel, DEFAULT_FUEL, 1, MAX_FUEL, 'fuel'),
    instanceMode: input.instanceMode ?? DEFAULT_INSTANCE_MODE,
    ...(input.maxConcurrency === undefined
      ? {}
      : { maxConcurrency: integerIn(input.maxConcurrency, 0, 1, MAX_CONCURRENCY, 'maxConcurrency') }),
    maxQueue: integerIn(input.maxQueue, DEFAULT_MAX_QUEUE, 0, MAX_QUEUE, 'maxQueue'),
    provisioned: integerIn(input.provisioned, DEFAULT_PROVISIONED, 0, MAX_PROVISIONED, 'provisioned'),
    idleTtlMs: integerIn(input.idleTtlMs, DEFAULT_IDLE_TTL_MS, MIN_IDLE_TTL_MS, MAX_IDLE_TTL_MS, 'idleTtlMs'),
  };
}

/**
 * The part of a config the prepared form depends on, as a comparable string:
 * init sees the env, runs under the fuel budget, and the memory cap is
 * rewritten into the module. Scheduling fields (timeout, instance mode,
 * concurrency, provisioned, idle TTL) can change without preparing again.
 */
export const preparedShape = (config: FunctionConfig): string =>
  JSON.stringify([config.memoryMb, config.fuel, Object.entries(config.env).sort(([a], [b]) => (a < b ? -1 : 1))]);
