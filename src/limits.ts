// Every limit Kiln enforces, in one place; docs/limits.md documents them.
// Per-function limits (memory, timeout, fuel) are set at deploy within the
// MAX_* bounds here; the rest are fixed.

const KiB = 1024;
const MiB = 1024 * KiB;

/** Largest invoke payload and response body (Lambda's synchronous limit). */
export const MAX_PAYLOAD_BYTES = 6 * MiB;
/** Largest artifact a deploy accepts (componentize-js output is ~12 MB). */
export const MAX_ARTIFACT_BYTES = 64 * MiB;
/**
 * Largest WebSocket frame: an artifact plus room for the envelope. A frame over
 * it is refused by the transport itself, which drops the connection.
 */
export const MAX_FRAME_BYTES = MAX_ARTIFACT_BYTES + 1 * MiB;
/** Per-invocation cap on captured guest stdout/stderr (each). */
export const MAX_LOG_BYTES = 64 * KiB;

export const DEFAULT_TIMEOUT_MS = 30_000;
/** Lambda's ceiling. */
export const MAX_TIMEOUT_MS = 15 * 60_000;
export const DEFAULT_MEMORY_MB = 128;
/** Guest pointers reach the host as signed i32: memories stay below 2 GiB so none is negative. */
export const MAX_MEMORY_MB = 2047;
/** Enough for ~10 s of typical guest code; a runaway guard by default. */
export const DEFAULT_FUEL = 10_000_000_000;
export const MAX_FUEL = Number.MAX_SAFE_INTEGER;
/**
 * Lambda's model: a warm instance serves the next invocation (≈2.5 µs of
 * engine time for the demo vs ≈25-45 µs to restore a fresh one, bench/).
 */
export const DEFAULT_INSTANCE_MODE = 'reuse';
/** Highest reserved concurrency a function may ask for (Lambda's default account limit). */
export const MAX_CONCURRENCY = 1000;
/** Invocations waiting for a slot of a function at its concurrency limit, by default and at most. */
export const DEFAULT_MAX_QUEUE = 100;
export const MAX_QUEUE = 10_000;

/** Instances kept restored ahead of demand (provisioned concurrency), by default and at most. */
export const DEFAULT_PROVISIONED = 0;
export const MAX_PROVISIONED = 100;
/**
 * How long an instance beyond the provisioned ones may sit idle before it is
 * dropped (scale to zero): Lambda keeps idle environments for minutes.
 */
export const DEFAULT_IDLE_TTL_MS = 10 * 60_000;
export const MIN_IDLE_TTL_MS = 100;
export const MAX_IDLE_TTL_MS = 24 * 60 * 60_000;
/**
 * The share of the machine's memory that idle instances and pooled memories
 * may hold, daemon-wide, by default; past it the least recently used go.
 */
export const DEFAULT_MEMORY_BUDGET_FRACTION = 0.5;
/** Idle pre-touched memories one executor keeps for cold starts (within the budget). */
export const MAX_POOLED_MEMORY_BYTES = 512 * MiB;

export const MAX_CONTENT_TYPE_LENGTH = 256;
export const MAX_ENV_ENTRIES = 256;
export const MAX_ENV_BYTES = 64 * KiB;

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 7070;
/** How long a graceful shutdown waits for in-flight invocations. */
export const SHUTDOWN_GRACE_MS = 10_000;
/** Compiling a large artifact is slow but finite; past this its executor is presumed stuck. */
export const PREPARE_TIMEOUT_MS = 120_000;
/**
 * Tasks handed to one executor before earlier ones finish, so it never idles
 * waiting for the network thread to wake (a cross-thread wake-up costs tens
 * of µs here). EXECUTOR_STALL_MS keeps new work away from a slow guest.
 */
export const EXECUTOR_PIPELINE_DEPTH = 32;
/** Invocations waiting for any executor, daemon-wide; past it, THROTTLED (functions without a concurrency limit included). */
export const MAX_QUEUED_TASKS = 10_000;
/** An executor whose current task has run this long takes no more queued work. */
export const EXECUTOR_STALL_MS = 2;
/** Prepared functions an executor keeps; the least recently used beyond it are dropped. */
export const MAX_CACHED_FUNCTIONS_PER_EXECUTOR = 256;
/** A WebSocket connection silent this long (pings included) is closed. */
export const IDLE_CONNECTION_SECONDS = 120;
/** Client-side default wait for an answer: past the longest timeout and prepare a daemon allows. */
export const CLIENT_REQUEST_TIMEOUT_MS = MAX_TIMEOUT_MS + 60_000;
