#!/usr/bin/env node
// Fuel metering overhead: each compute guest runs unmetered and metered
// (instrumented by Kiln's fuel instrumenter) in the same process, alternating
// the two so both share the machine's noise, after a warm-up long enough for
// V8 to tier the hot functions up to optimised code.
// Prints one JSON object to stdout and a short table to stderr.
// Needs `npx tsc -p tsconfig.json` (for dist/) and `node scripts/build-guests.mjs`.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FUEL_GLOBAL_EXPORT, instrumentFuel } from '../dist/engine/fuel/instrument.js';

const guestDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'guests', 'reactor');
const TARGET_GEOMEAN = 0.12;
const TARGET_WORST = 0.35;
const WARMUP = 20;
const BUDGET = 1n << 62n;

// Inputs sized so one call takes a few to a few tens of milliseconds.
const guests = [
  { name: 'fib', file: 'fib', fn: 'fib', args: [30], samples: 100 },
  { name: 'crc32', file: 'crc32', fn: 'crc32', args: [1 << 20, 7], samples: 100 },
  { name: 'sha256', file: 'sha256', fn: 'sha256', args: [1 << 20, 7], samples: 100 },
  { name: 'quicksort', file: 'quicksort', fn: 'sort_own', args: [1 << 20, 7], samples: 40 },
  { name: 'libc-qsort', file: 'quicksort', fn: 'sort_libc', args: [1 << 16, 7], samples: 60 },
];

function instantiate(bytes) {
  return new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function summary(times) {
  const sorted = [...times].sort((a, b) => a - b);
  return { medianMs: round(quantile(sorted, 0.5)), p99Ms: round(quantile(sorted, 0.99)) };
}

const round = (x, digits = 3) => Number(x.toFixed(digits));

const results = [];
for (const guest of guests) {
  const raw = readFileSync(join(guestDir, `${guest.file}.wasm`));
  const plain = instantiate(raw);
  const metered = instantiate(instrumentFuel(raw));
  const fuel = metered[FUEL_GLOBAL_EXPORT];
  const runPlain = () => {
    const start = performance.now();
    const result = plain[guest.fn](...guest.args);
    return { ms: performance.now() - start, result };
  };
  const runMetered = () => {
    fuel.value = BUDGET;
    const start = performance.now();
    const result = metered[guest.fn](...guest.args);
    const ms = performance.now() - start;
    return { ms, result, used: BUDGET - fuel.value };
  };
  const plainTimes = [];
  const meteredTimes = [];
  let used;
  for (let i = 0; i < WARMUP + guest.samples; i++) {
    // Alternate which variant goes first so neither always runs on a warmer cache.
    let p, m;
    if (i % 2 === 0) {
      p = runPlain();
      m = runMetered();
    } else {
      m = runMetered();
      p = runPlain();
    }
    if (p.result !== m.result) throw new Error(`${guest.name}: metered result ${m.result} differs from ${p.result}`);
    if (used !== undefined && m.used !== used) throw new Error(`${guest.name}: fuel used changed from ${used} to ${m.used}`);
    used = m.used;
    if (i < WARMUP) continue;
    plainTimes.push(p.ms);
    meteredTimes.push(m.ms);
  }
  const unmetered = summary(plainTimes);
  const meteredSummary = summary(meteredTimes);
  results.push({
    guest: guest.name,
    call: `${guest.fn}(${guest.args.join(', ')})`,
    samples: guest.samples,
    fuel: Number(used),
    unmetered,
    metered: meteredSummary,
    overhead: round(meteredSummary.medianMs / unmetered.medianMs - 1),
  });
}

const ratios = results.map((r) => 1 + r.overhead);
const geomean = round(Math.exp(ratios.reduce((sum, x) => sum + Math.log(x), 0) / ratios.length) - 1);
const worst = results.reduce((a, b) => (b.overhead > a.overhead ? b : a));
const report = {
  bench: 'fuel',
  node: process.version,
  v8: process.versions.v8,
  guests: results,
  geomeanOverhead: geomean,
  worstOverhead: { guest: worst.guest, overhead: worst.overhead },
  targets: { geomeanOverhead: TARGET_GEOMEAN, worstOverhead: TARGET_WORST },
  pass: geomean <= TARGET_GEOMEAN && worst.overhead <= TARGET_WORST,
};
console.log(JSON.stringify(report));

const pct = (x) => `${(x * 100).toFixed(1)}%`.padStart(7);
const ms = (x) => x.toFixed(2).padStart(9);
console.error('guest        unmetered med/p99 ms     metered med/p99 ms   overhead');
for (const r of results) {
  console.error(`${r.guest.padEnd(12)} ${ms(r.unmetered.medianMs)} ${ms(r.unmetered.p99Ms)}   ${ms(r.metered.medianMs)} ${ms(r.metered.p99Ms)}   ${pct(r.overhead)}`);
}
console.error(`geometric mean ${pct(geomean).trim()}, worst ${worst.guest} ${pct(worst.overhead).trim()} (targets ≤ ${pct(TARGET_GEOMEAN).trim()}, ≤ ${pct(TARGET_WORST).trim()})`);
