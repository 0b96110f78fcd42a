// Starts a real daemon process (the built CLI) on a free port with its own
// data directory, the way a user would, and stops it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type KilnClient } from '../../src/client/index.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const KILN_BIN = join(ROOT, 'bin', 'kiln.js');
export const guest = (path: string): Buffer => readFileSync(join(ROOT, 'build', 'guests', path));

export interface RunningDaemon {
  url: string;
  port: number;
  dataDir: string;
  token: string | undefined;
  process: ChildProcess;
  output: () => string;
  client(): Promise<KilnClient>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export const tempDataDir = (): string => mkdtempSync(join(tmpdir(), 'kiln-test-'));

export async function startDaemon(options: { dev?: boolean; dataDir?: string; args?: string[]; logLevel?: string } = {}): Promise<RunningDaemon> {
  const dataDir = options.dataDir ?? tempDataDir();
  const args = [KILN_BIN, 'serve', '--port', '0', '--data-dir', dataDir, ...(options.dev ? ['--dev'] : []), ...(options.args ?? [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KILN_LOG_LEVEL: options.logLevel ?? 'warn' } });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start:\n${output}`)), 20_000);
    const check = () => {
      const match = /Kiln listening on ws:\/\/[^:]+:(\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => reject(new Error(`daemon exited with ${code}:\n${output}`)));
  });
  const token = options.dev ? undefined : readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const url = `ws://127.0.0.1:${port}`;
  return {
    url,
    port,
    dataDir,
    token,
    process: child,
    output: () => output,
    client: () => connect(url, { token }),
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      }),
  };
}
