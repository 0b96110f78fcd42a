// A cursor over WebAssembly binary encodings: LEB128 integers, names and
// section framing. Shared by the classifier, the component splitter and the
// module rewriters so there is one decoder of the binary format.

export class WasmFormatError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} (at byte ${offset})`);
    this.name = 'WasmFormatError';
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class Reader {
  offset: number;

  constructor(readonly bytes: Uint8Array, offset = 0, readonly end = bytes.length) {
    this.offset = offset;
  }

  get done(): boolean {
    return this.offset >= this.end;
  }

  fail(message: string): never {
    throw new WasmFormatError(message, this.offset);
  }

  u8(): number {
    if (this.offset >= this.end) this.fail('unexpected end of input');
    return this.bytes[this.offset++]!;
  }

  /** Unsigned LEB128 up to 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.u8();
      result |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
      if (shift > 28) {
        if (shift > 35) this.fail('LEB128 integer too long');
      }
    }
    return result >>> 0;
  }

  /** Signed LEB128 up to 32 bits. */
  s32(): number {
    let result = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = this.u8();
      result |= (byte & 0x7f) << shift;
      shift += 7;
      if (shift > 35) this.fail('LEB128 integer too long');
    } while (byte & 0x80);
    if (shift < 32 && byte & 0x40) result |= -1 << shift;
    return result | 0;
  }

  /** Signed LEB128 up to 64 bits, returned as a bigint. */
  s64(): bigint {
    let result = 0n;
    let shift = 0n;
    let byte: number;
    do {
      byte = this.u8();
      result |= BigInt(byte & 0x7f) << shift;
      shift += 7n;
      if (shift > 70n) this.fail('LEB128 integer too long');
    } while (byte & 0x80);
    if (shift < 64n && byte & 0x40) result |= -1n << shift;
    return BigInt.asIntN(64, result);
  }

  /** Skips a LEB128 integer of any width without decoding it. */
  skipLeb(): void {
    while (this.u8() & 0x80) {
      /* continuation bytes */
    }
  }

  bytesOf(length: number): Uint8Array {
    if (this.offset + length > this.end) this.fail('unexpected end of input');
    const slice = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }

  name(): string {
    const length = this.u32();
    const raw = this.bytesOf(length);
    try {
      return utf8.decode(raw);
    } catch {
      return this.fail('name is not valid UTF-8');
    }
  }
}

export interface Section {
  id: number;
  /** Offset of the section's contents (after id and size). */
  start: number;
  end: number;
}

export const CORE_MODULE_VERSION = 0x01;
/** Version + layer word of the component-model binary format. */
export const COMPONENT_VERSION = 0x0d;
export const COMPONENT_LAYER = 0x01;

export type BinaryKind = 'core' | 'component';

/** Reads the preamble: which binary format this is, or an error if neither. */
export function readPreamble(bytes: Uint8Array): BinaryKind {
  if (bytes.length < 8) throw new WasmFormatError('too short to be WebAssembly', 0);
  if (bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmFormatError('missing the \\0asm magic number', 0);
  }
  const version = bytes[4]! | (bytes[5]! << 8);
  const layer = bytes[6]! | (bytes[7]! << 8);
  if (version === CORE_MODULE_VERSION && layer === 0) return 'core';
  if (version === COMPONENT_VERSION && layer === COMPONENT_LAYER) return 'component';
  throw new WasmFormatError(`unsupported binary version ${version} layer ${layer}`, 4);
}

/** The top-level sections of a module or component, in order. */
export function readSections(bytes: Uint8Array): Section[] {
  const reader = new Reader(bytes, 8);
  const sections: Section[] = [];
  while (!reader.done) {
    const id = reader.u8();
    const size = reader.u32();
    const start = reader.offset;
    const end = start + size;
    if (end > bytes.length) reader.fail(`section ${id} runs past the end of the binary`);
    sections.push({ id, start, end });
    reader.offset = end;
  }
  return sections;
}

/** Appends an unsigned LEB128 encoding of `value` to `out`. */
export function writeU32(out: number[], value: number): void {
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
}

/** Appends a signed LEB128 encoding of a 64-bit value to `out`. */
export function writeS64(out: number[], value: bigint): void {
  let v = BigInt.asIntN(64, value);
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const signBit = (byte & 0x40) !== 0;
    if ((v === 0n && !signBit) || (v === -1n && signBit)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/**
 * A growable byte buffer for emitting binaries. Rewriters emit megabytes of
 * code; a typed array that doubles is far cheaper than a number[].
 */
export class Writer {
  private buffer: Uint8Array<ArrayBuffer>;
  length = 0;

  constructor(capacity = 1024) {
    this.buffer = new Uint8Array(Math.max(16, capacity));
  }

  private reserve(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + extra) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  u8(byte: number): void {
    this.reserve(1);
    this.buffer[this.length++] = byte;
  }

  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  /** Appends `source[start, end)`; rewriters copy many short runs, for which a loop beats a subarray. */
  copy(source: Uint8Array, start: number, end: number): void {
    if (end - start > 64) return this.bytes(source.subarray(start, end));
    this.reserve(end - start);
    for (let i = start; i < end; i++) this.buffer[this.length++] = source[i]!;
  }

  /** Unsigned LEB128 up to 32 bits. */
  u32(value: number): void {
    let v = value >>> 0;
    this.reserve(5);
    do {
      let byte = v & 0x7f;
      v >>>= 7;
      if (v !== 0) byte |= 0x80;
      this.buffer[this.length++] = byte;
    } while (v !== 0);
  }

  /** Signed LEB128 up to 32 bits (also a valid encoding of that value as an i64 immediate). */
  s32(value: number): void {
    let v = value | 0;
    this.reserve(5);
    for (;;) {
      const byte = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
        this.buffer[this.length++] = byte;
        return;
      }
      this.buffer[this.length++] = byte | 0x80;
    }
  }

  /** A section: id, size, contents. */
  section(id: number, contents: Uint8Array): void {
    this.u8(id);
    this.u32(contents.length);
    this.bytes(contents);
  }

  /** The bytes written so far (a view, valid until the next write). */
  view(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  /** A copy of the bytes written so far. */
  finish(): Uint8Array<ArrayBuffer> {
    return this.buffer.slice(0, this.length);
  }
}

/** Reference types with a heap-type operand (function references / GC): `ref null ht`, `ref ht`. */
const REF_NULL = 0x63;
const REF = 0x64;

/**
 * Skips a value type. Most are one byte; the typed reference forms carry a
 * heap type (an s33: an abstract type byte or a type index).
 */
export function skipValType(r: Reader): void {
  const code = r.u8();
  if (code === REF_NULL || code === REF) r.skipLeb();
}
