// Fuel metering by rewriting a core module: every invocation is charged one
// unit per instruction it executes, so usage can be billed and runaway guests
// stopped, without any help from the engine.
//
// Cost model (what "one unit per instruction" means here):
// - Every executed instruction of the original module costs 1, except the
//   structural markers `block`, `loop`, `else` and `end`, which cost 0: they
//   do no work at run time, and charging them would make a branch's cost
//   depend on how many block ends it jumps over. `if`, `br*`, `return`,
//   `call*`, `nop` and `unreachable` each cost 1. Inserted code costs 0.
// - A basic block is charged in full on entry. Blocks end at `if`, `else`,
//   `end` where paths merge, after `br_if`/`br_on_*` (the fall-through path)
//   and after unconditional transfers, so a call that returns normally has
//   paid for exactly the instructions it executed. A call that traps may
//   have paid for the rest of the basic block it trapped in: still
//   deterministic.
//
// Contract with the host:
// - A new mutable i64 global, appended after all existing globals and
//   exported as `kiln:fuel`, holds the fuel left. The host sets it to the
//   budget before a call; fuel used is budget − value afterwards.
// - Fuel is checked on function entry and at every loop header, after that
//   block's charge; when it is negative the guest stores it to the global and
//   traps with `unreachable`. Every cycle passes a loop header or a function
//   entry, so `loop {}` and unbounded recursion stop. A trap with the global
//   negative is fuel exhaustion. Because checks are not everywhere, a call can
//   also *return* with a slightly negative global (it overran by less than
//   one loop-free stretch of code): treat that as exhaustion too.
// - After a trap other than fuel or `unreachable` (say, a division by zero)
//   the global holds the fuel at the last call boundary.
// - The global starts at FUEL_INITIAL, so a start function can run during
//   instantiation (metered: the host can read what it used).
//
// How it is charged (measured in V8 on this kind of machine; see
// bench/fuel.mjs): inside a function the fuel lives in an i64 local, charged
// per basic block with a branch-free `local.get; i64.const; i64.sub;
// local.set`. Hot code never touches the global: a store to a global on
// every call alone costs call-heavy code 50–70%. So each defined function f
// gets a *twin* f′, appended after all functions (no index moves), whose
// signature carries the fuel in and out: (params…, i64) → (results…, i64).
// Direct calls between defined functions call the twins and pass the fuel
// in registers. f itself becomes a wrapper (global → f′ → global), so
// exports, tables, `ref.func` and the start function keep working, and only
// calls that cross into the unknown (imports, call_indirect, call_ref) write
// the local back to the global before and re-read it after. Functions with
// tail calls keep their own body (no twin) with the fuel in an appended
// local, loaded from the global on entry and written back at every exit.

import { Reader, WasmFormatError, Writer, readPreamble, readSections, skipValType, writeS64, type Section } from '../wasm/reader.js';
import { Op, readOpcode, skipBlockType, skipImmediates } from './opcodes.js';

export const FUEL_GLOBAL_EXPORT = 'kiln:fuel';
/** The fuel global's value when a module is instantiated: 2^63 − 1. */
export const FUEL_INITIAL = 0x7fff_ffff_ffff_ffffn;

const SECTION = { custom: 0, type: 1, import: 2, function: 3, global: 6, export: 7, code: 10 } as const;
/** Where each section id must appear (tag, id 13, sits before global; data count, id 12, before code). */
const SECTION_ORDER = new Map([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [13, 6], [6, 7], [7, 8], [8, 9], [9, 10], [12, 11], [10, 12], [11, 13]]);

const I64 = 0x7e;
const FUNC_TYPE = 0x60;
const EMPTY_BLOCK = 0x40;
const EXTERNAL_GLOBAL = 0x03;
const FUNCTION_NAMES = 1; // name section subsection
const utf8 = new TextEncoder();

interface FuncType {
  params: number;
  results: number;
  /** Encoded value types. */
  paramBytes: Uint8Array;
  resultBytes: Uint8Array;
}

