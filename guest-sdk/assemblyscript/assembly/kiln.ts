// kiln.ts — the AssemblyScript SDK for Kiln function components
// (world kiln:function/handler, see wit/handler.wit and docs/guests.md §2).
//
// A function is one file:
//
//   import { Request, Response, serve, respondText, fail, log } from "./kiln";
//   export { handle, cabi_realloc, cabi_post_handle } from "./kiln";
//
//   serve((req: Request): Response => respondText(req.text().toUpperCase()));
//
// Build with the WASI shim, the minimal runtime, this file's abort handler and
// `--exportStart _initialize` (README.md, scripts/build-guests.mjs), then wrap
// the core module into a component with jco.
//
// Memory: the host allocates the four request buffers with cabi_realloc (raw
// TLSF blocks); `handle` copies them into managed objects and frees them. The
// result buffers are raw blocks too, freed by cabi_post_handle, which then runs
// the minimal runtime's collector (it never runs on its own) to free every
// managed object the call created. Nothing managed survives a call unless a
// global refers to it.

// ---------------------------------------------------------------- WASI ----

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: usize, nwritten: usize): u16;

// Scratch for one iovec (buf, len) and the written count.
const IOV: usize = memory.data(12, 4);

function writeAll(fd: u32, ptr: usize, len: usize): void {
  while (len > 0) {
    store<u32>(IOV, <u32>ptr);
    store<u32>(IOV, <u32>len, 4);
    if (fd_write(fd, IOV, 1, IOV + 8) != 0) return; // nowhere to report a failed write
    const written = <usize>load<u32>(IOV, 8);
    if (written == 0) return;
    ptr += written;
    len -= written;
  }
}

/** Writes `line` and a newline to stderr, in one write. Captured into the invocation's report. */
export function log(line: string): void {
  const len = <usize>String.UTF8.byteLength(line);
  const buf = heap.alloc(len + 1);
  String.UTF8.encodeUnsafe(changetype<usize>(line), line.length, buf);
  store<u8>(buf + len, 0x0a);
  writeAll(2, buf, len + 1);
  heap.free(buf);
}

let aborting = false;

/**
 * The program's `abort` (build with `--use abort=kilnAbort`): `throw`, failed
 * assertions and runtime errors end here. Writes
 * `abort: MESSAGE in FILE(LINE:COL)` to stderr, then traps, so the client gets
 * GUEST_TRAP with the line in `report.stderr`.
 */
// @ts-ignore: decorator
@global
export function kilnAbort(
  message: string | null = null,
  fileName: string | null = null,
  lineNumber: u32 = 0,
  columnNumber: u32 = 0,
): void {
  if (!aborting) {
    aborting = true; // an abort while reporting one (e.g. out of memory) just traps
    let line = "abort: " + (message !== null ? message : "(no message)");
    if (fileName !== null) line += " in " + fileName + "(" + lineNumber.toString() + ":" + columnNumber.toString() + ")";
    log(line);
  }
  unreachable();
}

// ------------------------------------------------------------- the API ----

/** What the daemon tells the function about this invocation. */
export class Context {
  constructor(
    /** The invocation's id (the report's `requestId`). */
    public readonly requestId: string,
    public readonly functionName: string,
    public readonly functionVersion: u32,
    /** Wall-clock deadline, milliseconds since the Unix epoch. */
    public readonly deadlineMs: u64,
    /** The fuel this call starts with (one unit per instruction). */
    public readonly remainingFuel: u64,
  ) {}
}

export class Request {
  constructor(
    public readonly body: Uint8Array,
    public readonly contentType: string,
    public readonly context: Context,
  ) {}

  /** The body decoded as UTF-8 (invalid sequences become U+FFFD). */
  text(): string {
    return String.UTF8.decodeUnsafe(this.body.dataStart, <usize>this.body.byteLength);
  }
}

/** Build one with respond, respondText or fail. */
export class Response {
  constructor(
    /** true for a handled error (fail). */
    public readonly isError: bool,
    /** The body (ok) or the UTF-8 error code (error). */
    public readonly first: Uint8Array,
    /** The content type (ok) or the error message (error). */
    public readonly second: string,
  ) {}
}

