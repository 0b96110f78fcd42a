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
//   paid for exactly the instructions it executed, every time.
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
// - A guest's own `unreachable` stores the fuel first, so the global is
//   exact (and not negative) after it. After other traps (a division by zero,
//   an out-of-bounds access, a stack overflow) the global still holds the
//   value it had when the host called in or at the guest's last call to an
//   import: deterministic, but not the fuel used.
// - The global starts at FUEL_INITIAL, so a start function can run during
//   instantiation (metered: the host can read what it used).
//
// How it is charged (measured in V8 on this kind of machine; bench/fuel.mjs):
// inside a function the fuel lives in an i64 local, charged per basic block
// with a branch-free `local.get; i64.const; i64.sub; local.set`. Hot code
// never touches the global: storing to a global once per call alone costs
// call-heavy code 50–70% (fib), whatever the local does. So each defined
// function f gets a *twin* f′, appended after all functions (no index moves),
// whose signature carries the fuel in and out: (params…, i64) →
// (results…, i64). Direct calls call twins, passing the fuel in registers.
// f itself becomes a wrapper (global → f′ → global), so exports, `ref.func`,
// the start function and anything else holding f keep working.
// - Indirect calls: a funcref table that nothing can change after
//   instantiation (defined here, not exported, no table.set/grow/fill/copy/
//   init into it) gets a twin table holding the twins at the same slots, and
//   `call_indirect` goes through it with the twin's type: bounds, null and
//   signature checks trap exactly as before. Other tables, call_ref and
//   imports are called with the local written to the global before and
//   re-read after.
// - Functions with tail calls (a twin cannot make them: its results carry the
//   fuel) keep their own body instead, with the fuel in an appended local
//   loaded from the global on entry and stored back at every exit. They, and
//   imported functions, stand in twin tables through small adapters.

import { Reader, WasmFormatError, Writer, readPreamble, readSections, skipValType, writeS64, type Section } from '../wasm/reader.js';
import { adapter, instrumentBody, Planner, wrapper, type Body, type CodeContext } from './body.js';
import { Op, readOpcode, skipConstExpr, skipImmediates } from './opcodes.js';

export const FUEL_GLOBAL_EXPORT = 'kiln:fuel';
/** The fuel global's value when a module is instantiated: 2^63 − 1. */
export const FUEL_INITIAL = 0x7fff_ffff_ffff_ffffn;

const SECTION = { custom: 0, type: 1, import: 2, function: 3, table: 4, global: 6, export: 7, element: 9, code: 10 } as const;
/** Where each section id must appear (tag, id 13, sits before global; data count, id 12, before code). */
const SECTION_ORDER = new Map([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [13, 6], [6, 7], [7, 8], [8, 9], [9, 10], [12, 11], [10, 12], [11, 13]]);

const I64 = 0x7e;
const FUNCREF = 0x70;
const FUNC_TYPE = 0x60;
const EMPTY_BLOCK = Uint8Array.of(0x40);
const EXTERNAL_TABLE = 0x01;
const EXTERNAL_GLOBAL = 0x03;
// Element segment forms: table index, offset, then element kind and function indices, or reference type and expressions.
const ACTIVE_TABLE_INDICES = 2;
const ACTIVE_TABLE_EXPRESSIONS = 6;
const ELEMENT_KIND_FUNC = 0x00;
const FUNCTION_NAMES = 1; // name section subsection
const utf8 = new TextEncoder();

interface FuncType {
  params: number;
  results: number;
  /** Encoded value types. */
  paramBytes: Uint8Array;
  resultBytes: Uint8Array;
}

interface Table {
  /** Whether nothing can change it after instantiation, so a twin table can mirror it. */
  twinnable: boolean;
  /** Encoded table type (reference type and limits) of a table defined here. */
  type?: Uint8Array;
}

/** An active element segment of function references. */
interface Segment {
  table: number;
  /** The offset expression, `end` included. */
  offset: Uint8Array;
  /** Function indices, -1 for null. */
  elements: number[];
}