/** Rewrites a core Wasm module so every invocation is charged fuel. Throws WasmFormatError (from ../wasm/reader.js) on malformed input. */
export function instrumentFuel(module: Uint8Array): Uint8Array {
  if (readPreamble(module) !== 'core') throw new WasmFormatError('fuel instrumentation applies to core modules, not components', 0);
  const sections = readSections(module);

  // What the rewrite must know: every function's type and how many globals
  // and imported functions come before the ones we add.
  const types: FuncType[] = [];
  const funcTypes: number[] = [];
  let importedFuncs = 0;
  let globals = 0;
  let code: Section | undefined;
  for (const section of sections) {
    const r = new Reader(module, section.start, section.end);
    switch (section.id) {
      case SECTION.type:
        readTypes(r, types);
        break;
      case SECTION.import: {
        const counts = countImports(r);
        importedFuncs = counts.funcs;
        globals += counts.globals;
        break;
      }
      case SECTION.function:
        for (let n = r.u32(); n > 0; n--) funcTypes.push(r.u32());
        break;
      case SECTION.global:
        globals += r.u32();
        break;
      case SECTION.export:
        refuseFuelExport(r);
        break;
      case SECTION.code:
        code = section;
        break;
    }
  }
  const fuelGlobal = globals;
  const bodies = code ? readBodies(new Reader(module, code.start, code.end), funcTypes.length) : [];
  if (bodies.length !== funcTypes.length) throw new WasmFormatError(`${funcTypes.length} functions but ${bodies.length} bodies`, code?.start ?? 0);

  // Twins: one per defined function without tail calls, each with a new
  // type (deduplicated) carrying the fuel; appended types never move any.
  const newTypes = new Writer();
  let newTypeCount = 0;
  const typeIndexOf = new Map<string, number>();
  const addType = (encoded: Uint8Array): number => {
    const key = encoded.join();
    let index = typeIndexOf.get(key);
    if (index === undefined) {
      index = types.length + newTypeCount++;
      typeIndexOf.set(key, index);
      newTypes.bytes(encoded);
    }
    return index;
  };
  const twinOf = new Int32Array(funcTypes.length).fill(-1);
  const twinTypes: number[] = [];
  const blockTypes: Uint8Array[] = [];
  for (let i = 0; i < funcTypes.length; i++) {
    const type = types[funcTypes[i]!];
    if (type === undefined) throw new WasmFormatError(`function ${importedFuncs + i} has an unknown type index`, 0);
    if (hasTailCall(module, bodies[i]!)) continue;
    twinOf[i] = importedFuncs + funcTypes.length + twinTypes.length;
    twinTypes.push(addType(encodeType(type, true)));
    blockTypes[i] = resultsBlockType(type, addType);
  }

  const out = new Writer(module.length * 2);
  out.bytes(module.subarray(0, 8));
  const appended = { [SECTION.type]: newTypes.view(), [SECTION.global]: globalEntry(), [SECTION.export]: exportEntry(fuelGlobal) };
  const counts = { [SECTION.type]: newTypeCount, [SECTION.global]: 1, [SECTION.export]: 1 };
  const done = new Set<number>();
  const addMissingBefore = (order: number): void => {
    for (const id of [SECTION.type, SECTION.global, SECTION.export] as const) {
      if (!done.has(id) && order > SECTION_ORDER.get(id)! && counts[id] > 0) {
        out.section(id, appendToVector(undefined, counts[id], appended[id]));
        done.add(id);
      }
    }
  };
  const functions = new Writer();
  for (const twinType of twinTypes) functions.u32(twinType);
  for (const section of sections) {
    const r = new Reader(module, section.start, section.end);
    if (section.id !== SECTION.custom) {
      const order = SECTION_ORDER.get(section.id);
      if (order === undefined) throw new WasmFormatError(`unknown section id ${section.id}`, section.start);
      addMissingBefore(order);
    }
    switch (section.id) {
      case SECTION.type:
      case SECTION.global:
      case SECTION.export:
        out.section(section.id, appendToVector(r, counts[section.id], appended[section.id]));
        done.add(section.id);
        break;
      case SECTION.function:
        out.section(section.id, appendToVector(r, twinTypes.length, functions.view()));
        break;
      case SECTION.code:
        out.section(section.id, instrumentCode({ module, types, funcTypes, bodies, twinOf, blockTypes, importedFuncs, fuelGlobal }));
        break;
      case SECTION.custom:
        out.section(section.id, r.name() === 'name' ? withTwinNames(module, section, twinOf, importedFuncs) : module.subarray(section.start, section.end));
        break;
      default:
        out.section(section.id, module.subarray(section.start, section.end));
    }
  }
  addMissingBefore(Infinity);
  return out.finish();
}

