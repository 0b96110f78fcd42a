#!/usr/bin/env node
// Burst: 1,000 invocations arriving at once for a function with no instances
// (the C handler component, just deployed under a new name, no
// maxConcurrency), then the same burst again on that function, now warm.
// Target (the issue's): all succeed; the time to the last answer is reported
// next to the warm burst's.
//
// Each round deploys a new function per shape, so every cold burst finds no
// instance and no executor holding the function, and fires
//   one     all 1,000 requests on one connection
//   spread  the 1,000 split over --connections connections (default 8),
//           all armed first and sent in the same tick
// with every request encoded beforehand and each socket corked while they are
// written, so they leave in one write per connection (lib.mjs armBurst). Times
// run from just before the first send to each answer's arrival. The shapes
// alternate order every round; each round ends by deleting its functions.
// Prints one JSON object to stdout (medians over the rounds, `allSucceeded`),
// a table to stderr. A failed invocation is a result: the exit status is 0
// whenever the bench itself ran.
//
//   node bench/burst.mjs [--quick] [--rounds N] [--burst N] [--connections N] [--payload BYTES]
//
// BENCH_QUICK=1 is the same as --quick. KILN_LOG_LEVEL passes through to the
// daemon (default info: one REPORT log line per invocation, to /dev/null).
// Needs `npx tsc -p .` (dist/) and `node scripts/build-guests.mjs`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  emit,
  expectPayload,
  helloPayload,
  intFlag,
  isQuick,
  machineInfo,
  median,
  p99,
  parseFlags,
  round,
  ROOT,
  RpcConnection,
  sortedCopy,
  spread,
  startKiln,
} from './lib.mjs';

const CONTENT_TYPE = 'application/octet-stream';
const GUEST = join(ROOT, 'build', 'guests', 'c', 'hello.wasm');

const flags = parseFlags();
const quick = isQuick(flags);
const config = {
  rounds: intFlag(flags, 'rounds', quick ? 3 : 20),
  burst: intFlag(flags, 'burst', 1000),
  connections: intFlag(flags, 'connections', 8),
  payloadBytes: intFlag(flags, 'payload', 64),
};

const { payload, upper } = helloPayload(config.payloadBytes);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `count` requests as evenly as possible over `conns`, all sent at once. */
async function burst(conns, fn, count) {
  const params = [{ function: fn, payload, contentType: CONTENT_TYPE }];
  const fires = conns.map((conn, i) => conn.armBurst({
    method: 'invoke',
    params,
    count: Math.floor(count / conns.length) + (i < count % conns.length ? 1 : 0),
  }));
  const base = process.hrtime.bigint();
  const results = await Promise.all(fires.map((fire) => fire(base)));

  const arrivals = [];
  const errors = {};
  let succeeded = 0;
  let cold = 0;
  for (const { answers } of results) {
    for (const { atNs, error, result } of answers) {
      arrivals.push(atNs);
      let code = error?.code;
      if (!error) {
        try {
          expectPayload(result, upper, fn);
        } catch {
          code = 'WRONG_PAYLOAD';
        }
      }
      if (code) {
        errors[code] = (errors[code] ?? 0) + 1;
        continue;
      }
      succeeded++;
      if (result.report?.cold) cold++;
    }
  }
  const sorted = sortedCopy(arrivals);
  const ms = (ns) => round(ns / 1e6, 2);
  return {
    requests: count,
    succeeded,
    errors,
    // Answers whose report says cold: the instances this burst had to create.
    coldAnswers: cold,
    // When the last request had been handed to the socket(s).
    sentMs: ms(Math.max(...results.map((r) => r.sentNs))),
    firstMs: ms(sorted[0]),
    p50Ms: ms(median(sorted)),
    p99Ms: ms(p99(sorted)),
    lastMs: ms(sorted[sorted.length - 1]),
  };
}