/** What the rewrite must know about the module. */
interface Scan {
  types: FuncType[];
  /** Type index of every function, imported ones first. */
  funcTypes: number[];
  importedFuncs: number;
  globals: number;
  tables: Table[];
  segments: Segment[];
  bodies: Body[];
}

/** Rewrites a core Wasm module so every invocation is charged fuel. Throws WasmFormatError (from ../wasm/reader.js) on malformed input. */
export function instrumentFuel(input: Uint8Array): Uint8Array<ArrayBuffer> {
  // A plain view: a Node Buffer's subarray() is several times slower.
  const module = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (readPreamble(module) !== 'core') throw new WasmFormatError('fuel instrumentation applies to core modules, not components', 0);
  const sections = readSections(module);
  const s = scan(module, sections);
  const imported = s.importedFuncs;
  const defined = s.bodies.length;
  const typeOf = (func: number): FuncType => {
    const type = s.types[s.funcTypes[func]!];
    if (type === undefined) throw new WasmFormatError(`function ${func} has an unknown type index`, 0);
    return type;
  };

  // Which tables call_indirect uses, with which types; which functions make
  // tail calls; which tables code can change.
  const indirect = new Map<number, Set<number>>();
  const tailCalls = s.bodies.map((body) => scanBody(module, body, s.tables, indirect));

  // New types (deduplicated) and functions, appended so no index moves.
  const newTypes = new Writer();
  let newTypeCount = 0;
  const typeIndexOf = new Map<string, number>();
  const addType = (encoded: Uint8Array): number => {
    const key = encoded.join();
    let index = typeIndexOf.get(key);
    if (index === undefined) {
      index = s.types.length + newTypeCount++;
      typeIndexOf.set(key, index);
      newTypes.bytes(encoded);
    }
    return index;
  };
  const newFuncTypes = new Writer();
  let nextFunc = imported + defined;
  const addFunc = (type: FuncType): number => {
    newFuncTypes.u32(addType(encodeType(type, true)));
    return nextFunc++;
  };

  const twinOf = new Int32Array(imported + defined).fill(-1);
  const blockTypes: Uint8Array[] = [];
  for (let i = 0; i < defined; i++) {
    if (tailCalls[i]) continue;
    const type = typeOf(imported + i);
    twinOf[imported + i] = addFunc(type);
    blockTypes[i] = resultsBlockType(type, addType);
  }

  const twinTableOf = new Int32Array(s.tables.length).fill(-1);
  const twinTypeOf = new Int32Array(s.types.length).fill(-1);
  const newTables = new Writer();
  let newTableCount = 0;
  for (const [table, types] of indirect) {
    const t = s.tables[table];
    if (!t?.twinnable || !t.type) continue;
    twinTableOf[table] = s.tables.length + newTableCount++;
    newTables.bytes(t.type);
    for (const type of types) {
      const twinType = s.types[type];
      if (twinType === undefined) throw new WasmFormatError(`call_indirect with unknown type index ${type}`, 0);
      twinTypeOf[type] = addType(encodeType(twinType, true));
    }
  }

  // Twin tables start as copies of their tables with twins for functions;
  // functions without a twin get an adapter.
  const adapters: number[] = [];
  const adapterOf = new Map<number, number>();
  const newSegments = new Writer();
  let newSegmentCount = 0;
  for (const segment of s.segments) {
    const twinTable = twinTableOf[segment.table] ?? -1;
    if (twinTable < 0) continue;
    // Function indices where there are no nulls (the compact form), else expressions.
    const indices = segment.elements.every((func) => func >= 0);
    newSegments.u32(indices ? ACTIVE_TABLE_INDICES : ACTIVE_TABLE_EXPRESSIONS);
    newSegments.u32(twinTable);
    newSegments.bytes(segment.offset);
    newSegments.u8(indices ? ELEMENT_KIND_FUNC : FUNCREF);
    newSegments.u32(segment.elements.length);
    for (const func of segment.elements) {
      if (func < 0) {
        newSegments.bytes(Uint8Array.of(Op.refNull, FUNCREF, Op.end));
        continue;
      }
      let entry = twinOf[func] ?? -1;
      if (entry < 0) entry = adapterOf.get(func) ?? -1;
      if (entry < 0) {
        entry = addFunc(typeOf(func));
        adapterOf.set(func, entry);
        adapters.push(func);
      }
      if (!indices) newSegments.u8(Op.refFunc);
      newSegments.u32(entry);
      if (!indices) newSegments.u8(Op.end);
    }
    newSegmentCount++;
  }

  const context: CodeContext = { module, importedFuncs: imported, fuelGlobal: s.globals, twinOf, twinTableOf, twinTypeOf };
  const appendices = new Map<number, { count: number; entries: Uint8Array }>([
    [SECTION.type, { count: newTypeCount, entries: newTypes.view() }],
    [SECTION.function, { count: nextFunc - imported - defined, entries: newFuncTypes.view() }],
    [SECTION.table, { count: newTableCount, entries: newTables.view() }],
    [SECTION.global, { count: 1, entries: globalEntry() }],
    [SECTION.export, { count: 1, entries: exportEntry(s.globals) }],
    [SECTION.element, { count: newSegmentCount, entries: newSegments.view() }],
  ]);

  const out = new Writer(module.length * 2);
  out.bytes(module.subarray(0, 8));
  // Appendices to sections the module lacks become sections of their own.
  const addMissingBefore = (order: number): void => {
    for (const [id, appendix] of appendices) {
      if (order <= SECTION_ORDER.get(id)!) continue;
      if (appendix.count > 0) out.section(id, appendToVector(undefined, appendix.count, appendix.entries));
      appendices.delete(id);
    }
  };
  for (const section of sections) {
    const r = new Reader(module, section.start, section.end);
    if (section.id !== SECTION.custom) addMissingBefore(SECTION_ORDER.get(section.id)!);
    const appendix = appendices.get(section.id);
    if (appendix) {
      out.section(section.id, appendToVector(r, appendix.count, appendix.entries));
      appendices.delete(section.id);
    } else if (section.id === SECTION.code) {
      out.section(section.id, instrumentCode(context, s, blockTypes, adapters));
    } else if (section.id === SECTION.custom && r.name() === 'name') {
      out.section(section.id, withTwinNames(module, section, twinOf));
    } else {
      out.section(section.id, module.subarray(section.start, section.end));
    }
  }
  addMissingBefore(Infinity);
  return out.finish();
}

