// The instruction set as a rewriter needs it: for every opcode, how its
// immediates are laid out, so that a function body can be walked instruction
// by instruction without a full decoder. Shared by the module rewriters (fuel,
// memory import), which copy bodies through and only act on a few opcodes.
//
// Covered: MVP, sign extension, non-trapping float-to-int and bulk memory
// (0xFC), multi-value, reference types, tail calls, typed function references
// (call_ref, br_on_null, ...), SIMD and relaxed SIMD (0xFD), threads (0xFE),
// multi-memory memargs. Not covered (an unknown-opcode error): exception
// handling and GC, which no toolchain we accept emits.
//
// An opcode is a number: the byte itself, or `prefix << 16 | subopcode` for
// the 0xFC/0xFD/0xFE prefixed families.

import { Reader, WasmFormatError, skipValType } from '../wasm/reader.js';

/** Layouts of the immediates that follow an opcode. */
export const Imm = {
  none: 0,
  /** 0x40, a value type, or an s33 type index. */
  blockType: 1,
  /** A relative branch depth (u32). */
  label: 2,
  /** vec(label) + default label. */
  brTable: 3,
  /** One u32 index (function, type, local, global, table, memory, data, element) or reserved byte. */
  index: 4,
  /** Two u32 indices (call_indirect, memory.copy/init, table.copy/init). */
  twoIndices: 5,
  /** align (bit 6 set: a memory index follows) + offset. */
  memarg: 6,
  /** memarg + one lane byte (SIMD lane loads/stores). */
  memargLane: 7,
  /** One lane byte. */
  lane: 8,
  /** A signed LEB128 constant (i32.const, i64.const). */
  int: 9,
  bytes4: 10,
  bytes8: 11,
  /** 16 raw bytes (v128.const, i8x16.shuffle). */
  bytes16: 12,
  /** vec(valtype) of a typed select. */
  selectTypes: 13,
  /** A heap type, s33 (ref.null). */
  heapType: 14,
} as const;
export type ImmKind = (typeof Imm)[keyof typeof Imm];

/** The opcodes rewriters act on. */
export const Op = {
  unreachable: 0x00,
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  brTable: 0x0e,
  return: 0x0f,
  call: 0x10,
  callIndirect: 0x11,
  returnCall: 0x12,
  returnCallIndirect: 0x13,
  callRef: 0x14,
  returnCallRef: 0x15,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  globalGet: 0x23,
  globalSet: 0x24,
  tableSet: 0x26,
  i64Const: 0x42,
  i64LtS: 0x53,
  i64Sub: 0x7d,
  refNull: 0xd0,
  refFunc: 0xd2,
  brOnNull: 0xd5,
  brOnNonNull: 0xd6,
  tableInit: 0xfc000c,
  tableCopy: 0xfc000e,
  tableGrow: 0xfc000f,
  tableFill: 0xfc0011,
} as const;

const UNKNOWN = -1;

function table(size: number, ranges: ReadonlyArray<readonly [first: number, last: number, kind: ImmKind]>): Int8Array {
  const t = new Int8Array(size).fill(UNKNOWN);
  for (const [first, last, kind] of ranges) t.fill(kind, first, last + 1);
  return t;
}

const SINGLE = table(256, [
  [0x00, 0x01, Imm.none], // unreachable, nop
  [0x02, 0x04, Imm.blockType], // block, loop, if
  [0x05, 0x05, Imm.none], // else
  [0x0b, 0x0b, Imm.none], // end
  [0x0c, 0x0d, Imm.label], // br, br_if
  [0x0e, 0x0e, Imm.brTable],
  [0x0f, 0x0f, Imm.none], // return
  [0x10, 0x10, Imm.index], // call
  [0x11, 0x11, Imm.twoIndices], // call_indirect type table
  [0x12, 0x12, Imm.index], // return_call
  [0x13, 0x13, Imm.twoIndices], // return_call_indirect
  [0x14, 0x15, Imm.index], // call_ref, return_call_ref (type index)
  [0x1a, 0x1b, Imm.none], // drop, select
  [0x1c, 0x1c, Imm.selectTypes],
  [0x20, 0x26, Imm.index], // local.*, global.*, table.get/set
  [0x28, 0x3e, Imm.memarg], // loads, stores
  [0x3f, 0x40, Imm.index], // memory.size/grow (memory index)
  [0x41, 0x42, Imm.int],
  [0x43, 0x43, Imm.bytes4],
  [0x44, 0x44, Imm.bytes8],
  [0x45, 0xc4, Imm.none], // numeric, including sign extension 0xc0-0xc4
  [0xd0, 0xd0, Imm.heapType], // ref.null
  [0xd1, 0xd1, Imm.none], // ref.is_null
  [0xd2, 0xd2, Imm.index], // ref.func
  [0xd4, 0xd4, Imm.none], // ref.as_non_null
  [0xd5, 0xd6, Imm.label], // br_on_null, br_on_non_null
]);