let kiln;
const connections = [];
try {
  const wasm = readFileSync(GUEST);
  kiln = await startKiln();
  const opened = await Promise.all(Array.from({ length: 1 + config.connections }, () => RpcConnection.open(kiln.url)));
  connections.push(...opened);
  const [admin] = opened;
  const shapes = [
    { name: 'one', conns: [opened[0]], rounds: [] },
    { name: 'spread', conns: opened.slice(1), rounds: [] },
  ];
  const deploy = (name) => admin.call('functions.deploy', [{ name, wasm, config: {} }]);
  const remove = (name) => admin.call('functions.delete', [{ name }]);

  process.stderr.write(`burst bench${quick ? ' (quick)' : ''}: kiln pid ${kiln.pid} port ${kiln.port}, ${config.burst} invocations, ` +
    `${config.rounds} rounds, one connection and ${config.connections}\n`);

  // Warm-up, not recorded: the daemon's cold and warm paths tier up in V8, so
  // the first round's cold burst measures instances, not a cold daemon.
  for (const shape of shapes) {
    await deploy(`burst-warmup-${shape.name}`);
    await burst(shape.conns, `burst-warmup-${shape.name}`, config.burst);
    await burst(shape.conns, `burst-warmup-${shape.name}`, config.burst);
    await remove(`burst-warmup-${shape.name}`);
  }

  for (let r = 0; r < config.rounds; r++) {
    for (const shape of r % 2 === 0 ? shapes : [...shapes].reverse()) {
      const fn = `burst-${r}-${shape.name}`;
      await deploy(fn);
      // The deploy's preparation ran on an executor: let it settle first.
      await sleep(50);
      const cold = await burst(shape.conns, fn, config.burst);
      const warm = await burst(shape.conns, fn, config.burst);
      shape.rounds.push({ cold, warm });
      await remove(fn);
    }
  }

  const errors = {};
  let allSucceeded = true;
  const summarize = (shape) => {
    const of = (phase) => {
      const runs = shape.rounds.map((x) => x[phase]);
      for (const run of runs) {
        if (run.succeeded !== run.requests) allSucceeded = false;
        for (const [code, n] of Object.entries(run.errors)) errors[code] = (errors[code] ?? 0) + n;
      }
      const med = (key) => round(median(sortedCopy(runs.map((x) => x[key]))), 2);
      return {
        succeeded: runs.reduce((n, x) => n + x.succeeded, 0),
        requests: runs.reduce((n, x) => n + x.requests, 0),
        // Medians over the rounds.
        coldAnswers: med('coldAnswers'),
        sentMs: med('sentMs'),
        firstMs: med('firstMs'),
        p50Ms: med('p50Ms'),
        p99Ms: med('p99Ms'),
        lastMs: med('lastMs'),
        lastMsPerRound: spread(runs.map((x) => x.lastMs)),
      };
    };
    return {
      connections: shape.conns.length,
      cold: of('cold'),
      warm: of('warm'),
      // Per round, the cold burst's time to the last answer over the warm one's.
      lastRatio: spread(shape.rounds.map((x) => x.cold.lastMs / x.warm.lastMs)),
    };
  };
  const results = Object.fromEntries(shapes.map((shape) => [shape.name, summarize(shape)]));

  const report = {
    bench: 'burst',
    quick,
    machine: machineInfo(),
    config: { ...config, executors: 'one per core (daemon default)', guest: 'build/guests/c/hello.wasm', logLevel: kiln.logLevel },
    ...results,
    errors,
    allSucceeded,
    targets: { allSucceeded: { target: 'every invocation of every burst succeeds', met: allSucceeded } },
  };

  const fmt = (x) => (x === null || x === undefined ? '-' : x.toFixed(1));
  const row = (label, s) => [label, fmt(s.firstMs), fmt(s.p50Ms), fmt(s.p99Ms), fmt(s.lastMs), fmt(s.sentMs), s.coldAnswers, `${s.succeeded}/${s.requests}`];
  const table = [['', 'first ms', 'p50 ms', 'p99 ms', 'last ms', 'sent ms', 'cold', 'ok']];
  for (const shape of shapes) {
    const label = shape.name === 'one' ? '1 conn' : `${shape.conns.length} conns`;
    table.push(row(`${label} cold`, results[shape.name].cold), row(`${label} warm`, results[shape.name].warm));
  }
  emit(report, table, [
    `${config.burst} invocations at once, medians over ${config.rounds} rounds; ` +
      shapes.map((s) => `last answer cold/warm ${s.name === 'one' ? '1 conn' : `${s.conns.length} conns`} ${results[s.name].lastRatio.median}`).join(', '),
    `all succeeded: ${allSucceeded ? 'yes' : `NO ${JSON.stringify(errors)}`}`,
  ]);
} finally {
  for (const c of connections) c.close();
  await kiln?.stop();
}