function scan(module: Uint8Array, sections: Section[]): Scan {
  const s: Scan = { types: [], funcTypes: [], importedFuncs: 0, globals: 0, tables: [], segments: [], bodies: [] };
  for (const section of sections) {
    const r = new Reader(module, section.start, section.end);
    switch (section.id) {
      case SECTION.type:
        readTypes(r, s.types);
        break;
      case SECTION.import:
        readImports(r, s);
        break;
      case SECTION.function:
        for (let n = r.u32(); n > 0; n--) s.funcTypes.push(r.u32());
        break;
      case SECTION.table:
        readTables(r, s.tables);
        break;
      case SECTION.global:
        s.globals += r.u32();
        break;
      case SECTION.export:
        readExports(r, s.tables);
        break;
      case SECTION.element:
        readSegments(r, s);
        break;
      case SECTION.code:
        s.bodies = readBodies(r);
        break;
      default:
        if (section.id !== SECTION.custom && !SECTION_ORDER.has(section.id)) throw new WasmFormatError(`unknown section id ${section.id}`, section.start);
    }
  }
  const defined = s.funcTypes.length - s.importedFuncs;
  if (s.bodies.length !== defined) throw new WasmFormatError(`${defined} functions but ${s.bodies.length} bodies`, 8);
  return s;
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

function skipLimits(r: Reader): void {
  const flags = r.u8();
  r.skipLeb();
  if (flags & 1) r.skipLeb();
}

function readImports(r: Reader, s: Scan): void {
  for (let n = r.u32(); n > 0; n--) {
    r.name();
    r.name();
    const at = r.offset;
    switch (r.u8()) {
      case 0x00: // function: type index
        s.funcTypes.push(r.u32());
        s.importedFuncs++;
        break;
      case EXTERNAL_TABLE: // reference type, limits
        skipValType(r);
        skipLimits(r);
        s.tables.push({ twinnable: false });
        break;
      case 0x02: // memory
        skipLimits(r);
        break;
      case EXTERNAL_GLOBAL: // value type, mutability
        skipValType(r);
        r.u8();
        s.globals++;
        break;
      case 0x04: // tag: attribute, type index
        r.u8();
        r.u32();
        break;
      default:
        throw new WasmFormatError('unknown import kind', at);
    }
  }
}

function readTables(r: Reader, tables: Table[]): void {
  for (let n = r.u32(); n > 0; n--) {
    const start = r.offset;
    if (r.bytes[start] === 0x40) {
      // A table with an initialiser (function references): 0x40 0x00, type, expression.
      r.u8();
      r.u8();
      skipValType(r);
      skipLimits(r);
      skipConstExpr(r);
      tables.push({ twinnable: false });
    } else {
      const reference = r.bytes[start];
      skipValType(r);
      skipLimits(r);
      tables.push({ twinnable: reference === FUNCREF, type: r.bytes.subarray(start, r.offset) });
    }
  }
}

function readExports(r: Reader, tables: Table[]): void {
  for (let n = r.u32(); n > 0; n--) {
    const at = r.offset;
    if (r.name() === FUEL_GLOBAL_EXPORT) throw new WasmFormatError(`module already exports '${FUEL_GLOBAL_EXPORT}' (instrumented twice?)`, at);
    const kind = r.u8();
    const index = r.u32();
    const table = kind === EXTERNAL_TABLE ? tables[index] : undefined;
    if (table) table.twinnable = false; // the host can change it
  }
}

/** Element segments: the active ones of plain function references; a table other segments fill cannot be twinned. */
function readSegments(r: Reader, s: Scan): void {
  for (let n = r.u32(); n > 0; n--) {
    const flags = r.u32();
    const active = (flags & 1) === 0;
    const table = active && flags & 2 ? r.u32() : 0;
    const offsetStart = r.offset;
    if (active) skipConstExpr(r);
    const offset = r.bytes.subarray(offsetStart, r.offset);
    const expressions = (flags & 4) !== 0;
    if (flags & 3) {
      if (expressions) skipValType(r);
      else r.u8(); // element kind
    }
    const elements: number[] = [];
    let plain = true;
    for (let k = r.u32(); k > 0; k--) {
      if (!expressions) {
        elements.push(r.u32());
        continue;
      }
      const start = r.offset;
      skipConstExpr(r);
      const e = new Reader(r.bytes, start, r.offset);
      const op = e.u8();
      if (op === Op.refFunc) elements.push(e.u32());
      else if (op === Op.refNull) {
        e.skipLeb();
        elements.push(-1);
      } else plain = false;
      if (e.offset !== r.offset - 1) plain = false; // more than one instruction
    }
    if (!active) continue;
    const target = s.tables[table];
    if (plain) s.segments.push({ table, offset, elements });
    else if (target) target.twinnable = false;
  }
}

function readBodies(r: Reader): Body[] {
  const bodies: Body[] = [];
  for (let n = r.u32(); n > 0; n--) {
    const size = r.u32();
    const start = r.offset;
    r.offset += size;
    if (r.offset > r.end) r.fail('function body runs past the code section');
    bodies.push({ start, end: r.offset });
  }
  return bodies;
}

/**
 * Notes the tables and types a body calls indirectly and the tables it
 * changes; returns whether it makes tail calls.
 */
function scanBody(module: Uint8Array, body: Body, tables: Table[], indirect: Map<number, Set<number>>): boolean {
  const r = new Reader(module, body.start, body.end);
  for (let groups = r.u32(); groups > 0; groups--) {
    r.u32();
    skipValType(r);
  }
  const changes = (index: number): void => {
    const table = tables[index];
    if (table) table.twinnable = false;
  };
  let tailCalls = false;
  while (!r.done) {
    const at = r.offset;
    const op = readOpcode(r);
    switch (op) {
      case Op.returnCall:
      case Op.returnCallIndirect:
      case Op.returnCallRef:
        tailCalls = true;
        skipImmediates(r, op, at);
        break;
      case Op.callIndirect: {
        const type = r.u32();
        const table = r.u32();
        const types = indirect.get(table) ?? new Set<number>();
        indirect.set(table, types.add(type));
        break;
      }
      case Op.tableSet:
      case Op.tableGrow:
      case Op.tableFill:
        changes(r.u32());
        break;
      case Op.tableInit: // element segment, table
        r.u32();
        changes(r.u32());
        break;
      case Op.tableCopy: // destination, source
        changes(r.u32());
        r.u32();
        break;
      default:
        skipImmediates(r, op, at);
    }
  }
  return tailCalls;
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
  if (type.results === 0) return EMPTY_BLOCK;
  if (type.results === 1) return type.resultBytes;
  const w = new Writer(8);
  w.s32(addType(encodeType({ ...type, params: 0, paramBytes: new Uint8Array(0) }, false))); // an s33 type index
  return w.finish();
}

/** A vector's contents (none: an empty vector) with `count` encoded entries appended. */
function appendToVector(r: Reader | undefined, count: number, entries: Uint8Array): Uint8Array {
  const w = new Writer(entries.length + 10 + (r ? r.end - r.offset : 0));
  w.u32((r ? r.u32() : 0) + count);
  if (r) w.bytes(r.bytes.subarray(r.offset, r.end));
  w.bytes(entries);
  return w.view();
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
  return w.view();
}

/** The code section: wrappers (or tail-calling bodies) in the original slots, then twins, then adapters. */
function instrumentCode(c: CodeContext, s: Scan, blockTypes: Uint8Array[], adapters: number[]): Uint8Array {
  const out = new Writer(c.module.length * 2);
  const twins = c.twinOf.filter((t) => t >= 0).length;
  out.u32(s.bodies.length + twins + adapters.length);
  const body = new Writer(1 << 16);
  const planner = new Planner(c);
  const emit = (fill: () => void): void => {
    body.length = 0;
    fill();
    out.u32(body.length);
    out.bytes(body.view());
  };
  const params = (func: number): number => s.types[s.funcTypes[func]!]!.params;
  s.bodies.forEach((code, i) => {
    const func = s.importedFuncs + i;
    const twin = c.twinOf[func]!;
    if (twin < 0) emit(() => instrumentBody(c, code, params(func), false, EMPTY_BLOCK, planner, body));
    else emit(() => wrapper(body, params(func), twin, c.fuelGlobal));
  });
  s.bodies.forEach((code, i) => {
    const func = s.importedFuncs + i;
    if (c.twinOf[func]! >= 0) emit(() => instrumentBody(c, code, params(func), true, blockTypes[i]!, planner, body));
  });
  for (const func of adapters) emit(() => adapter(body, params(func), func, c.fuelGlobal));
  return out.view(); // copied straight into the module
}

/**
 * The name section with every twin named like its function, so that stack
 * traces through twins keep their names. A malformed name section does not
 * make a module invalid (engines ignore it), so it is then kept as it is.
 */
function withTwinNames(module: Uint8Array, section: Section, twinOf: Int32Array): Uint8Array {
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
        const twin = twinOf[r.u32()] ?? -1;
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
