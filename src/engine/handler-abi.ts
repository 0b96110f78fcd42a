// Kiln's thin lift/lower for the one export of the kiln:function/handler
// world, written against the canonical ABI (docs/guests.md):
//   handle(body ptr,len, content-type ptr,len, request-id ptr,len,
//          function-name ptr,len, function-version i32, deadline-ms i64,
//          remaining-fuel i64) -> i32 (pointer to the 20-byte return area)
// Return area: +0 u8 discriminant (0 ok, 1 err), +4/+8 first list, +12/+16 second.
import { MAX_CONTENT_TYPE_LENGTH, MAX_LOG_BYTES } from '../limits.js';
import type { FuncType } from './wasm/module-info.js';

export const HANDLER_SIGNATURE: FuncType = {
  params: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i64', 'i64'],
  results: ['i32'],
};
export const REALLOC_SIGNATURE: FuncType = { params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] };
export const HANDLER_EXPORTS = ['handle', 'cabi_realloc', 'memory'] as const;

export interface HandlerExports {
  memory: WebAssembly.Memory;
  cabi_realloc(oldPtr: number, oldSize: number, align: number, newSize: number): number;
  handle(...args: (number | bigint)[]): number;
  cabi_post_handle?(retptr: number): void;
}

export interface HandlerRequest {
  body: Uint8Array;
  contentType: string;
  requestId: string;
  functionName: string;
  functionVersion: number;
  deadlineMs: number;
  remainingFuel: bigint;
}

export type HandlerResult =
  | { ok: true; body: Uint8Array; contentType: string }
  | { ok: false; code: string; message: string };

/** The guest broke the canonical ABI (a bad pointer, invalid UTF-8): treated as a trap. */
export class AbiViolation extends Error {}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// The canonical ABI calls realloc for every list, empty ones included, and
// guests (wit-bindgen's among them) rely on getting a pointer they own. All
// four request fields are allocated first and then written through one view
// of memory: a realloc may grow (and so detach) the buffer, a write cannot.
function lowerRequest(exports: HandlerExports, body: Uint8Array, strings: [string, string, string]): number[] {
  const lengths = [body.length, ...strings.map((s) => Buffer.byteLength(s, 'utf8'))];
  const pointers = lengths.map((length) => exports.cabi_realloc(0, 0, 1, length) >>> 0);
  const memory = new Uint8Array(exports.memory.buffer);
  for (let i = 0; i < 4; i++) {
    if (pointers[i]! + lengths[i]! > memory.length) throw new AbiViolation('cabi_realloc returned an out-of-bounds pointer');
  }
  memory.set(body, pointers[0]);
  for (let i = 0; i < 3; i++) encoder.encodeInto(strings[i]!, memory.subarray(pointers[i + 1]!, pointers[i + 1]! + lengths[i + 1]!));
  return [pointers[0]!, lengths[0]!, pointers[1]!, lengths[1]!, pointers[2]!, lengths[2]!, pointers[3]!, lengths[3]!];
}

function liftRange(memory: Uint8Array, view: DataView, at: number): [number, number] {
  const ptr = view.getUint32(at, true);
  const len = view.getUint32(at + 4, true);
  if (ptr + len > memory.length) throw new AbiViolation('handle returned a list outside linear memory');
  return [ptr, len];
}

function liftString(memory: Uint8Array, view: DataView, at: number, maxBytes: number): string {
  const [ptr, len] = liftRange(memory, view, at);
  if (len > maxBytes) throw new AbiViolation(`handle returned a string of ${len} bytes where at most ${maxBytes} are allowed`);
  try {
    return decoder.decode(memory.subarray(ptr, ptr + len));
  } catch {
    throw new AbiViolation('handle returned a string that is not valid UTF-8');
  }
}

/**
 * Calls `handle` and copies the result out of guest memory.
 * `maxBody` bounds the response body; past it `onTooLarge` decides what is thrown.
 */
export function callHandler(
  exports: HandlerExports,
  request: HandlerRequest,
  maxBody: number,
  onTooLarge: (size: number) => Error,
): HandlerResult {
  const lowered = lowerRequest(exports, request.body, [request.contentType, request.requestId, request.functionName]);
  const retptr =
    exports.handle(...lowered, request.functionVersion, BigInt(request.deadlineMs), request.remainingFuel) >>> 0;

  const memory = new Uint8Array(exports.memory.buffer);
  if (retptr % 4 !== 0 || retptr + 20 > memory.length) throw new AbiViolation('handle returned an invalid return-area pointer');
  const view = new DataView(exports.memory.buffer);
  const discriminant = view.getUint8(retptr);
  let result: HandlerResult;
  if (discriminant === 0) {
    const [ptr, len] = liftRange(memory, view, retptr + 4);
    if (len > maxBody) throw onTooLarge(len);
    result = { ok: true, body: memory.slice(ptr, ptr + len), contentType: liftString(memory, view, retptr + 12, MAX_CONTENT_TYPE_LENGTH) };
  } else if (discriminant === 1) {
    result = {
      ok: false,
      code: liftString(memory, view, retptr + 4, MAX_CONTENT_TYPE_LENGTH),
      message: liftString(memory, view, retptr + 12, MAX_LOG_BYTES),
    };
  } else {
    throw new AbiViolation(`handle returned result discriminant ${discriminant}`);
  }
  exports.cabi_post_handle?.(retptr);
  return result;
}
