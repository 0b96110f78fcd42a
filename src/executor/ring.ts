// A single-producer single-consumer byte ring in a SharedArrayBuffer: the
// hand-off of invocations between the network thread and one executor, one
// ring per direction.
//
// Why: with a postMessage per task and per reply, the network thread spent
// about half of its time per request on the hand-off itself (structured
// cloning, one message event each), and it is the daemon's bottleneck under
// load. Records written into shared memory cost a copy; a message is needed
// only to wake a consumer that may be asleep.
//
// The doorbell. Neither side may block waiting for the other (the network
// thread never blocks; an executor must keep its event loop running for its
// timers), so a consumer that finds the ring empty says so in the shared
// state word before it returns to its event loop, and a producer that
// publishes a record after that rings the doorbell: it posts a message, whose
// arrival makes the consumer read again. Both steps are sequentially
// consistent atomics, and each side checks the other's word after writing its
// own (the consumer: "asleep", then "still empty?"; the producer: the record,
// then "asleep?"), so a record published while the consumer falls asleep is
// always seen by one of them: no lost wake-up. A consumer that is awake (it
// is reading, or has a read scheduled) costs the producer no message at all,
// which is what batches a busy hand-off.
//
// Records stay readable after their producer stops: the memory outlives the
// thread, so a reply published just before an executor is terminated is
// still there to read.
//
// Layout: a header of three 32-bit words, each on its own cache line (head:
// where the producer writes next; tail: where the consumer reads next; the
// consumer's awake/asleep state), then the data area. A record is a 32-bit
// length and its bytes, padded to 8 bytes; a length of -1 means "continued at
// offset 0" (a record never wraps around the end). head === tail means empty,
// so the producer never fills the last gap.

const HEAD = 0;
const TAIL = 16;
const STATE = 32;
const HEADER_BYTES = 192;

const ASLEEP = 0;
const AWAKE = 1;

const WRAP = -1;
const LENGTH_BYTES = 4;
const ALIGN = 8;

const align = (bytes: number): number => (bytes + ALIGN - 1) & ~(ALIGN - 1);
/** The room a record of `length` bytes takes. */
const padded = (length: number): number => align(LENGTH_BYTES + length);

export class Ring {
  /** Shared with the other thread, which wraps it in its own Ring. */
  readonly buffer: SharedArrayBuffer;
  /** The data area: records are read and written here at the offsets the methods return. */
  readonly bytes: Buffer;
  readonly view: DataView;
  readonly capacity: number;
  /** The largest record the ring takes; one this size always fits once the ring is empty. */
  readonly maxRecord: number;
  private readonly header: Int32Array;
  /** Producer: where the reserved record starts. */
  private reserved = -1;

  /** A new, empty ring with `capacity` data bytes (rounded up to 8). */
  static allocate(capacity: number): Ring {
    return new Ring(new SharedArrayBuffer(HEADER_BYTES + align(capacity)));
  }

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.capacity = buffer.byteLength - HEADER_BYTES;
    this.bytes = Buffer.from(buffer, HEADER_BYTES, this.capacity);
    this.view = new DataView(buffer, HEADER_BYTES, this.capacity);
    this.maxRecord = (this.capacity >>> 2) - LENGTH_BYTES;
  }

  /**
   * Producer: room for a record of up to `length` bytes; returns the offset
   * to write it at, or -1 if it does not fit now (or ever: past maxRecord).
   * commit() publishes it.
   */
  reserve(length: number): number {
    if (length > this.maxRecord) return -1;
    const size = padded(length);
    const head = this.header[HEAD]!;
    const tail = Atomics.load(this.header, TAIL);
    let at = head;
    if (head < tail) {
      if (head + size >= tail) return -1;
    } else if (head + size > this.capacity || (head + size === this.capacity && tail === 0)) {
      if (size >= tail) return -1;
      this.view.setInt32(head, WRAP, true);
      at = 0;
    }
    this.reserved = at;
    return at + LENGTH_BYTES;
  }

  /** Producer: publishes the reserved record, `length` bytes long (at most what was reserved). */
  commit(length: number): void {
    const at = this.reserved;
    this.reserved = -1;
    this.view.setInt32(at, length, true);
    const head = at + padded(length);
    Atomics.store(this.header, HEAD, head === this.capacity ? 0 : head);
  }

  /**
   * Producer, after committing: whether the consumer may be asleep, in which
   * case the caller rings the doorbell. Marks it awake, so the records that
   * follow before it reads ring no more.
   */
  wake(): boolean {
    return Atomics.exchange(this.header, STATE, AWAKE) === ASLEEP;
  }

  /** Consumer: the offset of the oldest unread record, or -1 if there is none. */
  peek(): number {
    const tail = this.header[TAIL]!;
    if (tail === Atomics.load(this.header, HEAD)) return -1;
    return this.view.getInt32(tail, true) === WRAP ? LENGTH_BYTES : tail + LENGTH_BYTES;
  }

  /** Consumer: the length of the record at `offset` (from peek()). */
  lengthAt(offset: number): number {
    return this.view.getInt32(offset - LENGTH_BYTES, true);
  }

  /** Consumer: frees the record at `offset` (from peek()) for the producer. */
  release(offset: number): void {
    const tail = offset - LENGTH_BYTES + padded(this.lengthAt(offset));
    Atomics.store(this.header, TAIL, tail === this.capacity ? 0 : tail);
  }

  isEmpty(): boolean {
    return Atomics.load(this.header, HEAD) === Atomics.load(this.header, TAIL);
  }

  /**
   * Consumer, having read everything: goes to sleep until the doorbell and
   * returns true; or, if a record came in meanwhile, stays awake and returns
   * false (read on).
   */
  sleep(): boolean {
    Atomics.store(this.header, STATE, ASLEEP);
    if (this.isEmpty()) return true;
    Atomics.store(this.header, STATE, AWAKE);
    return false;
  }
}
