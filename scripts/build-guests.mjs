#!/usr/bin/env node
// Builds every guest the tests and benchmarks use, from source, into build/guests/.
// Rebuilds a guest only when one of its inputs is newer than its output.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'guests');
const handlerWit = join(root, 'wit', 'handler.wit');
const sdkHeader = join(root, 'guest-sdk', 'c', 'kiln.h');
const asSdk = join(root, 'guest-sdk', 'assemblyscript');
const asInputs = [join(asSdk, 'assembly', 'kiln.ts'), join(asSdk, 'asconfig.json'), handlerWit];
const cflags = ['--target=wasm32-wasi', '-O2', '-Wall', '-Wl,--strip-debug'];
const cppSdk = join(root, 'guest-sdk', 'cpp');
const cppInputs = [join(cppSdk, 'kiln.hpp'), sdkHeader, handlerWit];
const rustSdk = join(root, 'guest-sdk', 'rust');
const rustInputs = [join(rustSdk, 'src', 'lib.rs'), handlerWit];

let jco;
async function loadJco() {
  jco ??= await import('@bytecodealliance/jco');
  return jco;
}

function stale(output, inputs) {
  if (!existsSync(output)) return true;
  const built = statSync(output).mtimeMs;
  return inputs.some((input) => statSync(input).mtimeMs > built);
}

function clang(source, output, extra) {
  mkdirSync(dirname(output), { recursive: true });
  execFileSync('clang', [...cflags, ...extra, '-o', output, source], { stdio: 'inherit' });
}

const clangReactor = (source, core) => clang(source, core, ['-mexec-model=reactor']);

// AssemblyScript, with the SDK's asconfig.json (WASI shim, minimal runtime, the
// SDK's abort, `_initialize` as the exported start). Run from the repository
// root: asc resolves the config's relative `lib` path, and names files in
// abort messages, relative to its working directory.
function asc(source, core) {
  mkdirSync(dirname(core), { recursive: true });
  const bin = join(root, 'node_modules', 'assemblyscript', 'bin', 'asc.js');
  const rel = (path) => relative(root, path);
  execFileSync(process.execPath, [bin, rel(source), '--config', rel(join(asSdk, 'asconfig.json')), '-o', rel(core)], { cwd: root, stdio: 'inherit' });
}

function missingToolchain(message) {
  console.error(`build-guests: ${message}`);
  process.exit(1);
}

