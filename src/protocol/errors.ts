// Every error that crosses the protocol: one class per stable code, shared by
// the server, the client and the CLI (the shape of undici's lib/core/errors.js).
// docs/protocol.md lists the codes; a code never changes meaning once published.

export const ERROR_CODES = [
  'MALFORMED_FRAME',
  'INVALID_MESSAGE',
  'UNSUPPORTED_FRAME',
  'METHOD_NOT_FOUND',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'INVALID_WASM',
  'UNSUPPORTED_WASM',
  'PAYLOAD_TOO_LARGE',
  'UNAUTHENTICATED',
  'THROTTLED',
  'UNAVAILABLE',
  'TIMEOUT',
  'FUEL_EXHAUSTED',
  'MEMORY_LIMIT',
  'STACK_OVERFLOW',
  'GUEST_TRAP',
  'GUEST_ERROR',
  'CONNECTION_CLOSED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** The wire form of an error: the `error` element of a response. */
export interface WireError {
  code: ErrorCode;
  message: string;
  data?: unknown;
}

export class KilnError extends Error {
  readonly code: ErrorCode;
  readonly data: unknown;

  constructor(code: ErrorCode, message: string, data?: unknown) {
    super(message);
    this.name = 'KilnError';
    this.code = code;
    this.data = data;
  }

  toWire(): WireError {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

function defineError(code: ErrorCode, name: string) {
  return class extends KilnError {
    static readonly code = code;
    constructor(message: string, data?: unknown) {
      super(code, message, data);
      this.name = name;
    }
  };
}

/** The frame is not a MessagePack value. */
export const MalformedFrameError = defineError('MALFORMED_FRAME', 'MalformedFrameError');
/** The frame is MessagePack but not a msgpack-rpc message Kiln accepts. */
export const InvalidMessageError = defineError('INVALID_MESSAGE', 'InvalidMessageError');
/** A text WebSocket frame: the protocol is binary only. */
export const UnsupportedFrameError = defineError('UNSUPPORTED_FRAME', 'UnsupportedFrameError');
export const MethodNotFoundError = defineError('METHOD_NOT_FOUND', 'MethodNotFoundError');
export const InvalidArgumentError = defineError('INVALID_ARGUMENT', 'InvalidArgumentError');
export const NotFoundError = defineError('NOT_FOUND', 'NotFoundError');
/** The bytes are not valid WebAssembly. */
export const InvalidWasmError = defineError('INVALID_WASM', 'InvalidWasmError');
/** Valid WebAssembly, but not a kind of guest Kiln can run. */
export const UnsupportedWasmError = defineError('UNSUPPORTED_WASM', 'UnsupportedWasmError');
export const PayloadTooLargeError = defineError('PAYLOAD_TOO_LARGE', 'PayloadTooLargeError');
export const UnauthenticatedError = defineError('UNAUTHENTICATED', 'UnauthenticatedError');
export const ThrottledError = defineError('THROTTLED', 'ThrottledError');
/** The daemon is shutting down or a part of it is not ready. */
export const UnavailableError = defineError('UNAVAILABLE', 'UnavailableError');
export const TimeoutError = defineError('TIMEOUT', 'TimeoutError');
export const FuelExhaustedError = defineError('FUEL_EXHAUSTED', 'FuelExhaustedError');
export const MemoryLimitError = defineError('MEMORY_LIMIT', 'MemoryLimitError');
export const StackOverflowError = defineError('STACK_OVERFLOW', 'StackOverflowError');
/** The guest trapped (unreachable, out-of-bounds access, abort, proc_exit inside a handler…). */
export const GuestTrapError = defineError('GUEST_TRAP', 'GuestTrapError');
/** The guest handled the request and reported an error (a handler `err`, a command's non-zero exit). */
export const GuestError = defineError('GUEST_ERROR', 'GuestError');
/** Client side: the connection closed before the answer arrived. */
export const ConnectionClosedError = defineError('CONNECTION_CLOSED', 'ConnectionClosedError');
export const InternalError = defineError('INTERNAL', 'InternalError');

const isErrorCode = (value: unknown): value is ErrorCode =>
  typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);

/** Rebuilds a KilnError from its wire form; unknown codes (a newer server) become INTERNAL. */
export function errorFromWire(wire: unknown): KilnError {
  if (wire && typeof wire === 'object') {
    const { code, message, data } = wire as Record<string, unknown>;
    const text = typeof message === 'string' ? message : 'error without a message';
    return new KilnError(isErrorCode(code) ? code : 'INTERNAL', text, data);
  }
  return new KilnError('INTERNAL', `unrecognised error: ${String(wire)}`);
}
