// Bounded capture of a guest's stdout/stderr for one invocation.

/** Thrown from inside a host call to stop a guest whose output must not be cut (a command's response). */
export class OutputLimitExceeded extends Error {
  constructor(readonly limit: number) {
    super(`guest output exceeded ${limit} bytes`);
  }
}

export class OutputCapture {
  private chunks: Uint8Array[] = [];
  private size = 0;
  truncated = false;

  /**
   * @param limit bytes kept
   * @param strict throw OutputLimitExceeded past the limit instead of dropping the excess
   */
  constructor(
    private readonly limit: number,
    private readonly strict: boolean,
  ) {}

  write(data: Uint8Array): void {
    const room = this.limit - this.size;
    if (data.length > room) {
      if (this.strict) throw new OutputLimitExceeded(this.limit);
      this.truncated = true;
      if (room <= 0) return;
      data = data.subarray(0, room);
    }
    // The guest's memory is reused after the call returns: keep a copy.
    this.chunks.push(data.slice());
    this.size += data.length;
  }

  get length(): number {
    return this.size;
  }

  bytes(): Uint8Array {
    if (this.chunks.length === 1) return this.chunks[0]!;
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  text(): string {
    return this.size === 0 ? '' : Buffer.from(this.bytes()).toString('utf8');
  }

  reset(): void {
    this.chunks = [];
    this.size = 0;
    this.truncated = false;
  }
}