// C++ (guest-sdk/cpp): clang++ with Debian's wasm32-wasi libc++. No
// exceptions: clang 14 cannot unwind on wasm32-wasi.
let cxxReady = false;
function checkCxx() {
  if (cxxReady) return;
  let libcxx;
  try {
    libcxx = execFileSync('clang++', ['--target=wasm32-wasi', '-print-file-name=libc++.a'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    missingToolchain('clang++ not found: install the Debian packages clang lld wasi-libc libclang-rt-dev-wasm32 libc++-dev-wasm32 libc++abi-14-dev-wasm32');
  }
  if (!isAbsolute(libcxx) || !existsSync(libcxx)) {
    missingToolchain('clang++ has no wasm32-wasi libc++: install the Debian packages libc++-dev-wasm32 libc++abi-14-dev-wasm32');
  }
  cxxReady = true;
}

function clangxx(source, core) {
  checkCxx();
  mkdirSync(dirname(core), { recursive: true });
  execFileSync('clang++', [
    '--target=wasm32-wasi', '-mexec-model=reactor', '-std=c++17', '-O2', '-Wall', '-fno-exceptions', '-Wl,--strip-debug',
    '-o', core, source,
  ], { stdio: 'inherit' });
}

// Rust (guest-sdk/rust): plain rustc, no cargo. Debian's rustc 1.63 (with
// libstd-rust-dev-wasm32) is /usr/bin/rustc; a rustup toolchain on PATH
// usually has no wasm target, so it is only the fallback. KILN_RUSTC overrides.
let rust;
function rustToolchain() {
  if (rust) return rust;
  const rustc = process.env.KILN_RUSTC ?? (existsSync('/usr/bin/rustc') ? '/usr/bin/rustc' : 'rustc');
  try {
    execFileSync(rustc, ['--version'], { stdio: 'ignore' });
  } catch {
    missingToolchain(`${rustc} not found: install the Debian packages rustc libstd-rust-dev-wasm32`);
  }
  // wasm32-wasi before Rust 1.78, wasm32-wasip1 since (wasm32-wasi is gone from 1.84).
  for (const target of ['wasm32-wasi', 'wasm32-wasip1']) {
    let libdir;
    try {
      libdir = execFileSync(rustc, ['--print', 'target-libdir', '--target', target], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      continue;
    }
    if (existsSync(libdir) && readdirSync(libdir).some((f) => f.startsWith('libstd-'))) {
      rust = { rustc, flags: ['--edition', '2021', '--target', target, '-O', '-C', 'panic=abort'], rlib: undefined };
      return rust;
    }
  }
  missingToolchain(`${rustc} has no wasm32-wasi standard library: install the Debian packages rustc libstd-rust-dev-wasm32 (their /usr/bin/rustc is used first; KILN_RUSTC picks another rustc)`);
}

// The SDK crate as an rlib (once per run), then the example as a cdylib that
// links it: LTO, one codegen unit, symbols stripped. Run from the repository
// root with relative paths, which is how panic messages name source files.
function rustc(source, core) {
  const tc = rustToolchain();
  mkdirSync(dirname(core), { recursive: true });
  if (!tc.rlib) {
    tc.rlib = join(out, 'rust', 'sdk', 'libkiln.rlib');
    mkdirSync(dirname(tc.rlib), { recursive: true });
    execFileSync(tc.rustc, [...tc.flags, '--crate-type', 'rlib', '--crate-name', 'kiln', '-o', tc.rlib, relative(root, join(rustSdk, 'src', 'lib.rs'))], { cwd: root, stdio: 'inherit' });
  }
  execFileSync(tc.rustc, [
    ...tc.flags, '-C', 'lto', '-C', 'codegen-units=1', '-C', 'strip=symbols',
    '--crate-type', 'cdylib', '--crate-name', basename(source, '.rs').replace(/-/g, '_'),
    '--extern', `kiln=${tc.rlib}`, '-o', core, relative(root, source),
  ], { cwd: root, stdio: 'inherit' });
}

// A reactor core module (C by default) wrapped into a component of the given
// WIT world, through the preview-1 reactor adapter.
async function buildComponent(source, output, witFile, world, { core = output.replace(/\.wasm$/, '.core.wasm'), buildCore = clangReactor } = {}) {
  await buildCore(source, core);
  const { componentEmbed, componentNew, preview1AdapterReactorPath } = await loadJco();
  const embedded = await componentEmbed({ binary: readFileSync(core), witSource: readFileSync(witFile, 'utf8'), world });
  const adapter = readFileSync(preview1AdapterReactorPath());
  writeFileSync(output, await componentNew(embedded, [['wasi_snapshot_preview1', adapter]]));
}

const jobs = [];
const cFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.c')).map((f) => join(dir, f)) : []);

for (const source of cFiles(join(root, 'guest-sdk', 'c', 'examples'))) {
  jobs.push({ source, output: join(out, 'c', basename(source, '.c') + '.wasm'), inputs: [sdkHeader, handlerWit], kind: 'component' });
}
for (const source of cFiles(join(root, 'test', 'guests', 'component'))) {
  jobs.push({ source, output: join(out, 'component', basename(source, '.c') + '.wasm'), inputs: [sdkHeader, handlerWit], kind: 'component' });
}
for (const source of cFiles(join(root, 'test', 'guests', 'command'))) {
  jobs.push({ source, output: join(out, 'command', basename(source, '.c') + '.wasm'), inputs: [], kind: 'command' });
}
for (const source of cFiles(join(root, 'test', 'guests', 'reactor'))) {
  jobs.push({ source, output: join(out, 'reactor', basename(source, '.c') + '.wasm'), inputs: [], kind: 'reactor' });
}
const tsFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f)) : []);
for (const source of tsFiles(join(asSdk, 'examples'))) {
  jobs.push({ source, output: join(out, 'as', basename(source, '.ts') + '.wasm'), inputs: asInputs, kind: 'assemblyscript' });
}
const cppFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cpp')).map((f) => join(dir, f)) : []);
for (const source of cppFiles(join(cppSdk, 'examples'))) {
  jobs.push({ source, output: join(out, 'cpp', basename(source, '.cpp') + '.wasm'), inputs: cppInputs, kind: 'cpp' });
}
const rsFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.rs')).map((f) => join(dir, f)) : []);
for (const source of rsFiles(join(rustSdk, 'examples'))) {
  jobs.push({ source, output: join(out, 'rust', basename(source, '.rs') + '.wasm'), inputs: rustInputs, kind: 'rust' });
}
const otherWit = join(root, 'test', 'guests', 'other-world', 'world.wit');
for (const source of cFiles(join(root, 'test', 'guests', 'other-world'))) {
  jobs.push({ source, output: join(out, 'other-world', basename(source, '.c') + '.wasm'), inputs: [otherWit], kind: 'other-world' });
}

let built = 0;
for (const job of jobs) {
  if (!stale(job.output, [job.source, ...job.inputs, fileURLToPath(import.meta.url)])) continue;
  switch (job.kind) {
    case 'component': await buildComponent(job.source, job.output, handlerWit, 'handler'); break;
    case 'other-world': await buildComponent(job.source, job.output, otherWit, 'other'); break;
    case 'assemblyscript':
      await buildComponent(job.source, job.output, handlerWit, 'handler', { buildCore: asc });
      break;
    case 'cpp':
      await buildComponent(job.source, job.output, handlerWit, 'handler', { buildCore: clangxx });
      break;
    case 'rust':
      await buildComponent(job.source, job.output, handlerWit, 'handler', { buildCore: rustc });
      break;
    case 'command': clang(job.source, job.output, []); break;
    case 'reactor': clangReactor(job.source, job.output); break;
  }
  built++;
}
console.log(`guests: ${built} built, ${jobs.length - built} up to date (${out})`);
