#!/usr/bin/env node
// Builds every guest the tests and benchmarks use, from source, into
// build/guests/, with the same toolchains `kiln build` drives
// (src/toolchain/, so run `npm run build` first). Rebuilds a guest only when
// one of its inputs is newer than its output.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileAssemblyScript, compileC, compileCpp, compileRust, ToolchainError } from '../dist/toolchain/compilers.js';
import { wrapComponent } from '../dist/toolchain/component.js';
import { componentizeJs } from '../dist/toolchain/javascript.js';
import { HANDLER_WIT, SDK } from '../dist/toolchain/paths.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'guests');
const otherWit = join(root, 'test', 'guests', 'other-world', 'world.wit');

const filesIn = (dir, extension) =>
  existsSync(dir) ? readdirSync(dir).filter((f) => extname(f) === extension).map((f) => join(dir, f)) : [];

// A handler component: compile the core module, then wrap it.
const component = (compileCore, wit = HANDLER_WIT, world = 'handler') => async (source, output) => {
  const core = output.replace(/\.wasm$/, '.core.wasm');
  compileCore(source, core);
  writeFileSync(output, await wrapComponent(readFileSync(core), readFileSync(wit, 'utf8'), world));
};
const c = (source, core) => compileC(source, core, { include: [SDK.c] });

// [source folder, extension, output folder, inputs besides the source, build]
const GROUPS = [
  [join(SDK.c, 'examples'), '.c', 'c', [join(SDK.c, 'kiln.h'), HANDLER_WIT], component(c)],
  [join(SDK.cpp, 'examples'), '.cpp', 'cpp', [join(SDK.cpp, 'kiln.hpp'), join(SDK.c, 'kiln.h'), HANDLER_WIT],
    component((source, core) => compileCpp(source, core, { include: [SDK.cpp] }))],
  // From the repository root, so panic messages name guest-sdk/rust/examples/….
  [join(SDK.rust, 'examples'), '.rs', 'rust', [join(SDK.rust, 'src', 'lib.rs'), HANDLER_WIT],
    component((source, core) => compileRust(source, core, root))],
  [join(SDK.as, 'examples'), '.ts', 'as', [join(SDK.as, 'assembly', 'kiln.ts'), join(SDK.as, 'asconfig.json'), HANDLER_WIT],
    component((source, core) => compileAssemblyScript(source, core, join(SDK.as, 'asconfig.json'), root))],
  // componentize-js makes the component itself; the loop builds one guest at a time (each takes ~800 MB).
  [join(SDK.js, 'examples'), '.js', 'js', [join(SDK.js, 'kiln.js'), HANDLER_WIT],
    async (source, output) => {
      mkdirSync(dirname(output), { recursive: true });
      writeFileSync(output, await componentizeJs(source));
    }],
  [join(root, 'test', 'guests', 'component'), '.c', 'component', [join(SDK.c, 'kiln.h'), HANDLER_WIT], component(c)],
  [join(root, 'guest-sdk', 'command'), '.c', 'cmd', [], async (source, output) => compileC(source, output, { reactor: false })],
  [join(root, 'test', 'guests', 'command'), '.c', 'command', [], async (source, output) => compileC(source, output, { reactor: false })],
  [join(root, 'test', 'guests', 'reactor'), '.c', 'reactor', [], async (source, output) => compileC(source, output)],
  [join(root, 'test', 'guests', 'other-world'), '.c', 'other-world', [otherWit], component(compileC, otherWit, 'other')],
];

function stale(output, inputs) {
  if (!existsSync(output)) return true;
  const built = statSync(output).mtimeMs;
  return inputs.some((input) => statSync(input).mtimeMs > built);
}

let built = 0;
let total = 0;
try {
  for (const [dir, extension, folder, inputs, build] of GROUPS) {
    for (const source of filesIn(dir, extension)) {
      total++;
      const output = join(out, folder, `${basename(source, extension)}.wasm`);
      if (!stale(output, [source, ...inputs, fileURLToPath(import.meta.url)])) continue;
      await build(source, output);
      built++;
    }
  }
} catch (error) {
  if (!(error instanceof ToolchainError)) throw error;
  console.error(`build-guests: ${error.message}`);
  process.exit(1);
}
console.log(`guests: ${built} built, ${total - built} up to date (${out})`);
