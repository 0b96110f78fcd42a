// Where the CLI finds the daemon and its token: flags, then KILN_* variables,
// then defaults (a dev daemon on the default port needs nothing).
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_HOST, DEFAULT_PORT } from '../limits.js';
import { TOKEN_FILE } from '../server/auth.js';

export const defaultDataDir = (): string => process.env.KILN_DATA_DIR ?? join(homedir(), '.kiln');

export const defaultUrl = (): string => process.env.KILN_URL ?? `ws://${DEFAULT_HOST}:${DEFAULT_PORT}`;

/**
 * --token, else KILN_TOKEN, else the local daemon's token file when this user
 * can read it — and only for a daemon on loopback: the local admin token is
 * never sent to another host unasked.
 */
export function resolveToken(flag: string | undefined, url: string): string | undefined {
  if (flag) return flag;
  if (process.env.KILN_TOKEN) return process.env.KILN_TOKEN;
  const host = new URL(url).hostname;
  if (!(host === 'localhost' || host === '[::1]' || host.startsWith('127.'))) return undefined;
  const file = join(defaultDataDir(), TOKEN_FILE);
  try {
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  } catch {
    return undefined;
  }
}

export function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, got "${raw}"`);
  return value;
}
