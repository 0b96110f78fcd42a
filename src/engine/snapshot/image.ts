// Memory images: what a guest's initialisation left in its linear memory and
// mutable globals, captured once at prepare time and restored by copy into
// every new instance.
//
// An image is the memory's size plus its non-zero ranges (Wizer's model), so
// a 16 MiB memory holding 200 KiB of state costs 200 KiB to store and to
// restore. Restoring into a pooled memory that a previous instance used
// zeroes what that instance may have dirtied, except where the image's
// segments overwrite anyway, then copies the segments: every byte the new
// instance can see is either from the image or zero, whatever ran before.

import { WASM_PAGE_BYTES } from '../wasm/memory-cap.js';
import { SnapshotError, type GlobalSlot, type TableSlot } from './rewrite.js';

export interface MemorySegment {
  /** Byte offset in linear memory. */
  offset: number;
  bytes: Uint8Array;
}

export interface MemoryImage {
  /** Size of the memory when it was captured, in 64 KiB pages. A restored instance's memory has at least this many. */
  pages: number;
  /** Non-zero ranges, sorted by offset, not overlapping. Everything else is zero. */
  segments: MemorySegment[];
  /** Values of the exposed mutable globals, in the order of the GlobalSlot list (bigint for i64). */
  globals: Array<number | bigint>;
}

/** Zero runs shorter than this between two non-zero ranges are kept inside one segment. */
export const SEGMENT_GAP_BYTES = 64;
/** Granule of the zero scan: whole chunks are compared natively against zeros. */
const SCAN_CHUNK_BYTES = 4096;
const ZERO_CHUNK = Buffer.alloc(SCAN_CHUNK_BYTES);

/** The first and last non-zero byte of a non-zero little-endian word, as offsets 0..3. */
const firstByte = (w: number): number => ((w & 0xff) !== 0 ? 0 : (w & 0xff00) !== 0 ? 1 : (w & 0xff0000) !== 0 ? 2 : 3);
const lastByte = (w: number): number => ((w >>> 24) !== 0 ? 3 : (w & 0xff0000) !== 0 ? 2 : (w & 0xff00) !== 0 ? 1 : 0);

/** Non-zero ranges [start, end) of `buffer`, with zero gaps shorter than SEGMENT_GAP_BYTES coalesced. */
export function nonZeroRanges(buffer: ArrayBuffer): Array<[start: number, end: number]> {
  const length = buffer.byteLength;
  if (length % 4 !== 0) throw new RangeError('buffer length must be a multiple of 4');
  const bytes = Buffer.from(buffer);
  const words = new Uint32Array(buffer);
  const ranges: Array<[number, number]> = [];
  let start = -1;
  let end = -1;
  for (let chunk = 0; chunk < length; chunk += SCAN_CHUNK_BYTES) {
    const chunkEnd = Math.min(chunk + SCAN_CHUNK_BYTES, length);
    // One native memcmp per chunk: a mostly-zero memory is skipped at memory speed.
    if (ZERO_CHUNK.compare(bytes, chunk, chunkEnd, 0, chunkEnd - chunk) === 0) continue;
    for (let i = chunk >>> 2, last = chunkEnd >>> 2; i < last; i++) {
      const w = words[i]!;
      if (w === 0) continue;
      const at = i << 2;
      const first = at + firstByte(w);
      if (start < 0) start = first;
      else if (first - end >= SEGMENT_GAP_BYTES) {
        ranges.push([start, end]);
        start = first;
      }
      end = at + lastByte(w) + 1;
    }
  }
  if (start >= 0) ranges.push([start, end]);
  return ranges;
}

function readGlobal(instance: WebAssembly.Instance, slot: GlobalSlot): WebAssembly.Global {
  const global = instance.exports[slot.exportName];
  if (!(global instanceof WebAssembly.Global)) {
    throw new SnapshotError(`the instance does not export global ${slot.index} as "${slot.exportName}" (was the module passed through exposeGlobals?)`);
  }
  return global;
}

/**
 * Captures what init left: the memory's size, its non-zero ranges (copied
 * into one backing buffer) and the values of the exposed globals.
 */
export function captureImage(memory: WebAssembly.Memory, globals: readonly GlobalSlot[], instance: WebAssembly.Instance): MemoryImage {
  const buffer = memory.buffer;
  if (!(buffer instanceof ArrayBuffer)) throw new SnapshotError('the memory is shared; Kiln snapshots unshared memories only');
  const ranges = nonZeroRanges(buffer);
  let total = 0;
  for (const [start, end] of ranges) total += end - start;
  const store = new Uint8Array(total);
  const source = new Uint8Array(buffer);
  const segments: MemorySegment[] = [];
  let at = 0;
  for (const [start, end] of ranges) {
    store.set(source.subarray(start, end), at);
    segments.push({ offset: start, bytes: store.subarray(at, at + end - start) });
    at += end - start;
  }
  const values = globals.map((slot) => {
    const value = readGlobal(instance, slot).value as number | bigint;
    if ((slot.type === 'i64') !== (typeof value === 'bigint')) {
      throw new SnapshotError(`global ${slot.index} is declared ${slot.type} but holds a ${typeof value}`);
    }
    return value;
  });
  return { pages: buffer.byteLength / WASM_PAGE_BYTES, segments, globals: values };
}

