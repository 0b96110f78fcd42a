// Invocations waiting for an executor: one FIFO per function, served round
// robin, so a function with a thousand queued invocations delays another
// function's next one by at most one turn, not by a thousand.

export class RunQueue<T> {
  /** Map order is the round-robin order: a function that was served moves to the end. */
  private readonly queues = new Map<string, T[]>();
  private count = 0;

  constructor(private readonly keyOf: (item: T) => string) {}

  get size(): number {
    return this.count;
  }

  push(item: T): void {
    this.queueFor(this.keyOf(item)).push(item);
    this.count++;
  }

  /** Puts items back at the front of their functions' queues, in their order (work that was already taken once). */
  requeue(items: T[]): void {
    for (let i = items.length - 1; i >= 0; i--) {
      this.queueFor(this.keyOf(items[i]!)).unshift(items[i]!);
      this.count++;
    }
  }

  /**
   * The first function's head, in round-robin order, for which `choose`
   * returns something, removed, with what `choose` returned; undefined when
   * no function's head can go anywhere now.
   */
  next<S>(choose: (head: T) => S | undefined): [T, S] | undefined {
    for (const [key, queue] of this.queues) {
      const choice = choose(queue[0]!);
      if (choice === undefined) continue;
      const head = queue.shift()!;
      this.count--;
      this.queues.delete(key);
      if (queue.length > 0) this.queues.set(key, queue);
      return [head, choice];
    }
    return undefined;
  }

  /** Removes and returns everything. */
  drain(): T[] {
    const all = [...this.queues.values()].flat();
    this.queues.clear();
    this.count = 0;
    return all;
  }

  private queueFor(key: string): T[] {
    let queue = this.queues.get(key);
    if (!queue) {
      queue = [];
      this.queues.set(key, queue);
    }
    return queue;
  }
}
