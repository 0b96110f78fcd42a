#!/usr/bin/env node
// Warm-call overhead of Kiln's handler lift/lower: the same 64-byte call on a
// warm instance of the testkit component (which echoes its input), timed
//   abi     callHandler(): lower the request (4 × cabi_realloc + copies),
//           call handle, lift the result, cabi_post_handle
//   guest   the same guest exports called directly with the inputs already
//           encoded: 4 × cabi_realloc + handle + cabi_post_handle, no JS
//           lifting or lowering
//   engine  GuestInstance.invoke(): callHandler plus fuel metering, output
//           capture and the outcome record (what an executor runs)
// in the same process, alternating in blocks. overhead = abi − guest.
// Prints one JSON object to stdout and a table to stderr.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyze, PreparedFunction } from '../dist/engine/index.js';
import { callHandler } from '../dist/engine/handler-abi.js';
import { MemoryPool } from '../dist/engine/snapshot/memory-pool.js';
import { OutputCapture } from '../dist/engine/wasi/output.js';
import { WasiHost } from '../dist/engine/wasi/preview1.js';
import { emit, machineInfo, parseFlags, percentile, ROOT, round, sortedCopy } from './lib.mjs';

const flags = parseFlags();
const SAMPLES = Number(flags.samples ?? (flags.quick ? 20_000 : 100_000));
const BLOCK = 1000;
const artifact = readFileSync(join(ROOT, 'build', 'guests', 'component', 'testkit.wasm'));
const payload = Buffer.alloc(64, 0x61);
const request = { body: payload, contentType: 'application/octet-stream', requestId: '00000000-0000-0000-0000-000000000000',
  functionName: 'bench', functionVersion: 1, deadlineMs: 0, remainingFuel: 0n };
const tooLarge = () => new Error('too large');

// One unmetered instance for abi and guest, so both run the very same code.
const host = new WasiHost({ args: ['bench'], env: {} }, new OutputCapture(1 << 16, false), new OutputCapture(1 << 16, false));
const instance = new WebAssembly.Instance(new WebAssembly.Module(analyze(artifact).core), { wasi_snapshot_preview1: host.imports });
host.bindMemory(instance.exports.memory);
instance.exports._initialize();
const ex = instance.exports;
const encoder = new TextEncoder();
const strings = [request.contentType, request.requestId, request.functionName].map((s) => encoder.encode(s));

function guestOnly() {
  const memory = new Uint8Array(ex.memory.buffer);
  const body = ex.cabi_realloc(0, 0, 1, payload.length);
  memory.set(payload, body);
  const ptrs = strings.map((s) => {
    const p = ex.cabi_realloc(0, 0, 1, s.length);
    new Uint8Array(ex.memory.buffer).set(s, p);
    return p;
  });
  const ret = ex.handle(body, payload.length, ptrs[0], strings[0].length, ptrs[1], strings[1].length, ptrs[2], strings[2].length, 1, 0n, 0n);
  ex.cabi_post_handle(ret);
}
const abi = () => callHandler(ex, request, 1 << 23, tooLarge);

const prepared = PreparedFunction.prepare(artifact, { functionName: 'bench', functionVersion: 1, env: {}, memoryMb: 64, fuel: 1e10 });
const warm = prepared.instantiate(new MemoryPool());
const invocation = { payload, contentType: request.contentType, requestId: request.requestId, deadlineMs: 0 };
const engine = () => warm.invoke(invocation);

const ways = { guest: guestOnly, abi, engine };
const samples = { guest: [], abi: [], engine: [] };
for (const run of Object.values(ways)) for (let i = 0; i < 5000; i++) run();
for (let done = 0; done < SAMPLES; done += BLOCK) {
  for (const [name, run] of Object.entries(ways)) {
    for (let i = 0; i < BLOCK; i++) {
      const t = process.hrtime.bigint();
      run();
      samples[name].push(Number(process.hrtime.bigint() - t) / 1000);
    }
  }
}
const stats = Object.fromEntries(Object.entries(samples).map(([k, v]) => {
  const sorted = sortedCopy(v);
  return [k, { p50Us: round(percentile(sorted, 0.5), 2), p99Us: round(percentile(sorted, 0.99), 2) }];
}));
const overheadUs = round(stats.abi.p50Us - stats.guest.p50Us, 2);

// Every SDK's demo on a warm instance: the same 64-byte upper-casing call,
// through the executor's path (GuestInstance.invoke), with each component's size.
const SDKS = [['c', 'C'], ['cpp', 'C++'], ['rust', 'Rust'], ['as', 'AssemblyScript'], ['js', 'JavaScript']];
const perLanguage = SDKS.map(([dir, lang]) => {
  const file = join(ROOT, 'build', 'guests', dir, 'hello.wasm');
  const bytes = readFileSync(file);
  const fn = PreparedFunction.prepare(bytes, { functionName: 'bench', functionVersion: 1, env: {}, memoryMb: 128, fuel: 1e10 });
  const instance = fn.instantiate(new MemoryPool());
  const call = () => instance.invoke(invocation);
  for (let i = 0; i < 2000; i++) call();
  const times = [];
  for (let i = 0; i < SAMPLES / 4; i++) {
    const t = process.hrtime.bigint();
    call();
    times.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  const sorted = sortedCopy(times);
  let core = null;
  try {
    core = readFileSync(file.replace(/\.wasm$/, '.core.wasm')).length;
  } catch {
    // componentize-js makes the component directly
  }
  return { lang, componentBytes: bytes.length, coreBytes: core, warmP50Us: round(percentile(sorted, 0.5), 2), warmP99Us: round(percentile(sorted, 0.99), 2) };
});

emit(
  { bench: 'warmcall', machine: machineInfo(), samplesPerWay: SAMPLES, guest: 'component/testkit.wasm (echo)', payloadBytes: 64, ...stats,
    liftLowerOverheadP50Us: overheadUs, target: { liftLowerOverheadUs: 2 }, pass: overheadUs <= 2, perLanguage },
  [['way', 'p50 µs', 'p99 µs'], ...Object.entries(stats).map(([k, v]) => [k, v.p50Us, v.p99Us]),
    [], ['SDK demo', 'warm p50 µs', 'warm p99 µs', 'component B', 'core B'],
    ...perLanguage.map((r) => [r.lang, r.warmP50Us, r.warmP99Us, r.componentBytes, r.coreBytes ?? '-'])],
  [`lift/lower overhead (abi − guest) p50: ${overheadUs} µs (target ≤ 2)`],
);