/**
 * Writes `image` into `memory`, which may hold a previous instance's state
 * in its first `dirtyBytes` bytes (0 for a fresh memory, the previous
 * instance's memory size otherwise): zeroes the dirty bytes the segments do
 * not cover, then copies the segments. Grows a memory smaller than the
 * image. Touches nothing past max(dirtyBytes, end of the last segment).
 */
export function restoreImage(memory: WebAssembly.Memory, image: MemoryImage, dirtyBytes: number): void {
  let length = memory.buffer.byteLength;
  const needed = image.pages * WASM_PAGE_BYTES;
  if (length < needed) {
    try {
      memory.grow((needed - length) / WASM_PAGE_BYTES);
    } catch (error) {
      throw new SnapshotError(
        `the snapshot needs ${image.pages} pages but the memory has ${length / WASM_PAGE_BYTES} and cannot grow (${(error as Error).message})`,
      );
    }
    length = needed;
  }
  const bytes = new Uint8Array(memory.buffer);
  const dirty = Math.min(dirtyBytes, length);
  const segments = image.segments;
  let cursor = 0;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (cursor < dirty && cursor < segment.offset) bytes.fill(0, cursor, Math.min(segment.offset, dirty));
    bytes.set(segment.bytes, segment.offset);
    cursor = segment.offset + segment.bytes.length;
  }
  if (cursor < dirty) bytes.fill(0, cursor, dirty);
}

/** Sets the exposed globals of a restored instance to the image's values. */
export function setGlobals(instance: WebAssembly.Instance, globals: readonly GlobalSlot[], values: ReadonlyArray<number | bigint>): void {
  if (values.length !== globals.length) {
    throw new SnapshotError(`the image holds ${values.length} global values but the module exposes ${globals.length}`);
  }
  const exports = instance.exports;
  for (let i = 0; i < globals.length; i++) {
    (exports[globals[i]!.exportName] as WebAssembly.Global).value = values[i]!;
  }
}

// ---- serialisation ---------------------------------------------------------
//
// One Uint8Array, little-endian, so an image can be stored by digest and
// posted to worker threads:
//   0   "KIMG"
//   4   u32 format version (1)
//   8   u32 pages
//   12  u32 global count G
//   16  u32 segment count S
//   20  G × 12 bytes: u32 tag (0 = number as f64, 1 = bigint as i64), 8-byte value
//   ..  S × 8 bytes: u32 offset, u32 length
//   ..  the segments' bytes, back to back
// Decoding checks every bound and returns segments that are views of the input.

const MAGIC = 0x474d494b; // "KIMG" read as a little-endian u32
const FORMAT_VERSION = 1;
const HEADER_BYTES = 20;
const GLOBAL_BYTES = 12;
const SEGMENT_ENTRY_BYTES = 8;

export function encodeImage(image: MemoryImage): Uint8Array<ArrayBuffer> {
  let data = 0;
  for (const s of image.segments) data += s.bytes.length;
  const tableEnd = HEADER_BYTES + image.globals.length * GLOBAL_BYTES + image.segments.length * SEGMENT_ENTRY_BYTES;
  const out = new Uint8Array(tableEnd + data);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, FORMAT_VERSION, true);
  view.setUint32(8, image.pages, true);
  view.setUint32(12, image.globals.length, true);
  view.setUint32(16, image.segments.length, true);
  let at = HEADER_BYTES;
  for (const value of image.globals) {
    if (typeof value === 'bigint') {
      view.setUint32(at, 1, true);
      view.setBigInt64(at + 4, value, true);
    } else {
      view.setUint32(at, 0, true);
      view.setFloat64(at + 4, value, true);
    }
    at += GLOBAL_BYTES;
  }
  let dataAt = tableEnd;
  for (const s of image.segments) {
    view.setUint32(at, s.offset, true);
    view.setUint32(at + 4, s.bytes.length, true);
    at += SEGMENT_ENTRY_BYTES;
    out.set(s.bytes, dataAt);
    dataAt += s.bytes.length;
  }
  return out;
}