/** A vector's contents (none: an empty vector) with `count` encoded entries appended. */
function appendToVector(r: Reader | undefined, count: number, entries: Uint8Array): Uint8Array {
  const w = new Writer(entries.length + 10 + (r ? r.end - r.offset : 0));
  w.u32((r ? r.u32() : 0) + count);
  if (r) w.bytes(r.bytes.subarray(r.offset, r.end));
  w.bytes(entries);
  return w.finish();
}

/**
 * The name section with every twin named like its function, so that stack
 * traces through twins keep their names. A malformed name section does not
 * make a module invalid (engines ignore it), so it is then kept as it is.
 */
function withTwinNames(module: Uint8Array, section: Section, twinOf: Int32Array, importedFuncs: number): Uint8Array {
  const original = module.subarray(section.start, section.end);
  try {
    const r = new Reader(module, section.start, section.end);
    r.name();
    const out = new Writer(original.length + 256);
    out.bytes(module.subarray(section.start, r.offset));
    while (!r.done) {
      const id = r.u8();
      const size = r.u32();
      const end = r.offset + size;
      if (end > r.end) r.fail('name subsection runs past its section');
      if (id !== FUNCTION_NAMES) {
        out.u8(id);
        out.u32(size);
        out.bytes(r.bytes.subarray(r.offset, end));
        r.offset = end;
        continue;
      }
      const count = r.u32();
      const entries = r.offset;
      const twinNames = new Writer();
      let added = 0;
      for (let n = 0; n < count; n++) {
        const twin = twinOf[r.u32() - importedFuncs] ?? -1;
        const name = r.offset;
        r.name();
        if (twin < 0) continue;
        twinNames.u32(twin);
        twinNames.bytes(module.subarray(name, r.offset));
        added++;
      }
      if (r.offset !== end) r.fail('malformed function names');
      const names = new Writer(end - entries + twinNames.length + 5);
      names.u32(count + added);
      names.bytes(module.subarray(entries, end));
      names.bytes(twinNames.view());
      out.section(FUNCTION_NAMES, names.view());
    }
    return out.finish();
  } catch (error) {
    if (error instanceof WasmFormatError) return original;
    throw error;
  }
}

function globalEntry(): Uint8Array {
  const initial: number[] = [];
  writeS64(initial, FUEL_INITIAL);
  return Uint8Array.from([I64, 1 /* mutable */, Op.i64Const, ...initial, Op.end]);
}

function exportEntry(fuelGlobal: number): Uint8Array {
  const w = new Writer(32);
  const name = utf8.encode(FUEL_GLOBAL_EXPORT);
  w.u32(name.length);
  w.bytes(name);
  w.u8(EXTERNAL_GLOBAL);
  w.u32(fuelGlobal);
  return w.finish();
}

function readTypes(r: Reader, types: FuncType[]): void {
  const valTypes = (): { count: number; bytes: Uint8Array } => {
    const count = r.u32();
    const start = r.offset;
    for (let i = 0; i < count; i++) skipValType(r);
    return { count, bytes: r.bytes.subarray(start, r.offset) };
  };
  for (let n = r.u32(); n > 0; n--) {
    const at = r.offset;
    if (r.u8() !== FUNC_TYPE) throw new WasmFormatError('unsupported type definition (only function types are)', at);
    const params = valTypes();
    const results = valTypes();
    types.push({ params: params.count, results: results.count, paramBytes: params.bytes, resultBytes: results.bytes });
  }
}

