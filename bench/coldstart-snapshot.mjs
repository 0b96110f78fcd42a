#!/usr/bin/env node
// Cold start of a core C reactor (build/guests/reactor/snapinit.wasm, whose
// constructor fills a 64 KiB table and mallocs a buffer), from "no instance"
// to the result of one call, three ways in the same process:
//   naive    new WebAssembly.Instance of the original module (own memory,
//            data segments copied) + _initialize + one call
//   pooled   pooled pre-touched memory + snapshot restore by copy + instance
//            of the restorable module (imports its memory) + globals set +
//            one call; the memory goes back to the pool afterwards (outside
//            the timed region), so every start reuses a dirty memory
//   trimmed  pooled, with the restorable module exporting only what the host
//            calls (toRestorable keepExports): V8 builds every exported
//            function's wrapper at instantiation, ≈ 0.5–1 µs each here
//   fresh    the same restore into a new, untouched memory every time (what a
//            pool miss costs)
// Modules are compiled once, outside the timing. The variants alternate in
// blocks so they share the machine's noise.
// Prints one JSON object to stdout and a table to stderr.
// Needs `npx tsc -p .` (for dist/) and `node scripts/build-guests.mjs`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { captureImage, restoreImage, setGlobals } from '../dist/engine/snapshot/image.js';
import { MemoryPool } from '../dist/engine/snapshot/memory-pool.js';
import { exposeGlobals, toRestorable } from '../dist/engine/snapshot/rewrite.js';
import { emit, machineInfo, parseFlags, percentile, ROOT, round, sortedCopy } from './lib.mjs';

const flags = parseFlags();
const SAMPLES = Number(flags.samples ?? (flags.quick ? 1000 : 3000));
const BLOCK = 100;
const WARMUP = 300;
const MAX_PAGES = 256;

const original = readFileSync(join(ROOT, 'build', 'guests', 'reactor', 'snapinit.wasm'));

// ---- prepare (once) ----------------------------------------------------------
const prepareStarted = performance.now();
const exposed = exposeGlobals(original);
const snapshotInstance = new WebAssembly.Instance(new WebAssembly.Module(exposed.bytes), {});
snapshotInstance.exports._initialize();
const image = captureImage(snapshotInstance.exports.memory, exposed.globals, snapshotInstance);
const restorable = new WebAssembly.Module(toRestorable(exposed.bytes));
const trimmedModule = new WebAssembly.Module(toRestorable(exposed.bytes, { keepExports: ['work', 'bump', 'memory'] }));
const prepareMs = performance.now() - prepareStarted;
const naiveModule = new WebAssembly.Module(original);
const imageBytes = image.segments.reduce((n, s) => n + s.bytes.length, 0);
const expected = snapshotInstance.exports.work(12345);

const pool = new MemoryPool();
pool.prewarm({ initial: image.pages, maximum: MAX_PAGES }, 4);

// ---- the three ways -----------------------------------------------------------
let sink = 0;
const now = () => performance.now();

function naive(i) {
  const t0 = now();
  const instance = new WebAssembly.Instance(naiveModule, {});
  instance.exports._initialize();
  sink ^= instance.exports.work(i);
  return now() - t0;
}

function pooledWith(module, i) {
  const t0 = now();
  const lease = pool.acquire(image.pages, MAX_PAGES);
  restoreImage(lease.memory, image, lease.dirtyBytes);
  const instance = new WebAssembly.Instance(module, { kiln: { memory: lease.memory } });
  setGlobals(instance, exposed.globals, image.globals);
  sink ^= instance.exports.work(i);
  const t = now() - t0;
  instance.exports.bump(); // dirty the state, as an invocation would
  pool.release(lease.memory);
  return t;
}

const pooled = (i) => pooledWith(restorable, i);
const trimmed = (i) => pooledWith(trimmedModule, i);

function fresh(i) {
  const t0 = now();
  const memory = new WebAssembly.Memory({ initial: image.pages, maximum: MAX_PAGES });
  restoreImage(memory, image, 0);
  const instance = new WebAssembly.Instance(restorable, { kiln: { memory } });
  setGlobals(instance, exposed.globals, image.globals);
  sink ^= instance.exports.work(i);
  return now() - t0;
}

const variants = { naive, pooled, trimmed, fresh };

// Same answer every way (the restore is faithful), before timing anything.
for (const [name, run] of Object.entries(variants)) {
  sink = 0;
  run(12345);
  if (sink !== expected) throw new Error(`${name}: work(12345) = ${sink}, expected ${expected}`);
}

for (let i = 0; i < WARMUP; i++) for (const run of Object.values(variants)) run(i);
const times = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
for (let done = 0; done < SAMPLES; done += BLOCK) {
  for (const [name, run] of Object.entries(variants)) {
    for (let i = 0; i < BLOCK; i++) times[name].push(run(done + i) * 1000);
  }
}

// ---- report -------------------------------------------------------------------
const results = {};
for (const [name, values] of Object.entries(times)) {
  const sorted = sortedCopy(values);
  results[name] = { samples: sorted.length, p50Us: round(percentile(sorted, 0.5), 1), p99Us: round(percentile(sorted, 0.99), 1), maxUs: round(sorted[sorted.length - 1], 1) };
}
const speedup = round(results.naive.p50Us / results.pooled.p50Us, 1);
const speedupTrimmed = round(results.naive.p50Us / results.trimmed.p50Us, 1);
const report = {
  bench: 'coldstart-snapshot',
  machine: machineInfo(),
  guest: 'reactor/snapinit.wasm',
  prepareMs: round(prepareMs, 2),
  image: { pages: image.pages, segments: image.segments.length, bytes: imageBytes, globals: image.globals.length },
  results,
  pool: pool.stats(),
  speedupP50: speedup,
  speedupP50Trimmed: speedupTrimmed,
  sink,
};
emit(
  report,
  [
    ['way', 'p50 µs', 'p99 µs', 'max µs', 'samples'],
    ...Object.entries(results).map(([name, r]) => [name, r.p50Us, r.p99Us, r.maxUs, r.samples]),
  ],
  [
    `image: ${image.pages} pages, ${image.segments.length} segments, ${imageBytes} bytes, ${image.globals.length} globals; prepare ${round(prepareMs, 1)} ms`,
    `pooled is ${speedup}× faster than naive at p50 (${speedupTrimmed}× with trimmed exports)`,
  ],
);
