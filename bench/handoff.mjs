#!/usr/bin/env node
// The hand-off between the network thread and an executor thread, measured
// both ways in one run on this machine: a round trip (main → worker → main)
// of a small task through
//   ports  postMessage both ways
//   atomics  a SharedArrayBuffer counter with Atomics.notify, the worker
//          blocked in Atomics.wait and the main thread in Atomics.waitAsync
// (src/executor/pool.ts uses neither alone: shared-memory rings carry the
// tasks and replies, and a message wakes a side only when it may be asleep;
// bench/e2e.mjs and bench/invoke.mjs measure that end to end.)
// back to back (the next task leaves when the answer arrives) and after an
// idle gap of 1 ms (the threads asleep, as at low load).
// Prints one JSON object to stdout and a table to stderr.
import { Worker } from 'node:worker_threads';
import { emit, machineInfo, parseFlags, percentile, round, sortedCopy } from './lib.mjs';

const flags = parseFlags();
const N = Number(flags.samples ?? (flags.quick ? 1000 : 5000));
const IDLE_N = Math.min(500, N);

const stats = (samples) => {
  const sorted = sortedCopy(samples);
  return { samples: samples.length, p50Us: round(percentile(sorted, 0.5), 1), p99Us: round(percentile(sorted, 0.99), 1) };
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Back-to-back round trips, then round trips after an idle millisecond each. */
async function measure(roundTrip) {
  await roundTrip();
  const busy = [];
  for (let i = 0; i < N; i++) busy.push(await roundTrip());
  const idle = [];
  for (let i = 0; i < IDLE_N; i++) {
    await sleep(1);
    idle.push(await roundTrip());
  }
  return { busy: stats(busy), idle: stats(idle) };
}

async function ports() {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage(m));`,
    { eval: true },
  );
  const roundTrip = () => new Promise((resolve) => {
    const t = process.hrtime.bigint();
    worker.once('message', () => resolve(Number(process.hrtime.bigint() - t) / 1000));
    worker.postMessage([{ id: 1, op: 'invoke' }]);
  });
  const result = await measure(roundTrip);
  await worker.terminate();
  return result;
}

async function atomics() {
  const shared = new SharedArrayBuffer(8);
  const cells = new Int32Array(shared); // [0]: tasks posted, [1]: tasks answered
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads'); const c = new Int32Array(workerData);
     for (let seen = 0;;) { Atomics.wait(c, 0, seen); seen = Atomics.load(c, 0); if (seen < 0) break;
       Atomics.store(c, 1, seen); Atomics.notify(c, 1); }`,
    { eval: true, workerData: shared },
  );
  let sequence = 0;
  const roundTrip = async () => {
    const t = process.hrtime.bigint();
    sequence++;
    Atomics.store(cells, 0, sequence);
    Atomics.notify(cells, 0);
    const wait = Atomics.waitAsync(cells, 1, sequence - 1);
    if (wait.async) await wait.value;
    return Number(process.hrtime.bigint() - t) / 1000;
  };
  const result = await measure(roundTrip);
  Atomics.store(cells, 0, -1);
  Atomics.notify(cells, 0);
  await worker.terminate();
  return result;
}

const results = { ports: await ports(), atomics: await atomics() };
emit(
  { bench: 'handoff', machine: machineInfo(), ...results },
  [
    ['hand-off', 'busy p50 µs', 'busy p99 µs', 'idle p50 µs', 'idle p99 µs'],
    ...Object.entries(results).map(([k, v]) => [k, v.busy.p50Us, v.busy.p99Us, v.idle.p50Us, v.idle.p99Us]),
  ],
  ['One task per wake-up. The executor pool carries tasks in shared-memory rings and wakes a side by message only when it may be asleep (bench/e2e.mjs measures that end to end).'],
);