/** A function type, or its twin's: (params…, i64) → (results…, i64). */
function encodeType(type: FuncType, withFuel: boolean): Uint8Array {
  const w = new Writer(type.paramBytes.length + type.resultBytes.length + 16);
  const extra = withFuel ? 1 : 0;
  w.u8(FUNC_TYPE);
  w.u32(type.params + extra);
  w.bytes(type.paramBytes);
  if (withFuel) w.u8(I64);
  w.u32(type.results + extra);
  w.bytes(type.resultBytes);
  if (withFuel) w.u8(I64);
  return w.finish();
}

/** The block type `[] → results` of a function type (a new type for several results). */
function resultsBlockType(type: FuncType, addType: (encoded: Uint8Array) => number): Uint8Array {
  if (type.results === 0) return Uint8Array.of(EMPTY_BLOCK);
  if (type.results === 1) return type.resultBytes;
  const w = new Writer(8);
  w.s32(addType(encodeType({ ...type, params: 0, paramBytes: new Uint8Array(0) }, false))); // an s33 type index
  return w.finish();
}

function skipLimits(r: Reader): void {
  const flags = r.u8();
  r.skipLeb();
  if (flags & 1) r.skipLeb();
}

function countImports(r: Reader): { funcs: number; globals: number } {
  let funcs = 0;
  let globals = 0;
  for (let n = r.u32(); n > 0; n--) {
    r.name();
    r.name();
    const at = r.offset;
    switch (r.u8()) {
      case 0x00: // function: type index
        r.u32();
        funcs++;
        break;
      case 0x01: // table: reference type, limits
        skipValType(r);
        skipLimits(r);
        break;
      case 0x02: // memory
        skipLimits(r);
        break;
      case 0x03: // global: value type, mutability
        skipValType(r);
        r.u8();
        globals++;
        break;
      case 0x04: // tag: attribute, type index
        r.u8();
        r.u32();
        break;
      default:
        throw new WasmFormatError('unknown import kind', at);
    }
  }
  return { funcs, globals };
}

function refuseFuelExport(r: Reader): void {
  for (let n = r.u32(); n > 0; n--) {
    const at = r.offset;
    if (r.name() === FUEL_GLOBAL_EXPORT) throw new WasmFormatError(`module already exports '${FUEL_GLOBAL_EXPORT}' (instrumented twice?)`, at);
    r.u8();
    r.u32();
  }
}

interface Body {
  start: number;
  end: number;
}

function readBodies(r: Reader, expected: number): Body[] {
  const count = r.u32();
  if (count !== expected) r.fail(`code section has ${count} bodies for ${expected} functions`);
  const bodies: Body[] = [];
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const start = r.offset;
    r.offset += size;
    if (r.offset > r.end) r.fail('function body runs past the code section');
    bodies.push({ start, end: r.offset });
  }
  return bodies;
}

/** Whether a body contains a tail call (which a twin could not make: its results carry the fuel). */
function hasTailCall(module: Uint8Array, body: Body): boolean {
  const r = new Reader(module, body.start, body.end);
  for (let groups = r.u32(); groups > 0; groups--) {
    r.u32();
    skipValType(r);
  }
  while (!r.done) {
    const at = r.offset;
    const op = readOpcode(r);
    if (op === Op.returnCall || op === Op.returnCallIndirect || op === Op.returnCallRef) return true;
    skipImmediates(r, op, at);
  }
  return false;
}

interface CodeContext {
  module: Uint8Array;
  types: FuncType[];
  funcTypes: number[];
  bodies: Body[];
  /** Function index of each defined function's twin, or -1. */
  twinOf: Int32Array;
  /** Block type `[] → results` of each defined function that has a twin. */
  blockTypes: Uint8Array[];
  importedFuncs: number;
  fuelGlobal: number;
}

/** The code section: wrappers (or tail-calling bodies) in the original slots, then the twins. */
function instrumentCode(c: CodeContext): Uint8Array {
  const out = new Writer(c.module.length * 2);
  const twins = c.twinOf.filter((t) => t >= 0).length;
  out.u32(c.bodies.length + twins);
  const body = new Writer(1 << 16);
  const planner = new Planner(c);
  const emit = (fill: () => void): void => {
    body.length = 0;
    fill();
    out.u32(body.length);
    out.bytes(body.view());
  };
  for (let i = 0; i < c.bodies.length; i++) {
    const twin = c.twinOf[i]!;
    const params = c.types[c.funcTypes[i]!]!.params;
    if (twin < 0) emit(() => instrumentBody(c, i, false, planner, body));
    else emit(() => wrapper(body, params, twin, c.fuelGlobal));
  }
  for (let i = 0; i < c.bodies.length; i++) {
    if (c.twinOf[i]! >= 0) emit(() => instrumentBody(c, i, true, planner, body));
  }
  return out.finish();
}

