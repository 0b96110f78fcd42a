#!/usr/bin/env node
// Cold start per guest, through the engine's real API: from "no instance" to
// the answer of one 64-byte `handle` call, measured ≥ 1000 times each way in
// the same process, the ways alternating in blocks so they share the noise:
//   kiln   invoke + reset on an executor's instance: a pooled
//          pre-touched memory, the snapshot image copied in, globals set,
//          fuel metering on (init ran once, at prepare)
//   naive  a fresh WebAssembly.Instance of the unsnapshotted core module with
//          its own memory + _initialize + the same call (no metering)
// Prints one JSON object to stdout and a table to stderr.
// Needs `npx tsc -p .` and `node scripts/build-guests.mjs`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyze, PreparedFunction } from '../dist/engine/index.js';
import { callHandler } from '../dist/engine/handler-abi.js';
import { MemoryPool } from '../dist/engine/snapshot/memory-pool.js';
import { OutputCapture } from '../dist/engine/wasi/output.js';
import { WasiHost } from '../dist/engine/wasi/preview1.js';
import { Preview2Host } from '../dist/engine/wasi/preview2.js';
import { emit, machineInfo, parseFlags, percentile, ROOT, round, sortedCopy } from './lib.mjs';

const flags = parseFlags();
const SAMPLES = Number(flags.samples ?? (flags.quick ? 1000 : 2000));
const BLOCK = 50;
const GUESTS = [
  { name: 'c-hello', file: 'c/hello.wasm', note: 'C handler (the demo)' },
  { name: 'c-testkit', file: 'component/testkit.wasm', note: 'C handler, trivial init' },
  { name: 'c-slowinit', file: 'component/slowinit.wasm', note: 'C handler, ~200 ms constructor' },
  { name: 'cpp-hello', file: 'cpp/hello.wasm', note: 'C++ handler (the demo)' },
  { name: 'rust-hello', file: 'rust/hello.wasm', note: 'Rust handler (the demo)' },
  { name: 'as-hello', file: 'as/hello.wasm', note: 'AssemblyScript handler (the demo)' },
  { name: 'js-hello', file: 'js/hello.wasm', note: 'JavaScript handler (componentize-js, 12 MB)' },
];
const payload = Buffer.alloc(64, 0x61);
const config = { functionName: 'bench', functionVersion: 1, env: {}, memoryMb: 64, fuel: 1e10 };
const request = { payload, contentType: 'application/octet-stream', requestId: '00000000-0000-0000-0000-000000000000', deadlineMs: 0 };

function naiveWay(core) {
  const module = new WebAssembly.Module(core);
  return () => {
    const host = new WasiHost({ args: ['bench'], env: {} }, new OutputCapture(65536, false), new OutputCapture(65536, false));
    const preview2 = new Preview2Host();
    const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: host.imports, ...preview2.importsFor(WebAssembly.Module.imports(module)) });
    host.bindMemory(instance.exports.memory);
    preview2.bind(instance.exports);
    instance.exports._initialize?.();
    const result = callHandler(instance.exports, { body: payload, contentType: request.contentType, requestId: request.requestId,
      functionName: 'bench', functionVersion: 1, deadlineMs: 0, remainingFuel: 0n }, 1 << 23, () => new Error('too large'));
    if (!result.ok) throw new Error(`naive call failed: ${result.message}`);
  };
}

// As an executor does it: the instance's host side is made once, and reset()
// drops the Wasm instance after each call, so every call is a cold start.
function kilnWay(prepared, pool) {
  const instance = prepared.instantiate(pool);
  return () => {
    const outcome = instance.invoke(request);
    if (outcome.error) throw new Error(`kiln call failed: ${outcome.error.message}`);
    if (!outcome.metering.cold) throw new Error('kiln call was not a cold start');
    instance.reset();
  };
}

// A way whose one run takes milliseconds (the naive start of a guest with an
// expensive constructor) gets as many samples as fit in SLOW_WAY_BUDGET_MS.
const SLOW_WAY_BUDGET_MS = 5000;

function measure(ways) {
  const samples = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  const quota = {};
  for (const [name, run] of Object.entries(ways)) {
    const t = performance.now();
    for (let i = 0; i < 5; i++) run(); // warm-up: tier up the host code
    const perRunMs = (performance.now() - t) / 5;
    quota[name] = perRunMs > 1 ? Math.max(10, Math.floor(SLOW_WAY_BUDGET_MS / perRunMs)) : SAMPLES;
    if (quota[name] === SAMPLES) for (let i = 0; i < 45; i++) run();
  }
  for (let done = 0; done < SAMPLES; done += BLOCK) {
    for (const [name, run] of Object.entries(ways)) {
      for (let i = 0; i < BLOCK && samples[name].length < quota[name]; i++) {
        const t = process.hrtime.bigint();
        run();
        samples[name].push(Number(process.hrtime.bigint() - t) / 1000);
      }
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => {
    const sorted = sortedCopy(v);
    return [k, { samples: v.length, p50Us: round(percentile(sorted, 0.5), 1), p99Us: round(percentile(sorted, 0.99), 1) }];
  }));
}

const results = [];
for (const guest of GUESTS) {
  const artifact = readFileSync(join(ROOT, 'build', 'guests', guest.file));
  const started = performance.now();
  const prepared = PreparedFunction.prepare(artifact, config);
  const prepareMs = performance.now() - started;
  const ways = { kiln: kilnWay(prepared, new MemoryPool()), naive: naiveWay(analyze(artifact).core) };
  const measured = measure(ways);
  results.push({ guest: guest.name, note: guest.note, prepareMs: round(prepareMs, 1), ...measured,
    speedupP50: round(measured.naive.p50Us / measured.kiln.p50Us, 1) });
}

const rows = [
  ['guest', 'kiln p50 µs', 'kiln p99 µs', 'naive p50 µs', 'naive p99 µs', 'speed-up p50', 'prepare ms'],
  ...results.map((r) => [r.guest, r.kiln.p50Us, r.kiln.p99Us, r.naive.p50Us, r.naive.p99Us, `${r.speedupP50}×`, r.prepareMs]),
];
emit({ bench: 'coldstart', machine: machineInfo(), samplesPerWay: SAMPLES, payloadBytes: payload.length, results }, rows);
