#!/usr/bin/env node
// Mixed load: a CPU-heavy function kept at full load beside a light one, in
// one Kiln daemon. Target (the issue's): the light function's p99 stays
// within 3× of its p99 alone.
//
//   heavy   the test kit component answering "spin:20" (busy for 20 ms of wall
//           time), fuel 10¹² and a 60 s timeout so no limit stops it;
//           --heavy-in-flight requests (default: two per core, more than the
//           executors it may occupy, so every core it can get stays busy)
//           kept outstanding, each answer replaced by a new request at once
//   light   the C handler component, 64 bytes upper-cased, 1 request in flight
//
// Each round measures the light function alone and then beside the saturated
// heavy one (the order flips every round), on separate connections. The heavy
// load starts --ramp-ms before the light one is timed and stops when it is
// done. Prints one JSON object to stdout, a table to stderr. A missed target
// is a result: the exit status is 0 either way.
//
//   node bench/mixed.mjs [--quick] [--rounds N] [--requests N] [--duration-ms MS]
//                        [--spin-ms MS] [--heavy-in-flight N] [--ramp-ms MS]
//
// --requests caps the light requests per phase and round; --duration-ms
// bounds the phase beside the heavy load (per round), where each light request
// may wait for a heavy one. BENCH_QUICK=1 is the same as --quick.
// KILN_LOG_LEVEL passes through to the daemon (default info, to /dev/null).
// Needs `npx tsc -p .` (dist/) and `node scripts/build-guests.mjs`.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  concat,
  emit,
  expectPayload,
  helloPayload,
  intFlag,
  isQuick,
  latencyUs,
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

const TARGET_P99_RATIO = 3;
const CONTENT_TYPE = 'application/octet-stream';
const LIGHT = { name: 'mixed-light', guest: join(ROOT, 'build', 'guests', 'c', 'hello.wasm'), config: {} };
const HEAVY = {
  name: 'mixed-heavy',
  guest: join(ROOT, 'build', 'guests', 'component', 'testkit.wasm'),
  config: { fuel: 1e12, timeoutMs: 60_000 },
};
// The daemon's default is one executor per core plus one (bench/lib.mjs's startKiln passes no
// --workers), and one function may occupy all but one: the heavy one can keep every core busy.
const CORES = os.availableParallelism();

const flags = parseFlags();
const quick = isQuick(flags);
const config = {
  rounds: intFlag(flags, 'rounds', quick ? 2 : 4),
  warmupRequests: quick ? 200 : 1000,
  // Light requests per phase and round, at most.
  lightRequests: intFlag(flags, 'requests', quick ? 1000 : 3000),
  // The phase beside the heavy load ends after this long even if fewer light requests were answered.
  loadedMs: intFlag(flags, 'duration-ms', quick ? 3000 : 8000),
  spinMs: intFlag(flags, 'spin-ms', 20),
  heavyInFlight: intFlag(flags, 'heavy-in-flight', CORES * 2),
  rampMs: intFlag(flags, 'ramp-ms', 200),
  payloadBytes: 64,
};

const { payload, upper } = helloPayload(config.payloadBytes);
const lightParams = [{ function: LIGHT.name, payload, contentType: CONTENT_TYPE }];
const heavyParams = [{ function: HEAVY.name, payload: Buffer.from(`spin:${config.spinMs}`), contentType: CONTENT_TYPE }];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const checkLight = (result) => expectPayload(result, upper, LIGHT.name);
const checkHeavy = (result) => {
  expectPayload(result, Buffer.from('spun'), HEAVY.name);
  return result.report?.durationMs;
};

