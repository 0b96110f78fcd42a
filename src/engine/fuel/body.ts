// The per-function half of the fuel instrumenter: where fuel code goes in a
// function body, and the rewritten body. instrument.ts has the module half,
// the cost model and the contract with the host.

import { Reader, WasmFormatError, Writer, skipValType } from '../wasm/reader.js';
import { Op, readOpcode, skipBlockType, skipImmediates } from './opcodes.js';

const I32 = 0x7f;
const I64 = 0x7e;
const EMPTY_BLOCK = 0x40;

/** What rewriting a body needs to know about the rest of the module. */
export interface CodeContext {
  module: Uint8Array;
  importedFuncs: number;
  fuelGlobal: number;
  /** For every function index: its twin's index, or -1 if it has none. */
  twinOf: Int32Array;
  /** For every table index: its twin table's index, or -1 if it has none. */
  twinTableOf: Int32Array;
  /** For every type index a call_indirect through a twin table uses: the twin type's index. */
  twinTypeOf: Int32Array;
}

export interface Body {
  start: number;
  end: number;
}

/** f(params) = { global.get; call f′(params, fuel); global.set }: what exports, tables and ref.func reach. */
export function wrapper(out: Writer, params: number, twin: number, fuelGlobal: number): void {
  out.u32(0); // no locals
  for (let i = 0; i < params; i++) {
    out.u8(Op.localGet);
    out.u32(i);
  }
  out.u8(Op.globalGet);
  out.u32(fuelGlobal);
  out.u8(Op.call);
  out.u32(twin);
  out.u8(Op.globalSet);
  out.u32(fuelGlobal);
  out.u8(Op.end);
}

/**
 * f′(params, fuel) = { global = fuel; f(params); global }: stands in a twin
 * table for a function that has no twin (an import, a tail-calling function).
 */
export function adapter(out: Writer, params: number, target: number, fuelGlobal: number): void {
  out.u32(0);
  out.u8(Op.localGet);
  out.u32(params);
  out.u8(Op.globalSet);
  out.u32(fuelGlobal);
  for (let i = 0; i < params; i++) {
    out.u8(Op.localGet);
    out.u32(i);
  }
  out.u8(Op.call);
  out.u32(target);
  out.u8(Op.globalGet);
  out.u32(fuelGlobal);
  out.u8(Op.end);
}

// What the planner inserts at a byte offset of the original body.
const ENTRY = 0; // get the fuel, charge the entry block, check
const CHARGE = 1; // subtract a basic block's cost
const LOOP = 2; // charge and check at a loop header
const SAVE = 3; // local → global
const LOAD = 4; // global → local
const PUSH = 5; // twin: push the fuel result before `return`
const FINISH = 6; // twin: close the body's wrapping block, push the fuel result
const CALL_TWIN = 7; // replaces `call f` by `local.get fuel; call f′; local.set fuel`
const CALL_TABLE = 8; // replaces `call_indirect t T` by the same through T's twin table (the fuel goes under the slot index: a scratch local holds it)
const LOCAL = 9; // twin: a local index immediate, renumbered past the fuel parameter

// Control frames.
const FUNCTION = 0;
const BLOCK = 1;
const LOOP_FRAME = 2;
const IF = 3;

/**
 * First pass over a body: decodes every instruction and records where fuel
 * code goes. A block's cost is only known at its end, so charge records are
 * filled in as the walk proceeds and emitted in a second pass.
 */
export class Planner {
  at: number[] = [];
  kind: number[] = [];
  value: number[] = [];
  /** Where copying the original resumes: `at` for insertions, after the replaced bytes otherwise. */
  resume: number[] = [];
  count = 0;
  /** Whether the body needs an i32 scratch local (for CALL_TABLE). */
  scratch = false;
  private frameKind: number[] = [];
  private frameReachable: boolean[] = [];
  private frameTargeted: boolean[] = [];

  constructor(private readonly c: CodeContext) {}

  private add(kind: number, at: number, value = 0, resume = at): number {
    this.at[this.count] = at;
    this.kind[this.count] = kind;
    this.value[this.count] = value;
    this.resume[this.count] = resume;
    return this.count++;
  }

  private push(kind: number, reachable: boolean): void {
    this.frameKind.push(kind);
    this.frameReachable.push(reachable);
    this.frameTargeted.push(false);
  }

  /** Marks the frame `label` targets; true if that is the function body. */
  private target(label: number, at: number): boolean {
    const index = this.frameKind.length - 1 - label;
    if (index < 0) throw new WasmFormatError(`branch depth ${label} out of range`, at);
    this.frameTargeted[index] = true;
    return index === 0;
  }