/** f(params) = { global.get; call f′(params, fuel); global.set } — instrumentation, so free. */
function wrapper(out: Writer, params: number, twin: number, fuelGlobal: number): void {
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

// What the planner inserts at a byte offset of the original body.
const ENTRY = 0; // get the fuel, charge the entry block, check
const CHARGE = 1; // subtract a basic block's cost
const LOOP = 2; // charge and check at a loop header
const SAVE = 3; // local → global
const LOAD = 4; // global → local
const PUSH = 5; // twin: push the fuel result before `return`
const FINISH = 6; // twin: close the body's wrapping block, push the fuel result
const CALL_TWIN = 7; // replaces `call f` with `local.get fuel; call f′; local.set fuel`
const LOCAL = 8; // twin: a local index immediate, renumbered past the fuel parameter

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
class Planner {
  at: number[] = [];
  kind: number[] = [];
  value: number[] = [];
  count = 0;
  private frameKind: number[] = [];
  private frameReachable: boolean[] = [];
  private frameTargeted: boolean[] = [];

  constructor(private readonly c: CodeContext) {}

  private add(kind: number, at: number, value = 0): number {
    this.at[this.count] = at;
    this.kind[this.count] = kind;
    this.value[this.count] = value;
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
   * Plans a body from its first instruction. In a twin, `firstLocal` is the
   * index of the first declared local (they move up by one to make room for
   * the fuel parameter); otherwise -1.
   */
  plan(r: Reader, twin: boolean, firstLocal: number): void {
    this.count = 0;
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
          const callee = r.u32() - this.c.importedFuncs;
          const calleeTwin = callee >= 0 ? (this.c.twinOf[callee] ?? -1) : -1;
          if (calleeTwin >= 0) {
            if (reachable) this.add(CALL_TWIN, at, calleeTwin);
          } else {
            add(SAVE, at);
            add(LOAD, r.offset);
          }
          break;
        }
        case Op.callIndirect:
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
          if (twin && index >= firstLocal) this.add(LOCAL, immediate, index + 1);
          break;
        }
        default:
          skipImmediates(r, op, at);
      }
    }
  }
}

/** Emits defined function `i` instrumented: as its twin, or (tail-calling functions) in place. */
function instrumentBody(c: CodeContext, i: number, twin: boolean, planner: Planner, out: Writer): void {
  const { module, fuelGlobal } = c;
  const body = c.bodies[i]!;
  const params = c.types[c.funcTypes[i]!]!.params;
  const r = new Reader(module, body.start, body.end);

  // Locals: in a twin the fuel is the parameter after the others; in place it
  // is a new local after all the others.
  const groups = r.u32();
  const declarations = r.offset;
  let locals = params;
  for (let g = 0; g < groups; g++) {
    locals += r.u32();
    skipValType(r);
  }
  const fuel = twin ? params : locals;
  out.u32(twin ? groups : groups + 1);
  out.bytes(module.subarray(declarations, r.offset));
  if (!twin) {
    out.u32(1);
    out.u8(I64);
  }

  const code = r.offset;
  planner.plan(r, twin, params);

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
    out.bytes(module.subarray(copied, at));
    copied = at;
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
          out.bytes(c.blockTypes[i]!);
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
      case CALL_TWIN: {
        localOp(Op.localGet);
        out.u8(Op.call);
        out.u32(value);
        localOp(Op.localSet);
        const call = new Reader(module, at + 1, body.end);
        call.u32();
        copied = call.offset;
        break;
      }
      case LOCAL: {
        out.u32(value);
        const immediate = new Reader(module, at, body.end);
        immediate.u32();
        copied = immediate.offset;
        break;
      }
    }
  }
  out.bytes(module.subarray(copied, body.end));
}