let kiln;
const connections = [];
try {
  kiln = await startKiln();
  const [lightConn, heavyConn] = await Promise.all([RpcConnection.open(kiln.url), RpcConnection.open(kiln.url)]);
  connections.push(lightConn, heavyConn);
  for (const fn of [LIGHT, HEAVY]) {
    await lightConn.call('functions.deploy', [{ name: fn.name, wasm: readFileSync(fn.guest), config: fn.config }]);
  }

  const light = (options, verifyFirst = 0) =>
    lightConn.load({ method: 'invoke', params: lightParams, inFlight: 1, check: checkLight, verifyFirst, verifyEvery: 64, ...options });
  // The heavy load runs until `signal` aborts; every answer is checked (there are few).
  const heavy = (signal) =>
    heavyConn.load({ method: 'invoke', params: heavyParams, inFlight: config.heavyInFlight, signal, check: checkHeavy, verifyFirst: Infinity });

  process.stderr.write(`mixed bench${quick ? ' (quick)' : ''}: kiln pid ${kiln.pid} port ${kiln.port}, ${CORES} cores, ` +
    `heavy spin:${config.spinMs} × ${config.heavyInFlight} in flight\n`);

  /** The light function at 1 in flight while the heavy one is saturated. */
  async function besideHeavy(durationMs = config.loadedMs) {
    const stop = new AbortController();
    const heavyRun = heavy(stop.signal);
    // A heavy failure is thrown by the await below; until then it is not an unhandled rejection.
    heavyRun.catch(() => {});
    await sleep(config.rampMs);
    let lightResult;
    try {
      lightResult = await light({ requests: config.lightRequests, durationMs });
    } finally {
      stop.abort();
    }
    return { light: lightResult, heavy: await heavyRun };
  }

  // Warm-up: instances on both executors for both functions, V8 tier-up.
  await light({ requests: config.warmupRequests }, 64);
  await besideHeavy(1000);

  const alone = [];
  const loaded = [];
  const heavyRuns = [];
  const perRoundRatio = [];
  for (let r = 0; r < config.rounds; r++) {
    let aloneRun;
    let loadedRun;
    for (const phase of r % 2 === 0 ? ['alone', 'loaded'] : ['loaded', 'alone']) {
      if (phase === 'alone') {
        aloneRun = await light({ requests: config.lightRequests });
      } else {
        const both = await besideHeavy();
        loadedRun = both.light;
        heavyRuns.push(both.heavy);
      }
    }
    alone.push(aloneRun.latenciesNs);
    loaded.push(loadedRun.latenciesNs);
    perRoundRatio.push(p99(sortedCopy(loadedRun.latenciesNs)) / p99(sortedCopy(aloneRun.latenciesNs)));
  }

  const lightAlone = { inFlight: 1, ...latencyUs(concat(alone)) };
  const lightLoaded = { inFlight: 1, ...latencyUs(concat(loaded)) };
  const heavyRequests = heavyRuns.reduce((n, x) => n + x.requests, 0);
  const heavySeconds = heavyRuns.reduce((n, x) => n + x.elapsedMs, 0) / 1000;
  const heavyEngine = sortedCopy(heavyRuns.flatMap((x) => x.samples).filter((x) => x !== undefined));
  const heavyLatency = latencyUs(concat(heavyRuns.map((x) => x.latenciesNs)));
  const p99Ratio = lightLoaded.p99Us / lightAlone.p99Us;

  const report = {
    bench: 'mixed',
    quick,
    machine: machineInfo(),
    config: { ...config, cores: CORES, light: 'build/guests/c/hello.wasm', heavy: 'build/guests/component/testkit.wasm', logLevel: kiln.logLevel },
    light: { alone: lightAlone, besideHeavy: lightLoaded },
    heavy: {
      inFlight: config.heavyInFlight,
      requests: heavyRequests,
      seconds: round(heavySeconds, 3),
      requestsPerSecond: round(heavyRequests / heavySeconds, 1),
      // What the executors could do if they did nothing but spin.
      ceilingRequestsPerSecond: round((CORES * 1000) / config.spinMs, 1),
      latency: { p50Ms: round(heavyLatency.p50Us / 1000, 2), p99Ms: round(heavyLatency.p99Us / 1000, 2) },
      engineP50Ms: round(median(heavyEngine), 2),
    },
    ratios: {
      p50: round(lightLoaded.p50Us / lightAlone.p50Us),
      p99: round(p99Ratio),
    },
    perRound: { p99Ratio: spread(perRoundRatio) },
    targets: { lightP99Ratio: { target: `≤ ${TARGET_P99_RATIO}`, value: round(p99Ratio), met: p99Ratio <= TARGET_P99_RATIO } },
  };

  const fmt = (x, d = 1) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const h = report.heavy;
  emit(
    report,
    [
      ['light (hello) @1', 'requests', 'p50 µs', 'p99 µs', 'mean µs'],
      ['alone', lightAlone.requests, fmt(lightAlone.p50Us), fmt(lightAlone.p99Us), fmt(lightAlone.meanUs)],
      [`beside heavy ×${config.heavyInFlight}`, lightLoaded.requests, fmt(lightLoaded.p50Us), fmt(lightLoaded.p99Us), fmt(lightLoaded.meanUs)],
    ],
    [
      `light p99 beside heavy / alone ${fmt(p99Ratio, 2)} (target ≤ ${TARGET_P99_RATIO}) ${report.targets.lightP99Ratio.met ? 'ok' : 'MISSED'}; ` +
        `per round ${report.perRound.p99Ratio.min}–${report.perRound.p99Ratio.max}; p50 ratio ${fmt(report.ratios.p50, 2)}`,
      `heavy spin:${config.spinMs}: ${fmt(h.requestsPerSecond)} req/s (ceiling ${fmt(h.ceilingRequestsPerSecond)}), ` +
        `p50 ${fmt(h.latency.p50Ms, 2)} ms, p99 ${fmt(h.latency.p99Ms, 2)} ms, engine p50 ${fmt(h.engineP50Ms, 2)} ms`,
    ],
  );
} finally {
  for (const c of connections) c.close();
  await kiln?.stop();
}