  /**
   * Plans a body from its first instruction. In a twin, locals from
   * `firstLocal` on move up by one to make room for the fuel parameter.
   */
  plan(r: Reader, twin: boolean, firstLocal: number): void {
    this.count = 0;
    this.scratch = false;
    this.frameKind.length = this.frameReachable.length = this.frameTargeted.length = 0;
    this.push(FUNCTION, true);
    let reachable = true;
    // The record the current basic block's instructions are charged to; -1
    // in unreachable code, which needs no fuel code at all.
    let current = this.add(ENTRY, r.offset);
    const startBlock = (kind: number, at: number): void => {
      current = reachable ? this.add(kind, at) : -1;
    };
    const unreachableFromHere = (): void => {
      reachable = false;
      current = -1;
    };
    const add = (kind: number, at: number): void => {
      if (reachable) this.add(kind, at);
    };
    // Leaving the function: a twin returns the fuel, others store it (a
    // branch to the body's label lands in the twin's wrapping block).
    const leave = (at: number, branch: boolean): void => {
      if (!twin) add(SAVE, at);
      else if (!branch) add(PUSH, at);
    };
    for (;;) {
      const at = r.offset;
      const op = readOpcode(r);
      if (current >= 0 && op !== Op.block && op !== Op.loop && op !== Op.else && op !== Op.end) this.value[current]!++;
      switch (op) {
        case Op.block:
          skipBlockType(r);
          this.push(BLOCK, reachable);
          break;
        case Op.loop:
          skipBlockType(r);
          this.push(LOOP_FRAME, reachable);
          startBlock(LOOP, r.offset);
          break;
        case Op.if:
          skipBlockType(r);
          this.push(IF, reachable);
          startBlock(CHARGE, r.offset);
          break;
        case Op.else:
          if (this.frameKind.at(-1) !== IF) throw new WasmFormatError('else outside an if', at);
          reachable = this.frameReachable.at(-1)!;
          startBlock(CHARGE, r.offset);
          break;
        case Op.end: {
          const kind = this.frameKind.pop();
          const wasReachable = this.frameReachable.pop()!;
          const targeted = this.frameTargeted.pop()!;
          if (kind === FUNCTION) {
            // Always in a twin: its wrapping block must be closed even if
            // only branches reach the end.
            if (twin) this.add(FINISH, at);
            else add(SAVE, at);
            if (r.offset !== r.end) throw new WasmFormatError('function body continues after its final end', r.offset);
            return;
          }
          // After an if, or a block something branches to, paths merge: a new
          // basic block. After a loop or an untargeted block, the only way in
          // is falling through, so the current block simply continues.
          if (kind === IF || (kind === BLOCK && targeted)) {
            reachable = wasReachable;
            startBlock(CHARGE, r.offset);
          }
          break;
        }
        case Op.br:
          if (this.target(r.u32(), at)) leave(at, true);
          unreachableFromHere();
          break;
        case Op.brIf:
        case Op.brOnNull:
        case Op.brOnNonNull:
          if (this.target(r.u32(), at)) leave(at, true);
          startBlock(CHARGE, r.offset);
          break;
        case Op.brTable: {
          let leaves = false;
          for (let n = r.u32(); n >= 0; n--) leaves = this.target(r.u32(), at) || leaves;
          if (leaves) leave(at, true);
          unreachableFromHere();
          break;
        }
        case Op.return:
          leave(at, false);
          unreachableFromHere();
          break;
        case Op.unreachable: // saved so a guest's own trap reports the fuel it used
          add(SAVE, at);
          unreachableFromHere();
          break;
        case Op.call: {
          const callee = this.c.twinOf[r.u32()] ?? -1;
          if (callee >= 0) {
            if (reachable) this.add(CALL_TWIN, at, callee, r.offset);
          } else {
            add(SAVE, at);
            add(LOAD, r.offset);
          }
          break;
        }
        case Op.callIndirect: {
          r.u32(); // type
          if ((this.c.twinTableOf[r.u32()] ?? -1) >= 0) {
            if (reachable) this.add(CALL_TABLE, at, 0, r.offset);
            this.scratch ||= reachable;
          } else {
            add(SAVE, at);
            add(LOAD, r.offset);
          }
          break;
        }
        case Op.callRef:
          skipImmediates(r, op, at);
          add(SAVE, at);
          add(LOAD, r.offset);
          break;
        case Op.returnCall:
        case Op.returnCallIndirect:
        case Op.returnCallRef:
          skipImmediates(r, op, at);
          add(SAVE, at);
          unreachableFromHere();
          break;
        case Op.localGet:
        case Op.localSet:
        case Op.localTee: {
          const immediate = r.offset;
          const index = r.u32();
          // Dead code too: it must still validate against the new numbering.
          if (twin && index >= firstLocal) this.add(LOCAL, immediate, index + 1, r.offset);
          break;
        }
        default:
          skipImmediates(r, op, at);
      }
    }
  }
}

