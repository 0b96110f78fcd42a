// The single-producer single-consumer ring between the network thread and an
// executor: records come out as they went in, in order, across wrap-arounds
// and a full ring; the doorbell protocol never leaves a record unread with
// its consumer asleep; and two real threads hand over many records that way.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ring } from '../../src/executor/ring.js';

/** The bytes of record number n; both threads of the stress tests use the same. */
const PATTERN = `export const pattern = (n, i) => (n * 131 + i * 7 + 1) & 0xff;`;
const pattern = (n: number, i: number) => (n * 131 + i * 7 + 1) & 0xff;

function write(ring: Ring, n: number, length: number): boolean {
  const at = ring.reserve(length);
  if (at < 0) return false;
  for (let i = 0; i < length; i++) ring.bytes[at + i] = pattern(n, i);
  ring.commit(length);
  return true;
}

/** The next record, copied out and released; undefined if the ring is empty. */
function read(ring: Ring): Uint8Array | undefined {
  const at = ring.peek();
  if (at < 0) return undefined;
  const record = new Uint8Array(ring.bytes.subarray(at, at + ring.lengthAt(at)));
  ring.release(at);
  return record;
}

/** Whether `record` is record number n, `length` bytes long. */
function isRecord(record: Uint8Array | undefined, n: number, length: number): boolean {
  if (record?.length !== length) return false;
  for (let i = 0; i < length; i++) if (record[i] !== pattern(n, i)) return false;
  return true;
}

/** A seeded generator, so a failure repeats. */
function random(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state / 2 ** 32;
  };
}

