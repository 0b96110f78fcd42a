#!/usr/bin/env node
// Warm-invoke benchmark: Kiln's `invoke` of the C handler component against
// the transport's ceiling (bench/echo-server.mjs: bare uWebSockets.js doing the
// same msgpack decode/encode without a guest), measured in the same run over
// loopback, with the same 64-byte payload and the same request shape.
//
//   latency:    1 request in flight, p50 / p99 / mean round trip
//   throughput: 64 requests in flight, requests per second
//
// The two targets run as separate processes from this load generator and are
// measured in alternating rounds (the order flips every round) so machine
// noise hits both equally. Prints one JSON object to stdout, a table to stderr.
//
//   node bench/invoke.mjs [--quick] [--rounds N] [--warmup N] [--requests N]
//                         [--duration-ms MS] [--in-flight N] [--payload BYTES]
//                         [--profile DIR]
//
// --profile DIR runs the daemon with --cpu-prof into DIR (main thread and
// executor threads; open the .cpuprofile files in Chrome DevTools).
// BENCH_QUICK=1 is the same as --quick. KILN_LOG_LEVEL passes through to the
// daemon (default info: one REPORT log line per invocation, to /dev/null).
// Needs `npx tsc -p .` (dist/) and `node scripts/build-guests.mjs`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  concat,
  emit,
  machineInfo,
  mean,
  median,
  p99,
  parseFlags,
  processCpuUs,
  round,
  ROOT,
  RpcConnection,
  sortedCopy,
  startEcho,
  startKiln,
} from './lib.mjs';

const TARGET_P50_RATIO = 3;
const TARGET_THROUGHPUT_RATIO = 0.3;
const FUNCTION_NAME = 'bench-hello';
const CONTENT_TYPE = 'application/octet-stream';
const GUEST = join(ROOT, 'build', 'guests', 'c', 'hello.wasm');

const flags = parseFlags();
const quick = Boolean(flags.quick) || process.env.BENCH_QUICK === '1';
const int = (name, fallback) => {
  if (flags[name] === undefined) return fallback;
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  return value;
};
const config = {
  rounds: int('rounds', quick ? 2 : 5),
  // Per target, at 1 in flight, before anything is measured.
  warmupRequests: int('warmup', quick ? 200 : 1000),
  // Per target, split evenly over the rounds.
  latencyRequests: int('requests', quick ? 1000 : 5000),
  throughputWarmupMs: quick ? 300 : 1000,
  throughputMs: int('duration-ms', quick ? 1000 : 5000),
  inFlight: int('in-flight', 64),
  payloadBytes: int('payload', 64),
};

// Lower-case ASCII: the C handler upper-cases it, the echo returns it as is.
const payload = Buffer.alloc(config.payloadBytes);
for (let i = 0; i < payload.length; i++) payload[i] = 0x61 + (i % 26);
const upper = Buffer.from(payload.toString('latin1').toUpperCase(), 'latin1');
const invokeParams = [{ function: FUNCTION_NAME, payload, contentType: CONTENT_TYPE }];

function expectPayload(result, expected, who) {
  const got = result?.payload;
  if (!(got instanceof Uint8Array) || !Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(expected)) {
    throw new Error(`${who}: wrong payload ${JSON.stringify(result).slice(0, 300)}`);
  }
}