const FC = table(18, [
  [0, 7, Imm.none], // i32/i64.trunc_sat_f32/f64_s/u
  [8, 8, Imm.twoIndices], // memory.init data memory
  [9, 9, Imm.index], // data.drop
  [10, 10, Imm.twoIndices], // memory.copy memory memory
  [11, 11, Imm.index], // memory.fill
  [12, 12, Imm.twoIndices], // table.init element table
  [13, 13, Imm.index], // elem.drop
  [14, 14, Imm.twoIndices], // table.copy table table
  [15, 17, Imm.index], // table.grow/size/fill
]);

const FD = table(0x114, [
  [0x00, 0x0b, Imm.memarg], // v128.load*, load splats, v128.store
  [0x0c, 0x0d, Imm.bytes16], // v128.const, i8x16.shuffle
  [0x0e, 0x14, Imm.none], // swizzle, splats
  [0x15, 0x22, Imm.lane], // extract/replace_lane
  [0x23, 0x53, Imm.none], // comparisons, bitwise, any_true
  [0x54, 0x5b, Imm.memargLane], // v128.load*_lane, v128.store*_lane
  [0x5c, 0x5d, Imm.memarg], // v128.load32/64_zero
  [0x5e, 0x113, Imm.none], // arithmetic, conversions, relaxed SIMD (0x100-0x113)
]);
// Holes in the SIMD numbering (opcodes dropped before standardisation).
for (const hole of [0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee]) {
  FD[hole] = UNKNOWN;
}

const FE = table(0x4f, [
  [0x00, 0x02, Imm.memarg], // memory.atomic.notify, wait32, wait64
  [0x03, 0x03, Imm.index], // atomic.fence (reserved byte)
  [0x10, 0x4e, Imm.memarg], // atomic loads, stores, read-modify-writes
]);

/** The immediate layout of `op`, or undefined if the opcode is unknown. */
export function immediateKind(op: number): ImmKind | undefined {
  const prefix = op >>> 16;
  const t = prefix === 0 ? SINGLE : prefix === 0xfc ? FC : prefix === 0xfd ? FD : prefix === 0xfe ? FE : undefined;
  const kind = t?.[op & 0xffff] ?? UNKNOWN;
  return kind === UNKNOWN ? undefined : (kind as ImmKind);
}

/** "0x1f", "0xfd 0x9a": how an opcode is written in error messages. */
export function opcodeName(op: number): string {
  const hex = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;
  return op > 0xff ? `${hex(op >>> 16)} ${hex(op & 0xffff)}` : hex(op);
}

/** Reads an opcode (a prefixed one as `prefix << 16 | subopcode`). */
export function readOpcode(r: Reader): number {
  const byte = r.u8();
  return byte >= 0xfc && byte <= 0xfe ? (byte << 16) | r.u32() : byte;
}

/** Skips a block type: 0x40 (empty), a value type, or an s33 type index. */
export function skipBlockType(r: Reader): void {
  const first = r.bytes[r.offset];
  if (first === 0x63 || first === 0x64) skipValType(r);
  else r.skipLeb(); // one byte for 0x40 and the value types, an LEB128 for a type index
}

/** Skips a constant expression (a global's initialiser, a segment's offset) through its `end`. */
export function skipConstExpr(r: Reader): void {
  for (;;) {
    const at = r.offset;
    const op = readOpcode(r);
    if (op === Op.end) return;
    skipImmediates(r, op, at);
  }
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.skipLeb(); // multi-memory: explicit memory index
  r.skipLeb(); // offset (u32, or u64 with memory64)
}

/**
 * Skips the immediates of `op`, whose opcode started at byte `at`.
 * Throws WasmFormatError naming the opcode if it is unknown.
 */
export function skipImmediates(r: Reader, op: number, at: number): void {
  switch (immediateKind(op)) {
    case Imm.none:
      return;
    case Imm.blockType:
      return skipBlockType(r);
    case Imm.label:
    case Imm.index:
    case Imm.int:
    case Imm.heapType:
      return r.skipLeb();
    case Imm.twoIndices:
      r.skipLeb();
      return r.skipLeb();
    case Imm.brTable: {
      const count = r.u32();
      for (let i = 0; i <= count; i++) r.skipLeb(); // the targets and the default
      return;
    }
    case Imm.memarg:
      return skipMemarg(r);
    case Imm.memargLane:
      skipMemarg(r);
      r.u8();
      return;
    case Imm.lane:
      r.u8();
      return;
    case Imm.bytes4:
      r.bytesOf(4);
      return;
    case Imm.bytes8:
      r.bytesOf(8);
      return;
    case Imm.bytes16:
      r.bytesOf(16);
      return;
    case Imm.selectTypes: {
      const count = r.u32();
      for (let i = 0; i < count; i++) skipValType(r);
      return;
    }
    case undefined:
      throw new WasmFormatError(`unknown or unsupported opcode ${opcodeName(op)}`, at);
  }
}
