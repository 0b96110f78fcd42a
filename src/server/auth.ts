// The admin token: created on first start, stored with mode 0600 in the data
// directory, and required (as a bearer token) on every WebSocket upgrade.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TOKEN_FILE = 'admin.token';

export interface AdminToken {
  token: string;
  /** True when this start created it (the only time it is printed). */
  created: boolean;
  path: string;
}

export function loadOrCreateAdminToken(dataDir: string): AdminToken {
  const path = join(dataDir, TOKEN_FILE);
  if (existsSync(path)) {
    chmodSync(path, 0o600);
    return { token: readFileSync(path, 'utf8').trim(), created: false, path };
  }
  const token = `kiln_${randomBytes(32).toString('base64url')}`;
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx', flush: true });
  return { token, created: true, path };
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Constant-time check of a presented credential. */
export function tokenMatches(expected: string, presented: string | undefined): boolean {
  if (!presented) return false;
  return timingSafeEqual(digest(expected), digest(presented));
}

/** The token from `Authorization: Bearer …`, else from the `token` query parameter (browsers cannot set headers). */
export function presentedToken(authorization: string, query: string): string | undefined {
  const bearer = /^Bearer\s+(\S+)$/i.exec(authorization);
  if (bearer) return bearer[1];
  return new URLSearchParams(query).get('token') ?? undefined;
}
