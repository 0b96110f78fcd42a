// The composition root: builds the store, the executors and the server, and
// owns their lifecycle (start in order, stop in reverse, nothing lost).
import { isIP } from 'node:net';
import { totalmem } from 'node:os';
import { DEFAULT_HOST, DEFAULT_MEMORY_BUDGET_FRACTION, DEFAULT_PORT, SHUTDOWN_GRACE_MS } from './limits.js';
import { ExecutorPool } from './executor/pool.js';
import { createLogger, type Logger } from './observability/logger.js';
import { SqliteStore } from './registry/sqlite-store.js';
import { loadOrCreateAdminToken } from './server/auth.js';
import { KilnServer } from './server/app.js';
import { Methods } from './server/methods.js';

export interface DaemonOptions {
  host?: string;
  port?: number;
  dataDir: string;
  /** No authentication; loopback addresses only. */
  dev?: boolean;
  workers?: number;
  /** MiB that idle instances and pooled memories may hold; default half the machine's memory. */
  memoryBudgetMb?: number;
  log?: Logger;
}

export interface Daemon {
  port: number;
  host: string;
  /** The admin token, or undefined in dev mode. */
  token: string | undefined;
  tokenCreated: boolean;
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const host = options.host ?? DEFAULT_HOST;
  const port = options.port ?? DEFAULT_PORT;
  const logger = options.log ? { log: options.log, flush: () => {} } : createLogger();
  const { log } = logger;
  if (options.dev && !isLoopback(host)) {
    throw new Error(`--dev turns authentication off, so it only binds loopback addresses; ${host} is not one`);
  }
  const store = new SqliteStore(options.dataDir);
  const admin = options.dev ? undefined : loadOrCreateAdminToken(options.dataDir);
  const memoryBudgetBytes =
    options.memoryBudgetMb === undefined ? Math.floor(totalmem() * DEFAULT_MEMORY_BUDGET_FRACTION) : options.memoryBudgetMb * 2 ** 20;
  const pool = new ExecutorPool({ size: options.workers, memoryBudgetBytes });
  const methods = new Methods(store, pool, log);
  const server = new KilnServer({
    host,
    port,
    token: admin?.token,
    methods,
    log,
    isReady: () => store.isOpen(),
  });
  try {
    await server.listen();
    methods.provisionAll();
  } catch (error) {
    await pool.close();
    store.close();
    throw error;
  }
  log.info({ host, port: server.port, dataDir: options.dataDir, dev: Boolean(options.dev), executors: pool.size, memoryBudgetMb: Math.round(memoryBudgetBytes / 2 ** 20) }, 'listening');

  let closing: Promise<void> | undefined;
  return {
    port: server.port,
    host,
    token: admin?.token,
    tokenCreated: admin?.created ?? false,
    close: () =>
      (closing ??= (async () => {
        log.info('shutting down');
        await server.close(SHUTDOWN_GRACE_MS);
        await pool.close();
        // Let the failures of anything still in flight reach their clients first.
        await new Promise((resolve) => setImmediate(resolve));
        server.disconnectAll();
        store.close();
        log.info('stopped');
        logger.flush();
      })()),
  };
}
