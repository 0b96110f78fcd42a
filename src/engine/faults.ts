// Turns whatever a guest threw into a typed, client-facing error. Faults
// stay in the guest: the caller discards the instance and carries on.
import {
  FuelExhaustedError,
  GuestTrapError,
  KilnError,
  MemoryLimitError,
  PayloadTooLargeError,
  StackOverflowError,
} from '../protocol/errors.js';
import { AbiViolation } from './handler-abi.js';
import { OutputLimitExceeded } from './wasi/output.js';
import { ProcExit } from './wasi/preview1.js';

export interface FaultContext {
  fuelExhausted: boolean;
  /** The guest's memory is at (or near enough to) its configured maximum for an out-of-memory crash. */
  memoryAtLimit: boolean;
  memoryLimitBytes: number;
}

export function classifyFault(error: unknown, context: FaultContext): KilnError {
  if (error instanceof KilnError) return error;
  if (context.fuelExhausted) return new FuelExhaustedError('the invocation ran out of fuel (raise config.fuel to allow more work)');
  if (error instanceof ProcExit) return new GuestTrapError(`the guest called proc_exit(${error.code}) during handle`, { exitCode: error.code });
  if (error instanceof OutputLimitExceeded) {
    return new PayloadTooLargeError(`the guest's response exceeded ${error.limit} bytes`, { limit: error.limit });
  }
  if (error instanceof AbiViolation) return new GuestTrapError(`the guest broke the canonical ABI: ${error.message}`);
  if (error instanceof RangeError && /call stack/i.test(error.message)) {
    return new StackOverflowError('the guest overflowed the call stack (unbounded recursion?)');
  }
  if (error instanceof WebAssembly.RuntimeError) {
    if (context.memoryAtLimit) {
      return new MemoryLimitError(
        `the guest trapped (${error.message}) with its memory near the ${context.memoryLimitBytes / 2 ** 20} MiB limit`,
      );
    }
    return new GuestTrapError(`the guest trapped: ${error.message}`);
  }
  // A host call failed on the guest's arguments (e.g. a DataView access out of range).
  return new GuestTrapError(`the guest made an invalid host call: ${error instanceof Error ? error.message : String(error)}`);
}