describe('Ring', () => {
  it('wraps around the end: a record that does not fit there starts again at offset 0', () => {
    const ring = Ring.allocate(512);
    expect(ring.capacity).toBe(512);
    // Records of 116 bytes take 120: four fit before the end, a fifth would have to wrap.
    for (let n = 1; n <= 4; n++) expect(write(ring, n, 116)).toBe(true);
    expect(ring.reserve(116)).toBe(-1);
    expect(isRecord(read(ring), 1, 116)).toBe(true);
    // Wrapped, it would end exactly where record 2 starts: a full ring would read as empty.
    expect(ring.reserve(116)).toBe(-1);
    expect(isRecord(read(ring), 2, 116)).toBe(true);
    expect(write(ring, 5, 116)).toBe(true);
    expect(isRecord(read(ring), 3, 116)).toBe(true);
    expect(isRecord(read(ring), 4, 116)).toBe(true);
    expect(ring.peek()).toBe(4);
    expect(isRecord(read(ring), 5, 116)).toBe(true);
    expect(ring.isEmpty()).toBe(true);

    // Round and round with records pending across the wrap.
    let next = 6;
    let oldest = 6;
    let wraps = 0;
    let last = -1;
    for (let round = 0; round < 200; round++) {
      while (write(ring, next, (next * 13) % 90)) next++;
      const at = ring.peek();
      if (at < last) wraps++;
      last = at;
      for (let k = 0; k < 1 + (round % 3); k++) {
        const record = read(ring);
        if (!record) break;
        expect(isRecord(record, oldest, (oldest * 13) % 90)).toBe(true);
        oldest++;
      }
    }
    for (let record = read(ring); record; record = read(ring), oldest++) expect(isRecord(record, oldest, (oldest * 13) % 90)).toBe(true);
    expect(oldest).toBe(next);
    expect(wraps).toBeGreaterThan(20);
  });

  it('refuses a record while full and takes it once there is room; never one past maxRecord', () => {
    const ring = Ring.allocate(256);
    expect(ring.maxRecord).toBe(60);
    expect(ring.reserve(61)).toBe(-1);
    // Records of 24 bytes take 32: eight would fill the ring exactly, which would read as empty.
    let written = 0;
    while (write(ring, written, 24)) written++;
    expect(written).toBe(7);
    expect(ring.isEmpty()).toBe(false);
    expect(isRecord(read(ring), 0, 24)).toBe(true);
    expect(write(ring, 7, 24)).toBe(true);
    expect(write(ring, 8, 24)).toBe(false);
    for (let n = 1; n <= 7; n++) expect(isRecord(read(ring), n, 24)).toBe(true);
    expect(read(ring)).toBeUndefined();
  });

  it('takes a record of maxRecord bytes whenever it is empty, wherever it stands', () => {
    for (let position = 0; position < 256 / 8; position++) {
      const ring = Ring.allocate(256);
      for (let k = 0; k < position; k++) {
        write(ring, k, 0);
        read(ring);
      }
      expect(write(ring, position, ring.maxRecord), `empty at ${position * 8}`).toBe(true);
      expect(isRecord(read(ring), position, ring.maxRecord)).toBe(true);
    }
  });

  it('carries records of every size from 0 to maxRecord, alone and several at a time', () => {
    const ring = Ring.allocate(4096);
    for (let length = 0; length <= ring.maxRecord; length++) {
      expect(write(ring, length, length)).toBe(true);
      const at = ring.peek();
      expect(ring.lengthAt(at)).toBe(length);
      expect(isRecord(read(ring), length, length)).toBe(true);
    }
    // Three at a time, of random sizes: three of the largest fit with room to spare.
    const next = random(7);
    const lengths: number[] = [];
    for (let n = 0; n < 5000; n++) {
      lengths.push(Math.floor(next() * (ring.maxRecord + 1)));
      expect(write(ring, n, lengths[n]!)).toBe(true);
      if (n % 3 === 2) for (let k = n - 2; k <= n; k++) expect(isRecord(read(ring), k, lengths[k]!)).toBe(true);
    }
  });

  it('interleaves producer and consumer (two views of one buffer), with the doorbell protocol', () => {
    const producer = Ring.allocate(1024);
    const consumer = new Ring(producer.buffer);
    const next = random(42);
    const queue: Array<[number, number]> = [];
    let written = 0;
    let consumed = 0;
    let fulls = 0;
    // A new ring's consumer has read nothing yet: the first record rings.
    let asleep = true;
    let doorbells = 0;
    for (let step = 0; step < 200_000; step++) {
      // Phases where the producer runs ahead (the ring fills) and where the consumer does (it empties).
      if (next() < (Math.floor(step / 500) % 2 === 0 ? 0.7 : 0.35)) {
        const length = next() < 0.05 ? producer.maxRecord : Math.floor(next() * 120);
        if (!write(producer, written, length)) {
          fulls++;
          continue;
        }
        queue.push([written++, length]);
        // The producer rings exactly when the consumer said it would sleep, once.
        const ring = producer.wake();
        expect(ring).toBe(asleep);
        if (ring) doorbells++;
        asleep = false;
      } else if (!asleep) {
        const record = read(consumer);
        if (record) {
          const [n, length] = queue.shift()!;
          expect(isRecord(record, n, length), `record ${n}`).toBe(true);
          consumed++;
        } else {
          expect(queue).toEqual([]);
          // Empty: it may sleep, and says so; a record written meanwhile would keep it awake.
          asleep = consumer.sleep();
          expect(asleep).toBe(true);
        }
      }
    }
    expect(fulls).toBeGreaterThan(100);
    expect(doorbells).toBeGreaterThan(100);
    expect(consumed).toBeGreaterThan(50_000);
    for (let record = read(consumer); record; record = read(consumer)) consumed++;
    expect(consumed).toBe(written);
    // A record published between "asleep" and the check: the consumer stays awake to read it, and no doorbell is due.
    write(producer, written, 8);
    expect(consumer.sleep()).toBe(false);
    expect(producer.wake()).toBe(false);
  });
});

// Two threads, each side's loop driven only by its event loop and the
// doorbell, as in the daemon: every record must arrive once and in order, and
// by the time the producer's last message ("done", posted after its last
// record and doorbell) is handled, the consumer must have read them all: a
// lost wake-up would leave it asleep with records waiting.
const RECORDS = 100_000;
const CAPACITY = 8192;
/** Mostly small records, a few of the largest the ring takes. */
const LENGTH = `export const lengthOf = (n, max) => (n % 97 === 0 ? max : (n * 7919) % 300);`;
const lengthOf = (n: number, max: number) => (n % 97 === 0 ? max : (n * 7919) % 300);

// Producer in the worker: it may block (Atomics.wait) while the ring is full,
// and pauses now and then so that the main thread drains and falls asleep.
const WORKER_PRODUCER = `
import { parentPort, workerData } from 'node:worker_threads';
import { Ring } from './ring.mjs';
import { pattern } from './pattern.mjs';
import { lengthOf } from './length.mjs';
const ring = new Ring(workerData.buffer);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (let n = 0; n < workerData.records; n++) {
  const length = lengthOf(n, ring.maxRecord);
  let at;
  while ((at = ring.reserve(length)) < 0) Atomics.wait(pause, 0, 0, 0.05);
  for (let i = 0; i < length; i++) ring.bytes[at + i] = pattern(n, i);
  ring.commit(length);
  if (ring.wake()) parentPort.postMessage('doorbell');
  if (n % 251 === 0) Atomics.wait(pause, 0, 0, 0.2);
}
parentPort.postMessage('done');
`;

