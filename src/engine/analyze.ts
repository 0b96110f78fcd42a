// Deploy-time inspection of an artifact: is it WebAssembly, and which kind of
// guest is it? Components of the kiln:function/handler world and WASI
// preview-1 commands run; anything else is refused with a reason.
import { InvalidWasmError, UnsupportedWasmError } from '../protocol/errors.js';
import type { GuestKind } from '../protocol/methods.js';
import { HANDLER_EXPORTS, HANDLER_SIGNATURE, REALLOC_SIGNATURE } from './handler-abi.js';
import { PREVIEW1_FUNCTIONS } from './wasi/preview1.js';
import { preview2Signature } from './wasi/preview2.js';
import { exportedFuncType, readModuleInfo, sameSignature, type ImportInfo, type ModuleInfo } from './wasm/module-info.js';
import { Reader, readPreamble, readSections, WasmFormatError, type Section } from './wasm/reader.js';

export const WASI_PREVIEW1 = 'wasi_snapshot_preview1';
const CORE_MODULE_SECTION = 1;

export interface Analysis {
  kind: GuestKind;
  /**
   * The core module Kiln runs. For a component, its main module: the one that
   * implements the handler and reaches the outside world only through WASI
   * preview 1, which Kiln hosts directly instead of through the component's
   * preview-2 adapter (same semantics, no adapter glue on the call path).
   */
  core: Uint8Array;
  info: ModuleInfo;
}

export function analyze(bytes: Uint8Array): Analysis {
  let format: 'core' | 'component';
  try {
    format = readPreamble(bytes);
  } catch (error) {
    throw new InvalidWasmError(`not a WebAssembly binary: ${(error as Error).message}`);
  }
  return format === 'core' ? analyzeCoreModule(bytes) : analyzeComponent(bytes);
}

function checkedModuleInfo(bytes: Uint8Array, what: string): ModuleInfo {
  if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) {
    // Compile only to get V8's reason; validate() alone says nothing.
    let reason = 'validation failed';
    try {
      new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    } catch (error) {
      reason = (error as Error).message.replace(/^WebAssembly\.Module\(\): /, '');
    }
    throw new InvalidWasmError(`${what} is not valid WebAssembly: ${reason}`);
  }
  try {
    return readModuleInfo(bytes);
  } catch (error) {
    if (error instanceof WasmFormatError) throw new UnsupportedWasmError(`${what}: ${error.message}`);
    throw error;
  }
}

const isPreview1 = (i: ImportInfo) => i.module === WASI_PREVIEW1 && i.kind === 'func' && PREVIEW1_FUNCTIONS.has(i.name);

// A component's main module may also import the few preview-2 functions a
// componentize-js guest needs (src/engine/wasi/preview2.ts), with exactly
// their canonical-ABI signatures.
function isHostedPreview2(info: ModuleInfo, i: ImportInfo): boolean {
  const expected = i.kind === 'func' ? preview2Signature(i) : undefined;
  const actual = i.typeIndex === undefined ? undefined : info.types[i.typeIndex];
  return expected !== undefined && actual !== undefined && sameSignature(expected, actual);
}

// Checked at deploy so that a guest Kiln cannot link fails there, not on every invoke.
function requireHostedImports(info: ModuleInfo, what: string, allowPreview2: boolean): void {
  const foreign = info.imports.filter((i) => !isPreview1(i) && !(allowPreview2 && isHostedPreview2(info, i)));
  if (foreign.length > 0) {
    const names = foreign.slice(0, 5).map((i) => `${i.module}.${i.name}`).join(', ');
    const hint = foreign.some((i) => i.module.startsWith('wasi:http/'))
      ? " (a componentize-js guest: build it with disableFeatures: ['http', 'fetch-event'])"
      : '';
    throw new UnsupportedWasmError(
      `${what} imports ${names}; Kiln guests may import only ${WASI_PREVIEW1} functions${allowPreview2 ? ', kiln:function/environment and the preview-2 random, clock and poll functions' : ''}${hint}`,
    );
  }
}

/** The component's producers section names ComponentizeJS (StarlingMonkey inside). */
function builtByComponentizeJs(bytes: Uint8Array, sections: Section[]): boolean {
  return sections.some((s) => {
    if (s.id !== 0) return false;
    const reader = new Reader(bytes, s.start, s.end);
    return reader.name() === 'producers' && Buffer.from(bytes.subarray(reader.offset, s.end)).includes('ComponentizeJS');
  });
}

function analyzeCoreModule(bytes: Uint8Array): Analysis {
  const info = checkedModuleInfo(bytes, 'module');
  const exported = new Set(info.exports.map((e) => e.name));
  if (!exported.has('_start')) {
    throw new UnsupportedWasmError(
      'a core module must be a WASI preview-1 command (export _start); to run a handler, build a component of the kiln:function/handler world',
    );
  }
  requireHostedImports(info, 'the command', false);
  return { kind: 'command', core: bytes, info };
}

function analyzeComponent(bytes: Uint8Array): Analysis {
  let sections: Section[];
  try {
    sections = readSections(bytes);
  } catch (error) {
    throw new InvalidWasmError(`not a valid component: ${(error as Error).message}`);
  }
  const modules = sections.filter((s) => s.id === CORE_MODULE_SECTION).map((s) => bytes.subarray(s.start, s.end));
  const candidates = modules
    .map((core, index) => ({ core, info: checkedModuleInfo(core, `core module ${index} of the component`) }))
    .filter(({ info }) => HANDLER_EXPORTS.every((name) => info.exports.some((e) => e.name === name)));
  if (candidates.length !== 1) {
    throw new UnsupportedWasmError(
      candidates.length === 0
        ? 'the component does not implement the kiln:function/handler world (no core module exports handle, cabi_realloc and memory)'
        : 'the component has several core modules exporting handle; Kiln expects one',
    );
  }
  const { core, info } = candidates[0]!;
  const signature = exportedFuncType(info, 'handle');
  const realloc = exportedFuncType(info, 'cabi_realloc');
  if (!signature || !sameSignature(signature, HANDLER_SIGNATURE) || !realloc || !sameSignature(realloc, REALLOC_SIGNATURE)) {
    throw new UnsupportedWasmError(
      'the component exports handle or cabi_realloc with a different signature than kiln:function/handler@0.1.0 (see wit/handler.wit)',
    );
  }
  requireHostedImports(info, "the component's main module", true);
  // Without its random import a componentize-js guest seeds its randomness at
  // build time: every cold start would repeat the same "random" values.
  if (builtByComponentizeJs(bytes, sections) && !info.imports.some((i) => i.module.startsWith('wasi:random/'))) {
    throw new UnsupportedWasmError(
      "this componentize-js guest was built without random, clocks or stdio; rebuild it with disableFeatures: ['http', 'fetch-event'] only",
    );
  }
  return { kind: 'component', core, info };
}