/**
 * Emits a function body with fuel metering: as a twin (the fuel is an extra
 * parameter and result; `blockType` is `[] → results`) or, for functions
 * with tail calls, in place (the fuel is an extra local backed by the global).
 */
export function instrumentBody(c: CodeContext, body: Body, params: number, twin: boolean, blockType: Uint8Array, planner: Planner, out: Writer): void {
  const { module, fuelGlobal } = c;
  const r = new Reader(module, body.start, body.end);

  // Locals: in a twin the fuel is the parameter after the others; in place
  // it is a new local after all the others. Then the scratch local, if any.
  const groups = r.u32();
  const declarations = r.offset;
  let locals = params;
  for (let g = 0; g < groups; g++) {
    locals += r.u32();
    skipValType(r);
  }
  const fuel = twin ? params : locals;
  const scratch = locals + 1;
  const code = r.offset;
  planner.plan(r, twin, params);
  out.u32(groups + (twin ? 0 : 1) + (planner.scratch ? 1 : 0));
  out.copy(module, declarations, code);
  if (!twin) {
    out.u32(1);
    out.u8(I64);
  }
  if (planner.scratch) {
    out.u32(1);
    out.u8(I32);
  }

  const localOp = (op: number): void => {
    out.u8(op);
    out.u32(fuel);
  };
  const globalOp = (op: number): void => {
    out.u8(op);
    out.u32(fuelGlobal);
  };
  const subtract = (cost: number): void => {
    out.u8(Op.i64Const);
    out.s32(cost);
    out.u8(Op.i64Sub);
  };
  // With the fuel on the stack: `if (fuel < 0) { global = local; unreachable }`.
  const check = (): void => {
    out.u8(Op.i64Const);
    out.u8(0);
    out.u8(Op.i64LtS);
    out.u8(Op.if);
    out.u8(EMPTY_BLOCK);
    localOp(Op.localGet);
    globalOp(Op.globalSet);
    out.u8(Op.unreachable);
    out.u8(Op.end);
  };

  let copied = code;
  for (let k = 0; k < planner.count; k++) {
    const at = planner.at[k]!;
    const value = planner.value[k]!;
    out.copy(module, copied, at);
    switch (planner.kind[k]) {
      case ENTRY:
        if (twin) localOp(Op.localGet);
        else globalOp(Op.globalGet);
        if (value > 0) subtract(value);
        if (value > 0 || !twin) localOp(Op.localTee);
        check();
        // A twin's body sits in a block typed like its results, so branches
        // to the body's label land where the fuel result can be pushed.
        if (twin) {
          out.u8(Op.block);
          out.bytes(blockType);
        }
        break;
      case LOOP:
        localOp(Op.localGet);
        if (value > 0) {
          subtract(value);
          localOp(Op.localTee);
        }
        check();
        break;
      case CHARGE:
        if (value > 0) {
          localOp(Op.localGet);
          subtract(value);
          localOp(Op.localSet);
        }
        break;
      case SAVE:
        localOp(Op.localGet);
        globalOp(Op.globalSet);
        break;
      case LOAD:
        globalOp(Op.globalGet);
        localOp(Op.localSet);
        break;
      case PUSH:
        localOp(Op.localGet);
        break;
      case FINISH:
        out.u8(Op.end);
        localOp(Op.localGet);
        break;
      case CALL_TWIN:
        localOp(Op.localGet);
        out.u8(Op.call);
        out.u32(value);
        localOp(Op.localSet);
        break;
      case CALL_TABLE: {
        const immediates = new Reader(module, at + 1, body.end);
        const type = c.twinTypeOf[immediates.u32()]!;
        const table = c.twinTableOf[immediates.u32()]!;
        out.u8(Op.localSet);
        out.u32(scratch);
        localOp(Op.localGet);
        out.u8(Op.localGet);
        out.u32(scratch);
        out.u8(Op.callIndirect);
        out.u32(type);
        out.u32(table);
        localOp(Op.localSet);
        break;
      }
      case LOCAL:
        out.u32(value);
        break;
    }
    copied = planner.resume[k]!;
  }
  out.copy(module, copied, body.end);
}
