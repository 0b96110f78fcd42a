import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/registry/artifacts.js';
import { resolveConfig } from '../../src/registry/function-config.js';
import { SqliteStore } from '../../src/registry/sqlite-store.js';
import { tempDataDir } from '../helpers/daemon.js';

const config = resolveConfig({});
const artifactPath = (dir: string, digest: string) => join(dir, 'artifacts', 'sha256', digest.slice(0, 2), `${digest}.wasm`);

describe('SqliteStore', () => {
  it('publishes versions, content-addresses artifacts and survives reopening', () => {
    const dir = tempDataDir();
    const store = new SqliteStore(dir);
    const bytes = Buffer.from('\0asm-one');
    const v1 = store.publish({ name: 'f', kind: 'component', artifact: bytes, prepared: Buffer.from('prepared'), config });
    expect(v1).toMatchObject({ name: 'f', version: 1, digest: sha256Hex(bytes), size: bytes.length });
    expect(readFileSync(artifactPath(dir, v1.digest))).toEqual(bytes);

    const v2 = store.publish({ name: 'f', kind: 'command', artifact: Buffer.from('\0asm-two'), prepared: Buffer.from('prepared'), config: resolveConfig({ memoryMb: 8 }) });
    expect(v2).toMatchObject({ version: 2, kind: 'command', config: { memoryMb: 8 } });
    expect(store.get('f')).toEqual(v2);
    store.publish({ name: 'a', kind: 'component', artifact: bytes, prepared: Buffer.from('prepared'), config });
    expect(store.list().map((f) => `${f.name}@${f.version}`)).toEqual(['a@1', 'f@2']);
    store.close();

    const reopened = new SqliteStore(dir);
    expect(reopened.get('f')).toEqual(v2);
    expect(reopened.readArtifact(v1.digest)).toEqual(bytes);
    reopened.close();
  });

  it('deletes every version and only the artifacts no other function uses', () => {
    const dir = tempDataDir();
    const store = new SqliteStore(dir);
    const shared = Buffer.from('\0asm-shared');
    const own = Buffer.from('\0asm-own');
    store.publish({ name: 'x', kind: 'component', artifact: shared, prepared: Buffer.from('prepared'), config });
    store.publish({ name: 'x', kind: 'component', artifact: own, prepared: Buffer.from('prepared'), config });
    store.publish({ name: 'y', kind: 'component', artifact: shared, prepared: Buffer.from('prepared'), config });
    expect(store.delete('x')).toBe(true);
    expect(store.delete('x')).toBe(false);
    expect(store.get('x')).toBeUndefined();
    expect(existsSync(artifactPath(dir, sha256Hex(own)))).toBe(false);
    expect(existsSync(artifactPath(dir, sha256Hex(shared)))).toBe(true);
    expect(store.get('y')?.version).toBe(1);
    store.close();
    expect(store.isOpen()).toBe(false);
  });

  it('keeps the data directory to its owner (it holds every function\'s env)', () => {
    const dir = tempDataDir();
    new SqliteStore(dir).close();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('writes artifacts read-only to others and leaves no temporary files', () => {
    const dir = tempDataDir();
    const store = new SqliteStore(dir);
    const info = store.publish({ name: 'z', kind: 'component', artifact: Buffer.from('\0asm'), prepared: Buffer.from('prepared'), config });
    const file = artifactPath(dir, info.digest);
    expect(statSync(file).mode & 0o022).toBe(0);
    const siblings = readdirSync(join(dir, 'artifacts', 'sha256', info.digest.slice(0, 2)));
    expect(siblings).toEqual([`${info.digest}.wasm`]);
    store.close();
  });
});

describe('resolveConfig', () => {
  it('fills defaults and enforces bounds', () => {
    expect(resolveConfig({})).toEqual({ env: {}, memoryMb: 128, timeoutMs: 30000, fuel: 10_000_000_000, instanceMode: 'reuse', maxQueue: 100, provisioned: 0, idleTtlMs: 600_000 });
    expect(() => resolveConfig({ provisioned: 101 })).toThrow(/provisioned/);
    expect(() => resolveConfig({ idleTtlMs: 99 })).toThrow(/idleTtlMs/);
    expect(resolveConfig({ maxConcurrency: 4 }).maxConcurrency).toBe(4);
    expect(() => resolveConfig({ memoryMb: 0 })).toThrow(/memoryMb/);
    expect(() => resolveConfig({ timeoutMs: 900_001 })).toThrow(/timeoutMs/);
    expect(() => resolveConfig({ fuel: 1.5 })).toThrow(/fuel/);
    expect(() => resolveConfig({ env: { '1X': 'y' } })).toThrow(/env key/);
    expect(() => resolveConfig({ env: { BIG: 'x'.repeat(70_000) } })).toThrow(/bytes/);
  });
});