export function decodeImage(encoded: Uint8Array): MemoryImage {
  const corrupt = (what: string): never => {
    throw new SnapshotError(`the snapshot image is corrupt: ${what}`);
  };
  if (encoded.length < HEADER_BYTES) corrupt(`${encoded.length} bytes is shorter than the header`);
  const view = new DataView(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  if (view.getUint32(0, true) !== MAGIC) corrupt('missing the KIMG magic number');
  const version = view.getUint32(4, true);
  if (version !== FORMAT_VERSION) corrupt(`format version ${version}; this Kiln reads version ${FORMAT_VERSION}`);
  const pages = view.getUint32(8, true);
  if (pages > 65536) corrupt(`${pages} pages is more than a 32-bit memory can have`);
  const globalCount = view.getUint32(12, true);
  const segmentCount = view.getUint32(16, true);
  const tableEnd = HEADER_BYTES + globalCount * GLOBAL_BYTES + segmentCount * SEGMENT_ENTRY_BYTES;
  if (tableEnd > encoded.length) corrupt('the global and segment tables run past the end');
  const globals: Array<number | bigint> = [];
  let at = HEADER_BYTES;
  for (let i = 0; i < globalCount; i++, at += GLOBAL_BYTES) {
    const tag = view.getUint32(at, true);
    if (tag === 0) globals.push(view.getFloat64(at + 4, true));
    else if (tag === 1) globals.push(view.getBigInt64(at + 4, true));
    else corrupt(`global ${i} has unknown tag ${tag}`);
  }
  const memoryBytes = pages * WASM_PAGE_BYTES;
  const segments: MemorySegment[] = [];
  let dataAt = tableEnd;
  let previousEnd = 0;
  for (let i = 0; i < segmentCount; i++, at += SEGMENT_ENTRY_BYTES) {
    const offset = view.getUint32(at, true);
    const length = view.getUint32(at + 4, true);
    if (offset < previousEnd) corrupt(`segment ${i} at ${offset} overlaps or precedes the one before`);
    if (offset + length > memoryBytes) corrupt(`segment ${i} ends at ${offset + length}, past the memory's ${memoryBytes} bytes`);
    if (dataAt + length > encoded.length) corrupt(`segment ${i}'s bytes run past the end`);
    segments.push({ offset, bytes: encoded.subarray(dataAt, dataAt + length) });
    dataAt += length;
    previousEnd = offset + length;
  }
  if (dataAt !== encoded.length) corrupt(`${encoded.length - dataAt} trailing bytes`);
  return { pages, segments, globals };
}

// ---- tables ----------------------------------------------------------------

/** A table's length and entries, comparable across instances of the same module. */
export interface TableState {
  index: number;
  length: number;
  /**
   * Per entry: null, `func <n>` for a Wasm function (V8 names exported
   * function wrappers after their function index), or the value itself
   * (compared by identity) for anything else.
   */
  entries: unknown[];
}

function entryKey(value: unknown): unknown {
  return typeof value === 'function' ? `func ${(value as { name: string }).name}` : value;
}

const describeEntry = (key: unknown): string =>
  key === null || key === undefined ? 'null' : typeof key === 'string' && key.startsWith('func ') ? `function ${key.slice(5)}` : 'a host reference';

/** Reads every table exposed by exposeTables. */
export function captureTables(instance: WebAssembly.Instance, tables: readonly TableSlot[]): TableState[] {
  return tables.map((slot) => {
    const table = instance.exports[slot.exportName];
    if (!(table instanceof WebAssembly.Table)) {
      throw new SnapshotError(`the instance does not export table ${slot.index} as "${slot.exportName}" (was the module passed through exposeTables?)`);
    }
    const entries: unknown[] = new Array(table.length);
    for (let i = 0; i < table.length; i++) entries[i] = entryKey(table.get(i));
    return { index: slot.index, length: table.length, entries };
  });
}

/**
 * Refuses a snapshot whose init changed a table: restored instances get
 * their tables from instantiation (element segments), not from the image,
 * so a changed table would restore wrong.
 */
export function checkTablesUnchanged(before: readonly TableState[], after: readonly TableState[]): void {
  const advice = 'Kiln rebuilds tables at instantiation and cannot snapshot a table that init changed';
  if (before.length !== after.length) throw new SnapshotError(`the number of tables changed from ${before.length} to ${after.length}; ${advice}`);
  for (let t = 0; t < before.length; t++) {
    const a = before[t]!;
    const b = after[t]!;
    if (a.length !== b.length) {
      throw new SnapshotError(`init changed the length of table ${a.index} from ${a.length} to ${b.length}; ${advice}`);
    }
    for (let i = 0; i < a.length; i++) {
      if (a.entries[i] !== b.entries[i]) {
        throw new SnapshotError(
          `init changed entry ${i} of table ${a.index} from ${describeEntry(a.entries[i])} to ${describeEntry(b.entries[i])}; ${advice}`,
        );
      }
    }
  }
}
