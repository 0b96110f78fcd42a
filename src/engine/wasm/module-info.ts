// What the engine needs to know of a core module's interface without
// compiling it: function types, imports, exports and memory limits.
import { Reader, readSections } from './reader.js';

export type ValueType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';

export interface FuncType {
  params: ValueType[];
  results: ValueType[];
}

export interface MemoryLimits {
  min: number;
  max: number | undefined;
  shared: boolean;
  memory64: boolean;
}

export interface ImportInfo {
  module: string;
  name: string;
  kind: 'func' | 'table' | 'memory' | 'global' | 'tag';
  /** Type index, for functions. */
  typeIndex?: number;
}

export interface ExportInfo {
  name: string;
  kind: 'func' | 'table' | 'memory' | 'global' | 'tag';
  index: number;
}

export interface ModuleInfo {
  types: FuncType[];
  imports: ImportInfo[];
  /** Type index of each function the module defines (after the imported ones). */
  functionTypes: number[];
  memories: MemoryLimits[];
  exports: ExportInfo[];
}

const VALUE_TYPES: Record<number, ValueType> = {
  0x7f: 'i32',
  0x7e: 'i64',
  0x7d: 'f32',
  0x7c: 'f64',
  0x7b: 'v128',
  0x70: 'funcref',
  0x6f: 'externref',
};
const EXTERNAL_KINDS = ['func', 'table', 'memory', 'global', 'tag'] as const;

export const SECTION = {
  custom: 0,
  type: 1,
  import: 2,
  function: 3,
  table: 4,
  memory: 5,
  global: 6,
  export: 7,
  start: 8,
  element: 9,
  code: 10,
  data: 11,
  dataCount: 12,
} as const;

function valueType(reader: Reader): ValueType {
  const code = reader.u8();
  const type = VALUE_TYPES[code];
  if (!type) reader.fail(`unsupported value type 0x${code.toString(16)}`);
  return type;
}

export function readLimits(reader: Reader): MemoryLimits {
  const flags = reader.u8();
  if (flags > 0x07) reader.fail(`unsupported limits flags 0x${flags.toString(16)}`);
  const memory64 = (flags & 0x04) !== 0;
  const read = () => (memory64 ? Number(reader.s64()) : reader.u32());
  const min = read();
  const max = flags & 0x01 ? read() : undefined;
  return { min, max, shared: (flags & 0x02) !== 0, memory64 };
}

function skipTableType(reader: Reader): void {
  valueType(reader);
  readLimits(reader);
}

export function readModuleInfo(bytes: Uint8Array): ModuleInfo {
  const info: ModuleInfo = { types: [], imports: [], functionTypes: [], memories: [], exports: [] };
  for (const section of readSections(bytes)) {
    const reader = new Reader(bytes, section.start, section.end);
    switch (section.id) {
      case SECTION.type:
        for (let count = reader.u32(); count > 0; count--) {
          if (reader.u8() !== 0x60) reader.fail('only function types are supported');
          const params = Array.from({ length: reader.u32() }, () => valueType(reader));
          const results = Array.from({ length: reader.u32() }, () => valueType(reader));
          info.types.push({ params, results });
        }
        break;
      case SECTION.import:
        for (let count = reader.u32(); count > 0; count--) {
          const module = reader.name();
          const name = reader.name();
          const kind = EXTERNAL_KINDS[reader.u8()] ?? reader.fail('unknown import kind');
          const entry: ImportInfo = { module, name, kind };
          if (kind === 'func') entry.typeIndex = reader.u32();
          else if (kind === 'table') skipTableType(reader);
          else if (kind === 'memory') info.memories.push(readLimits(reader));
          else if (kind === 'global') {
            valueType(reader);
            reader.u8();
          } else {
            reader.u8();
            reader.u32();
          }
          info.imports.push(entry);
        }
        break;
      case SECTION.function:
        for (let count = reader.u32(); count > 0; count--) info.functionTypes.push(reader.u32());
        break;
      case SECTION.memory:
        for (let count = reader.u32(); count > 0; count--) info.memories.push(readLimits(reader));
        break;
      case SECTION.export:
        for (let count = reader.u32(); count > 0; count--) {
          const name = reader.name();
          const kind = EXTERNAL_KINDS[reader.u8()] ?? reader.fail('unknown export kind');
          info.exports.push({ name, kind, index: reader.u32() });
        }
        break;
    }
  }
  return info;
}

/** The type of the function an export names, or undefined if it is not a function export. */
export function exportedFuncType(info: ModuleInfo, name: string): FuncType | undefined {
  const entry = info.exports.find((e) => e.kind === 'func' && e.name === name);
  if (!entry) return undefined;
  const imported = info.imports.filter((i) => i.kind === 'func');
  const typeIndex =
    entry.index < imported.length ? imported[entry.index]!.typeIndex : info.functionTypes[entry.index - imported.length];
  return typeIndex === undefined ? undefined : info.types[typeIndex];
}

export const sameSignature = (a: FuncType, b: FuncType): boolean =>
  a.params.join() === b.params.join() && a.results.join() === b.results.join();
