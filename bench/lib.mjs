// Shared helpers for the benchmarks in bench/: child servers (the Kiln
// daemon, the echo server), a raw msgpack-rpc load generator over one `ws`
// WebSocket, percentiles, machine info and the output printer (one JSON
// object on stdout, a short aligned table on stderr).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

// The same options as Kiln's codec (src/protocol/codec.ts): plain MessagePack.
export const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true, moreTypes: false });

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------- children

/**
 * Spawns `node ...args` and waits for a stderr line matching `ready`
 * (whose first group must be the port). Everything the child writes to
 * stderr before that is kept for the error message; after it, stderr is
 * drained and kept (bounded) for a crash report. stdout goes to /dev/null.
 */
function spawnServer(label, args, ready, { env } = {}) {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let tail = '';
  let exited = false;
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      resolve({ code, signal });
    });
  });
  const port = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${label} did not become ready in ${READY_TIMEOUT_MS} ms; stderr:\n${tail}`));
    }, READY_TIMEOUT_MS);
    let found = false;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      tail = (tail + chunk).slice(-8192);
      if (found) return;
      const match = ready.exec(tail);
      if (match) {
        found = true;
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`${label} exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${tail}`));
    });
  });
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!exited) child.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      await exit;
      clearTimeout(timer);
    }
    return exit;
  };
  return { child, port, stop, exit, stderrTail: () => tail };
}

/**
 * Starts `kiln serve --dev` on a free port (port 0: the daemon reports the one
 * it got) with a temporary data directory. The daemon's log (pino, stdout)
 * goes to /dev/null; KILN_LOG_LEVEL from the environment passes through.
 * `nodeArgs` go to node before the script (e.g. --cpu-prof).
 */
export async function startKiln({ env, nodeArgs = [] } = {}) {
  const dataDir = mkdtempSync(join(os.tmpdir(), 'kiln-bench-'));
  const server = spawnServer(
    'kiln daemon',
    [...nodeArgs, join(ROOT, 'bin', 'kiln.js'), 'serve', '--dev', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir],
    /Kiln listening on ws:\/\/[^\s:]+:(\d+)/,
    { env },
  );
  const cleanup = () => rmSync(dataDir, { recursive: true, force: true });
  let port;
  try {
    port = await server.port;
    await waitHealthy(port);
  } catch (error) {
    await server.stop();
    cleanup();
    throw error;
  }
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    dataDir,
    pid: server.child.pid,
    logLevel: process.env.KILN_LOG_LEVEL ?? env?.KILN_LOG_LEVEL ?? 'info',
    stop: async () => {
      const result = await server.stop();
      cleanup();
      return result;
    },
  };
}

/** Starts bench/echo-server.mjs on a free port. */
export async function startEcho() {
  const server = spawnServer('echo server', [join(ROOT, 'bench', 'echo-server.mjs'), '0'], /echo listening on ws:\/\/[^\s:]+:(\d+)/);
  let port;
  try {
    port = await server.port;
    await waitHealthy(port);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { port, url: `ws://127.0.0.1:${port}`, pid: server.child.pid, stop: server.stop };
}

