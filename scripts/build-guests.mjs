#!/usr/bin/env node
// Builds every guest the tests and benchmarks use, from source, into build/guests/.
// Rebuilds a guest only when one of its inputs is newer than its output.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'guests');
const handlerWit = join(root, 'wit', 'handler.wit');
const sdkHeader = join(root, 'guest-sdk', 'c', 'kiln.h');
const asSdk = join(root, 'guest-sdk', 'assemblyscript');
const asInputs = [join(asSdk, 'assembly', 'kiln.ts'), join(asSdk, 'asconfig.json'), handlerWit];
const cflags = ['--target=wasm32-wasi', '-O2', '-Wall', '-Wl,--strip-debug'];

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

// A reactor core module (C by default) wrapped into a component of the given
// WIT world, through the preview-1 reactor adapter.
async function buildComponent(source, output, witFile, world, { core = `${output}.core.wasm`, buildCore = clangReactor } = {}) {
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
      await buildComponent(job.source, job.output, handlerWit, 'handler', { core: job.output.replace(/\.wasm$/, '.core.wasm'), buildCore: asc });
      break;
    case 'command': clang(job.source, job.output, []); break;
    case 'reactor': clangReactor(job.source, job.output); break;
  }
  built++;
}
console.log(`guests: ${built} built, ${jobs.length - built} up to date (${out})`);