function utf8(text: string): Uint8Array {
  const out = new Uint8Array(String.UTF8.byteLength(text));
  String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, out.dataStart);
  return out;
}

/** A successful response: `body` bytes with `contentType`. */
export function respond(body: Uint8Array, contentType: string): Response {
  return new Response(false, body, contentType);
}

/** A successful response whose body is `text`, UTF-8 encoded. */
export function respondText(text: string, contentType: string = "text/plain"): Response {
  return new Response(false, utf8(text), contentType);
}

/** A handled error: the client gets GUEST_ERROR with `message` and `data.guestCode = code`. */
export function fail(code: string, message: string): Response {
  return new Response(true, utf8(code), message);
}

/** The function's handler; see serve(). */
export type Handler = (req: Request) => Response;

let handler: Handler | null = null;

/** Registers the handler. Call it once, at the top level of your entry file (it runs in `_initialize`). */
export function serve(fn: Handler): void {
  handler = fn;
}

// ---------------------------------------- canonical-ABI glue (exports) ----
// Re-export these three from your entry file; the host calls them, you don't.

// The 20-byte return area: +0 u8 discriminant, +4/+8 first (ptr, len), +12/+16 second (ptr, len).
const RET: usize = memory.data(20, 4);

/** The canonical ABI's allocator; the host allocates the request's lists with it. */
export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (newSize == 0) {
    if (oldPtr != 0 && oldSize != 0) heap.free(oldPtr);
    return align; // any pointer will do for zero bytes; never freed
  }
  // TLSF blocks are 16-byte aligned, which covers every type in this world.
  return oldPtr != 0 && oldSize != 0 ? heap.realloc(oldPtr, newSize) : heap.alloc(newSize);
}

function takeBytes(ptr: usize, len: usize): Uint8Array {
  const out = new Uint8Array(<i32>len);
  if (len != 0) {
    memory.copy(out.dataStart, ptr, len);
    heap.free(ptr);
  }
  return out;
}

function takeString(ptr: usize, len: usize): string {
  if (len == 0) return "";
  const out = String.UTF8.decodeUnsafe(ptr, len);
  heap.free(ptr);
  return out;
}

// Copies bytes into a raw block for the host; cabi_post_handle frees it.
function lowerBytes(ptr: usize, len: usize, at: usize): void {
  let out: usize = 0;
  if (len != 0) {
    out = heap.alloc(len);
    memory.copy(out, ptr, len);
  }
  store<u32>(RET + at, <u32>out);
  store<u32>(RET + at, <u32>len, 4);
}

function lowerString(text: string, at: usize): void {
  const len = <usize>String.UTF8.byteLength(text);
  let out: usize = 0;
  if (len != 0) {
    out = heap.alloc(len);
    String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, out);
  }
  store<u32>(RET + at, <u32>out);
  store<u32>(RET + at, <u32>len, 4);
}

/** The `handle` export: (i32 ×9, i64, i64) -> i32, the request record flattened. */
export function handle(
  bodyPtr: usize, bodyLen: usize,
  typePtr: usize, typeLen: usize,
  idPtr: usize, idLen: usize,
  namePtr: usize, nameLen: usize,
  functionVersion: u32, deadlineMs: u64, remainingFuel: u64,
): usize {
  const req = new Request(
    takeBytes(bodyPtr, bodyLen),
    takeString(typePtr, typeLen),
    new Context(takeString(idPtr, idLen), takeString(namePtr, nameLen), functionVersion, deadlineMs, remainingFuel),
  );
  const fn = handler;
  if (fn === null) throw new Error("kiln: no handler; call serve(fn) at the top level of the entry file");
  const res = fn(req);
  store<u8>(RET, res.isError ? 1 : 0);
  lowerBytes(res.first.dataStart, <usize>res.first.byteLength, 4);
  lowerString(res.second, 12);
  return RET;
}

/** The post-return export: frees the result buffers, then collects this call's garbage. */
export function cabi_post_handle(ret: usize): void {
  if (load<u32>(ret, 8) != 0) heap.free(<usize>load<u32>(ret, 4));
  if (load<u32>(ret, 16) != 0) heap.free(<usize>load<u32>(ret, 12));
  // @ts-ignore: a runtime builtin, not in the editor typings
  __collect();
}