async function waitHealthy(port, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.status === 200) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`GET /healthz on port ${port} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ------------------------------------------------------- msgpack-rpc client

/** Reads the msgid of a response frame [1, msgid, error, result] without decoding the rest. */
function responseHeader(frame) {
  // fixarray(4), positive fixint 1
  if (frame.length < 4 || frame[0] !== 0x94 || frame[1] !== 0x01) return undefined;
  let id;
  let at;
  const b = frame[2];
  if (b <= 0x7f) {
    id = b;
    at = 3;
  } else if (b === 0xcc) {
    id = frame[3];
    at = 4;
  } else if (b === 0xcd) {
    id = (frame[3] << 8) | frame[4];
    at = 5;
  } else if (b === 0xce) {
    id = ((frame[3] << 24) >>> 0) + ((frame[4] << 16) | (frame[5] << 8) | frame[6]);
    at = 7;
  } else {
    return undefined;
  }
  return { id, ok: frame[at] === 0xc0 };
}

const MAX_ID = 0xffffffff;

/**
 * One WebSocket to a msgpack-rpc server. `call` is a plain request for setup
 * (deploy); `load` is the load generator.
 */
export class RpcConnection {
  static open(url, path = '/v1') {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url + path, { perMessageDeflate: false, maxPayload: 128 * 1024 * 1024 });
      socket.binaryType = 'nodebuffer';
      const timer = setTimeout(() => {
        socket.terminate();
        reject(new Error(`cannot connect to ${url}${path} within 10 s`));
      }, 10_000);
      socket.once('open', () => {
        clearTimeout(timer);
        resolve(new RpcConnection(socket, url));
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  constructor(socket, url) {
    this.socket = socket;
    this.url = url;
    this.nextId = 1;
    this.onResponse = undefined;
    this.calls = new Map();
    this.closedError = undefined;
    socket.on('message', (data, isBinary) => {
      if (!isBinary) return this.fail(new Error(`${url}: unexpected text frame`));
      if (this.onResponse) this.onResponse(data);
      else this.onCallResponse(data);
    });
    socket.on('close', (code) => this.fail(new Error(`${url}: connection closed (${code})`)));
    socket.on('error', (error) => this.fail(error));
  }

  fail(error) {
    this.closedError ??= error;
    for (const { reject } of this.calls.values()) reject(error);
    this.calls.clear();
    this.onFailure?.(error);
  }

  takeId() {
    const id = this.nextId;
    this.nextId = id >= MAX_ID ? 1 : id + 1;
    return id;
  }

  /** One request, answered with its result or rejected with its error. */
  call(method, params, timeoutMs = 60_000) {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.takeId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.calls.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.socket.send(packr.pack([0, id, method, params]), { binary: true });
    });
  }

  onCallResponse(frame) {
    const message = packr.unpack(frame);
    if (!Array.isArray(message) || message[0] !== 1) return; // notifications: ignored here
    const pending = this.calls.get(message[1]);
    if (!pending) return;
    this.calls.delete(message[1]);
    if (message[2]) pending.reject(Object.assign(new Error(`${message[2].code}: ${message[2].message}`), { wire: message[2] }));
    else pending.resolve(message[3]);
  }

  /**
   * Keeps `inFlight` requests [0, id, method, params] outstanding until
   * `requests` have been sent, `durationMs` has passed or `signal` (an
   * AbortSignal) is aborted (whichever is set and comes first), then waits
   * for the rest. Records every round trip in nanoseconds
   * (process.hrtime.bigint, send to receipt of the answer).
   *
   * Each response's msgid and nil error are read from its header; the full
   * frame is decoded and passed to `check(result)` for the first `verifyFirst`
   * answers and then every `verifyEvery`-th, so the load generator's own
   * decoding cost stays small and equal for every target.
   */
  load({ method, params, inFlight, requests = Infinity, durationMs = Infinity, signal, check, verifyFirst = 64, verifyEvery = 1024 }) {
    if (requests === Infinity && durationMs === Infinity && !signal) throw new Error('load: set requests, durationMs or signal');
    if (this.closedError) return Promise.reject(this.closedError);
    const maxRequests = Math.min(requests, 10_000_000);
    // Requests are encoded once with a 32-bit msgid and the id is patched in.
    const template = Buffer.from(packr.pack([0, 0xfffffffe, method, params]));
    const idAt = template.indexOf(Buffer.from([0xce, 0xff, 0xff, 0xff, 0xfe]));
    if (idAt !== 2) throw new Error('load: unexpected request encoding');
    // Answers may come back far out of order (a cold executor compiling while a
    // warm one serves hundreds), so the id space is much larger than in-flight.
    const slots = 1 << 20;
    const slotId = new Float64Array(slots).fill(-1);
    const slotStart = new Float64Array(slots);
    const latencies = [];
    const samples = [];
    const base = process.hrtime.bigint();
    const now = () => Number(process.hrtime.bigint() - base);
    const deadline = durationMs === Infinity ? Infinity : durationMs * 1e6;
    // A phase that stops making progress is a failure, not a hang.
    const stallMs = 30_000;
    let sent = 0;
    let received = 0;
    let outstanding = 0;
    let stopSending = false;
    let firstSend = 0;
    let lastReceive = 0;

    return new Promise((resolve, reject) => {
      let lastProgress = Date.now();
      let done = false;
      const watchdog = setInterval(() => {
        if (Date.now() - lastProgress > stallMs) finish(new Error(`load on ${this.url}: no answer for ${stallMs} ms (${outstanding} outstanding)`));
      }, 1000);
      const finish = (error) => {
        if (done) return;
        done = true;
        clearInterval(watchdog);
        signal?.removeEventListener('abort', onAbort);
        this.onResponse = undefined;
        this.onFailure = undefined;
        if (error) return reject(error);
        const elapsedNs = lastReceive - firstSend;
        resolve({
          requests: received,
          inFlight,
          elapsedMs: elapsedNs / 1e6,
          throughput: elapsedNs > 0 ? received / (elapsedNs / 1e9) : 0,
          latenciesNs: Float64Array.from(latencies),
          samples,
        });
      };
      const sendOne = () => {
        const id = this.takeId();
        const frame = Buffer.from(template);
        frame.writeUInt32BE(id, 3);
        const slot = id & (slots - 1);
        if (slotId[slot] !== -1) throw new Error('load: msgid slot still in use (too many in flight)');
        slotId[slot] = id;
        const t = now();
        if (sent === 0) firstSend = t;
        slotStart[slot] = t;
        sent++;
        outstanding++;
        this.socket.send(frame, { binary: true });
      };
      const refill = () => {
        while (!stopSending && outstanding < inFlight) {
          if (sent >= maxRequests || (deadline !== Infinity && now() >= deadline) || signal?.aborted) {
            stopSending = true;
            break;
          }
          sendOne();
        }
        if (stopSending && outstanding === 0) finish();
      };
      // Stopping early sends nothing more; the answers still outstanding are awaited.
      const onAbort = () => {
        stopSending = true;
        if (outstanding === 0) finish();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.onFailure = (error) => finish(error);
      this.onResponse = (frame) => {
        const t = now();
        const header = responseHeader(frame);
        if (!header) return finish(new Error(`load on ${this.url}: unexpected frame ${frame.subarray(0, 32).toString('hex')}`));
        const slot = header.id & (slots - 1);
        if (slotId[slot] !== header.id) return finish(new Error(`load on ${this.url}: answer for unknown msgid ${header.id}`));
        slotId[slot] = -1;
        outstanding--;
        received++;
        lastReceive = t;
        lastProgress = Date.now();
        latencies.push(t - slotStart[slot]);
        if (!header.ok || received <= verifyFirst || received % verifyEvery === 0) {
          const message = packr.unpack(frame);
          if (message[2]) return finish(new Error(`load on ${this.url}: ${method} failed: ${JSON.stringify(message[2]).slice(0, 500)}`));
          try {
            const sample = check ? check(message[3]) : undefined;
            if (sample !== undefined) samples.push(sample);
          } catch (error) {
            return finish(error);
          }
        }
        try {
          refill();
        } catch (error) {
          finish(error);
        }
      };
      try {
        refill();
      } catch (error) {
        finish(error);
      }
    });
  }

  /**
   * Encodes `count` requests [0, id, method, params] now and returns
   * `fire(base)`, which sends them all in one go and resolves once every one
   * is answered with { sentNs, answers }: when the last send returned and,
   * per answer, its arrival (`atNs`) — both in ns since `base`, a
   * process.hrtime.bigint() — and its decoded `error` and `result`.
   * Encoding beforehand lets several connections be armed and then fired
   * together; answers are decoded only after the last one arrives, so no
   * decoding delays a timestamp. Unlike `load`, an error answer is a result,
   * not a failure.
   */
  armBurst({ method, params, count, timeoutMs = 60_000 }) {
    const ids = new Set();
    const frames = [];
    for (let i = 0; i < count; i++) {
      const id = this.takeId();
      ids.add(id);
      frames.push(packr.pack([0, id, method, params]));
    }
    return (base) =>
      new Promise((resolve, reject) => {
        if (this.closedError) return reject(this.closedError);
        const arrived = [];
        let sentNs = NaN;
        const finish = (error) => {
          clearTimeout(timer);
          this.onResponse = undefined;
          this.onFailure = undefined;
          if (error) return reject(error);
          const answers = arrived.map(({ atNs, frame }) => {
            const message = packr.unpack(frame);
            return { atNs, error: message[2] ?? undefined, result: message[3] ?? undefined };
          });
          resolve({ sentNs, answers });
        };
        const timer = setTimeout(() => finish(new Error(`burst on ${this.url}: ${count - arrived.length} of ${count} unanswered after ${timeoutMs} ms`)), timeoutMs);
        this.onFailure = (error) => finish(error);
        this.onResponse = (frame) => {
          const atNs = Number(process.hrtime.bigint() - base);
          const header = responseHeader(frame);
          if (!header || !ids.delete(header.id)) return finish(new Error(`burst on ${this.url}: unexpected frame ${frame.subarray(0, 32).toString('hex')}`));
          arrived.push({ atNs, frame });
          if (ids.size === 0) finish();
        };
        // ws writes every frame on its own; with its net.Socket (a private but
        // long-stable field) corked, the whole burst leaves in one write and
        // reaches the server together, as a burst should.
        const tcp = this.socket._socket;
        tcp?.cork();
        for (const frame of frames) this.socket.send(frame, { binary: true });
        tcp?.uncork();
        sentNs = Number(process.hrtime.bigint() - base);
      });
  }

  close() {
    this.onFailure = undefined;
    this.socket.removeAllListeners('close');
    this.socket.removeAllListeners('error');
    this.socket.on('error', () => {});
    this.socket.close();
  }
}

// ------------------------------------------------------------- statistics

/** Nearest-rank percentile of an ascending-sorted array, q in (0, 1]. */
export function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const median = (sorted) => percentile(sorted, 0.5);
export const p99 = (sorted) => percentile(sorted, 0.99);

export function sortedCopy(values) {
  const copy = Float64Array.from(values);
  copy.sort();
  return copy;
}

export function mean(values) {
  let sum = 0;
  for (const v of values) sum += v;
  return values.length ? sum / values.length : NaN;
}

/** Joins several Float64Arrays into one. */
export function concat(arrays) {
  const out = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

export const round = (x, digits = 3) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

/** Round trips (ns, in any order) summarised in µs: count, p50, p99, mean. */
export function latencyUs(latenciesNs) {
  const sorted = sortedCopy(latenciesNs);
  const us = (ns) => round(ns / 1000, 1);
  return { requests: sorted.length, p50Us: us(median(sorted)), p99Us: us(p99(sorted)), meanUs: us(mean(sorted)) };
}

/** The min / median / max of per-round values. */
export function spread(values) {
  const sorted = sortedCopy(values);
  return { min: round(sorted[0]), median: round(median(sorted)), max: round(sorted[sorted.length - 1]) };
}

// ------------------------------------------------------------ environment

export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    nproc: os.availableParallelism(),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemoryMiB: Math.round(os.totalmem() / 2 ** 20),
    loadavg: os.loadavg().map((x) => round(x, 2)),
  };
}

/**
 * CPU time (user + system, µs) a process has used so far: its main thread
 * (tid = pid) and all its threads. Linux /proc only (10 ms ticks); undefined
 * elsewhere.
 */
export function processCpuUs(pid) {
  const tickUs = 1e6 / 100; // CLK_TCK is 100 on Linux
  try {
    let main = 0;
    let total = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      let stat;
      try {
        stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      } catch {
        continue; // the thread ended
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const us = (Number(fields[11]) + Number(fields[12])) * tickUs; // utime + stime
      total += us;
      if (Number(tid) === pid) main = us;
    }
    return { main, total };
  } catch {
    return undefined;
  }
}

// ----------------------------------------------------------------- output

/**
 * Writes `report` as one JSON line to stdout and `rows` (arrays of cells,
 * the first one the header) as an aligned table to stderr, then `notes`.
 */
export function emit(report, rows = [], notes = []) {
  process.stdout.write(`${JSON.stringify(report)}\n`);
  const widths = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, String(cell).length)));
  for (const row of rows) {
    const line = row.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]))).join('  ');
    process.stderr.write(`${line}\n`);
  }
  for (const note of notes) process.stderr.write(`${note}\n`);
}

/**
 * Reads --NAME from `flags` (parseFlags) as a positive integer, or `fallback`
 * when absent.
 */
export function intFlag(flags, name, fallback) {
  if (flags[name] === undefined) return fallback;
  const value = Number(flags[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  return value;
}

/** True for --quick or BENCH_QUICK=1. */
export const isQuick = (flags) => Boolean(flags.quick) || process.env.BENCH_QUICK === '1';

/**
 * A payload of `bytes` lower-case ASCII letters and what the C hello guest
 * answers to it (the same, upper-cased): a check no echo can pass by accident.
 */
export function helloPayload(bytes) {
  const payload = Buffer.alloc(bytes);
  for (let i = 0; i < payload.length; i++) payload[i] = 0x61 + (i % 26);
  return { payload, upper: Buffer.from(payload.toString('latin1').toUpperCase(), 'latin1') };
}

/** Throws unless `result.payload` holds exactly the bytes `expected`. */
export function expectPayload(result, expected, who) {
  const got = result?.payload;
  if (!(got instanceof Uint8Array) || !Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(expected)) {
    throw new Error(`${who}: wrong payload ${JSON.stringify(result).slice(0, 300)}`);
  }
}

/** Parses --flag and --flag=value / --flag value arguments. */
export function parseFlags(argv = process.argv.slice(2)) {
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    if (eq > 0) flags[arg.slice(2, eq)] = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags[arg.slice(2)] = argv[++i];
    else flags[arg.slice(2)] = true;
  }
  return flags;
}
