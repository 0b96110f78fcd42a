#!/usr/bin/env node
// Runs every benchmark in BENCHMARKS that exists, one after another, each as
// its own child process (so none shares a process or an event loop with
// another), and prints their JSON combined into one object on stdout. Each
// benchmark's human table goes to stderr as it runs.
//
//   node bench/run.mjs [args...]     (args, e.g. --quick, go to every benchmark)
//
// `npm run bench` builds (tsc, guests) and then runs this. Exits non-zero when
// a benchmark crashed or printed no JSON; a missed target is a result, not a failure.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { machineInfo, ROOT } from './lib.mjs';

// Benchmarks in the order they run; a file that does not exist is skipped.
const BENCHMARKS = [
  'invoke.mjs',
  'handoff.mjs',
  'warmcall.mjs',
  'coldstart.mjs',
  'coldstart-snapshot.mjs',
  'fuel.mjs',
  'e2e.mjs',
  'burst.mjs',
  'mixed.mjs',
];
// A benchmark that takes longer than this is stopped and reported as failed.
const TIMEOUT_MS = 15 * 60_000;

function runOne(file, args) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [join(ROOT, 'bench', file), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => (stdout += chunk));
    const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, error: error.message });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = Number(((Date.now() - started) / 1000).toFixed(1));
      // The report is the last line of stdout that parses as a JSON object.
      const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
      let report;
      for (let i = lines.length - 1; i >= 0 && report === undefined; i--) {
        try {
          const value = JSON.parse(lines[i]);
          if (value && typeof value === 'object' && !Array.isArray(value)) report = value;
        } catch {
          // not JSON
        }
      }
      if (code === 0 && report) resolve({ ok: true, seconds, report });
      else resolve({ ok: false, seconds, error: `exited with ${signal ?? `code ${code}`}${report ? '' : ', no JSON report'}`, report });
    });
  });
}

const args = process.argv.slice(2);
const combined = { bench: 'all', startedAt: new Date().toISOString(), machine: machineInfo(), args, results: {}, skipped: [], failed: [] };
for (const file of BENCHMARKS) {
  const name = file.replace(/\.mjs$/, '');
  if (!existsSync(join(ROOT, 'bench', file))) {
    combined.skipped.push(name);
    continue;
  }
  process.stderr.write(`\n== bench/${file} ${args.join(' ')}\n`);
  const outcome = await runOne(file, args);
  if (outcome.report) combined.results[name] = outcome.report;
  if (!outcome.ok) {
    combined.failed.push({ bench: name, error: outcome.error });
    process.stderr.write(`bench/${file} failed: ${outcome.error}\n`);
  } else {
    process.stderr.write(`(bench/${file}: ${outcome.seconds} s)\n`);
  }
}
combined.finishedAt = new Date().toISOString();
process.stdout.write(`${JSON.stringify(combined)}\n`);
process.exitCode = combined.failed.length > 0 ? 1 : 0;