let kiln;
let echo;
const connections = [];
try {
  const wasm = readFileSync(GUEST);
  const profile = typeof flags.profile === 'string' ? flags.profile : undefined;
  const nodeArgs = profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [];
  [kiln, echo] = await Promise.all([startKiln({ nodeArgs }), startEcho()]);
  const [kilnConn, echoConn] = await Promise.all([RpcConnection.open(kiln.url), RpcConnection.open(echo.url)]);
  connections.push(kilnConn, echoConn);
  await kilnConn.call('functions.deploy', [{ name: FUNCTION_NAME, wasm, config: {} }]);

  const targets = [
    {
      name: 'kiln',
      conn: kilnConn,
      pid: kiln.pid,
      check: (result) => {
        expectPayload(result, upper, 'kiln');
        return { engineMs: result.report?.durationMs, cold: result.report?.cold };
      },
      latency: [],
      throughput: [],
      engineMs: [],
      cpu: { main: 0, total: 0, client: 0 },
    },
    {
      name: 'echo',
      conn: echoConn,
      pid: echo.pid,
      check: (result) => expectPayload(result, payload, 'echo'),
      latency: [],
      throughput: [],
      engineMs: [],
      cpu: { main: 0, total: 0, client: 0 },
    },
  ];
  const [kilnT, echoT] = targets;
  const ordered = (r) => (r % 2 === 0 ? targets : [...targets].reverse());
  // A sampled answer is decoded after its round trip is timed, so at 1 in
  // flight the check is in no measured latency; under load both pay it alike.
  const run = (t, options, verifyFirst, verifyEvery = 1024) =>
    t.conn.load({ method: 'invoke', params: invokeParams, check: t.check, verifyFirst, verifyEvery, ...options });

  process.stderr.write(`invoke bench${quick ? ' (quick)' : ''}: kiln pid ${kiln.pid} port ${kiln.port}, echo pid ${echo.pid} port ${echo.port}\n`);

  // Warm-up: cold instances, V8 tier-up on all three processes, both executors.
  for (const t of targets) {
    await run(t, { inFlight: 1, requests: config.warmupRequests }, config.warmupRequests);
    await run(t, { inFlight: config.inFlight, durationMs: config.throughputWarmupMs });
  }

  const perRound = { p50Ratio: [], throughputRatio: [] };
  const latencyPerRound = Math.ceil(config.latencyRequests / config.rounds);
  for (let r = 0; r < config.rounds; r++) {
    const p50 = {};
    for (const t of ordered(r)) {
      const result = await run(t, { inFlight: 1, requests: latencyPerRound }, 0, 16);
      t.latency.push(result.latenciesNs);
      for (const s of result.samples) if (s?.engineMs !== undefined) t.engineMs.push(s.engineMs);
      p50[t.name] = median(sortedCopy(result.latenciesNs));
    }
    perRound.p50Ratio.push(p50.kiln / p50.echo);
  }
  const throughputPerRound = config.throughputMs / config.rounds;
  for (let r = 0; r < config.rounds; r++) {
    const rps = {};
    for (const t of ordered(r)) {
      const before = processCpuUs(t.pid);
      const clientBefore = process.cpuUsage();
      const result = await run(t, { inFlight: config.inFlight, durationMs: throughputPerRound }, 0);
      const client = process.cpuUsage(clientBefore);
      const after = processCpuUs(t.pid);
      if (before && after) {
        t.cpu.main += after.main - before.main;
        t.cpu.total += after.total - before.total;
      }
      t.cpu.client += client.user + client.system;
      t.throughput.push({ requests: result.requests, elapsedMs: result.elapsedMs, latenciesNs: result.latenciesNs });
      rps[t.name] = result.throughput;
    }
    perRound.throughputRatio.push(rps.kiln / rps.echo);
  }

  const summarize = (t) => {
    const lat = sortedCopy(concat(t.latency));
    const requests = t.throughput.reduce((n, x) => n + x.requests, 0);
    const seconds = t.throughput.reduce((n, x) => n + x.elapsedMs, 0) / 1000;
    const loaded = sortedCopy(concat(t.throughput.map((x) => x.latenciesNs)));
    const us = (ns) => round(ns / 1000, 1);
    return {
      latency: { inFlight: 1, requests: lat.length, p50Us: us(median(lat)), p99Us: us(p99(lat)), meanUs: us(mean(lat)) },
      throughput: {
        inFlight: config.inFlight,
        requests,
        seconds: round(seconds, 3),
        requestsPerSecond: Math.round(requests / seconds),
        p50Us: us(median(loaded)),
        p99Us: us(p99(loaded)),
        // CPU per request while loaded (Linux /proc, 10 ms ticks): the server's
        // main thread, all its threads, and this load generator.
        cpuUsPerRequest: {
          serverMainThread: round(t.cpu.main / requests, 1),
          serverAllThreads: round(t.cpu.total / requests, 1),
          loadGenerator: round(t.cpu.client / requests, 1),
        },
        serverMainThreadBusy: round(t.cpu.main / 1000 / (seconds * 1000), 2),
      },
    };
  };
  const kilnSummary = summarize(kilnT);
  const echoSummary = summarize(echoT);
  const engine = sortedCopy(kilnT.engineMs);
  if (engine.length) kilnSummary.engineP50Us = round(median(engine) * 1000, 1);
  kilnSummary.logLevel = kiln.logLevel;

  const p50Ratio = kilnSummary.latency.p50Us / echoSummary.latency.p50Us;
  const throughputRatio = kilnSummary.throughput.requestsPerSecond / echoSummary.throughput.requestsPerSecond;
  const spread = (xs) => {
    const s = sortedCopy(xs);
    return { min: round(s[0]), median: round(median(s)), max: round(s[s.length - 1]) };
  };
  const report = {
    bench: 'invoke',
    quick,
    machine: machineInfo(),
    config: { ...config, guest: 'build/guests/c/hello.wasm' },
    kiln: kilnSummary,
    echo: echoSummary,
    ratios: {
      p50: round(p50Ratio),
      p99: round(kilnSummary.latency.p99Us / echoSummary.latency.p99Us),
      throughput: round(throughputRatio),
    },
    perRound: { p50Ratio: spread(perRound.p50Ratio), throughputRatio: spread(perRound.throughputRatio) },
    targets: { p50Ratio: TARGET_P50_RATIO, throughputRatio: TARGET_THROUGHPUT_RATIO },
    pass: { p50Ratio: p50Ratio <= TARGET_P50_RATIO, throughputRatio: throughputRatio >= TARGET_THROUGHPUT_RATIO },
  };

  const k = kilnSummary;
  const e = echoSummary;
  const fmt = (x, d = 1) => x.toFixed(d);
  emit(
    report,
    [
      ['', 'p50 µs', 'p99 µs', 'mean µs', `req/s @${config.inFlight}`, `p99 µs @${config.inFlight}`],
      ['kiln invoke', fmt(k.latency.p50Us), fmt(k.latency.p99Us), fmt(k.latency.meanUs), k.throughput.requestsPerSecond, fmt(k.throughput.p99Us)],
      ['echo (uWS)', fmt(e.latency.p50Us), fmt(e.latency.p99Us), fmt(e.latency.meanUs), e.throughput.requestsPerSecond, fmt(e.throughput.p99Us)],
    ],
    [
      `p50 ratio kiln/echo ${fmt(p50Ratio, 2)} (target ≤ ${TARGET_P50_RATIO}) ${report.pass.p50Ratio ? 'ok' : 'MISSED'}; ` +
        `per round ${report.perRound.p50Ratio.min}–${report.perRound.p50Ratio.max}`,
      `throughput ratio kiln/echo ${fmt(throughputRatio, 2)} (target ≥ ${TARGET_THROUGHPUT_RATIO}) ${report.pass.throughputRatio ? 'ok' : 'MISSED'}; ` +
        `per round ${report.perRound.throughputRatio.min}–${report.perRound.throughputRatio.max}`,
      `server CPU per request @${config.inFlight}: kiln main thread ${k.throughput.cpuUsPerRequest.serverMainThread} µs ` +
        `(busy ${Math.round(k.throughput.serverMainThreadBusy * 100)}%), all threads ${k.throughput.cpuUsPerRequest.serverAllThreads} µs; ` +
        `echo ${e.throughput.cpuUsPerRequest.serverMainThread} µs (busy ${Math.round(e.throughput.serverMainThreadBusy * 100)}%)`,
      ...(k.engineP50Us !== undefined ? [`kiln engine time (report.durationMs) p50 ${k.engineP50Us} µs (sampled)`] : []),
    ],
  );
} finally {
  for (const c of connections) c.close();
  await Promise.all([kiln?.stop(), echo?.stop()]);
}