// Consumer in the worker: reads on the doorbell only, checks every record.
const WORKER_CONSUMER = `
import { parentPort, workerData } from 'node:worker_threads';
import { Ring } from './ring.mjs';
import { pattern } from './pattern.mjs';
import { lengthOf } from './length.mjs';
const ring = new Ring(workerData.buffer);
let received = 0;
let error;
parentPort.on('message', (message) => {
  if (message === 'done') return parentPort.postMessage({ received, error });
  for (;;) {
    for (let at = ring.peek(); at >= 0; at = ring.peek()) {
      const length = ring.lengthAt(at);
      if (!error && length !== lengthOf(received, ring.maxRecord)) error = 'record ' + received + ': length ' + length;
      for (let i = 0; i < length && !error; i++) if (ring.bytes[at + i] !== pattern(received, i)) error = 'record ' + received + ': byte ' + i;
      ring.release(at);
      received++;
    }
    if (ring.sleep()) return;
  }
});
`;

describe('Ring between two threads', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-ring-'));
    const source = readFileSync(join(import.meta.dirname, '..', '..', 'src', 'executor', 'ring.ts'), 'utf8');
    const compiled = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    writeFileSync(join(dir, 'ring.mjs'), compiled.outputText);
    writeFileSync(join(dir, 'pattern.mjs'), PATTERN);
    writeFileSync(join(dir, 'length.mjs'), LENGTH);
    writeFileSync(join(dir, 'producer.mjs'), WORKER_PRODUCER);
    writeFileSync(join(dir, 'consumer.mjs'), WORKER_CONSUMER);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const start = (script: string, ring: Ring) =>
    new Worker(pathToFileURL(join(dir, script)), { workerData: { buffer: ring.buffer, records: RECORDS } });

  /** Rejects if `progress` stops moving for a while: a lost wake-up stalls rather than fails. */
  function watchdog(progress: () => number, reject: (error: Error) => void): NodeJS.Timeout {
    let last = -1;
    return setInterval(() => {
      const now = progress();
      if (now === last) reject(new Error(`stalled after ${now} of ${RECORDS} records`));
      last = now;
    }, 5000);
  }

  it('worker to main thread: every record once, in order, none left unread', async () => {
    const ring = Ring.allocate(CAPACITY);
    const worker = start('producer.mjs', ring);
    let received = 0;
    let doorbells = 0;
    let timer: NodeJS.Timeout | undefined;
    try {
      const atDone = await new Promise<number>((resolve, reject) => {
        timer = watchdog(() => received, reject);
        worker.on('error', reject);
        worker.on('message', (message: string) => {
          if (message === 'done') return resolve(received);
          doorbells++;
          for (;;) {
            for (let record = read(ring); record; record = read(ring)) {
              if (!isRecord(record, received, lengthOf(received, ring.maxRecord))) reject(new Error(`record ${received} is not the one written`));
              received++;
            }
            if (ring.sleep()) return;
          }
        });
      });
      expect(atDone).toBe(RECORDS);
      expect(ring.isEmpty()).toBe(true);
      // Batched: far fewer doorbells than records, but the consumer did sleep.
      expect(doorbells).toBeGreaterThan(10);
      expect(doorbells).toBeLessThan(RECORDS);
    } finally {
      clearInterval(timer);
      await worker.terminate();
    }
  });

  it('main thread to worker: every record once, in order, none left unread; the main thread never blocks', async () => {
    const ring = Ring.allocate(CAPACITY);
    const worker = start('consumer.mjs', ring);
    let written = 0;
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await new Promise<{ received: number; error?: string }>((resolve, reject) => {
        timer = watchdog(() => written, reject);
        worker.on('error', reject);
        worker.on('message', resolve);
        // Bursts of records, one per loop turn; a full ring waits for the next turn.
        const burst = () => {
          const end = Math.min(RECORDS, written + 1 + (written % 173));
          while (written < end && write(ring, written, lengthOf(written, ring.maxRecord))) {
            written++;
            if (ring.wake()) worker.postMessage('doorbell');
          }
          if (written < RECORDS) setImmediate(burst);
          else worker.postMessage('done');
        };
        burst();
      });
      expect(result).toEqual({ received: RECORDS, error: undefined });
    } finally {
      clearInterval(timer);
      await worker.terminate();
    }
  });
});
