// The embedded default store: one SQLite database for metadata and
// content-addressed files for artifacts, in one data directory.
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FunctionConfig, FunctionInfo, GuestKind } from '../protocol/methods.js';
import { ArtifactStore } from './artifacts.js';
import { preparedShape, resolveConfig } from './function-config.js';
import type { NewVersion, Store } from './store.js';

// Versions are immutable; a function's current version is its newest row.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS versions (
  name       TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  kind       TEXT    NOT NULL,
  digest     TEXT    NOT NULL,
  prepared   TEXT    NOT NULL,
  size       INTEGER NOT NULL,
  config     TEXT    NOT NULL,
  created_at TEXT    NOT NULL,
  PRIMARY KEY (name, version)
) STRICT;
`;

interface VersionRow {
  name: string;
  version: number;
  kind: GuestKind;
  digest: string;
  prepared: string;
  size: number;
  config: string;
  created_at: string;
}

const toInfo = (row: VersionRow): FunctionInfo => ({
  name: row.name,
  version: row.version,
  kind: row.kind,
  digest: row.digest,
  preparedDigest: row.prepared,
  size: row.size,
  // Through resolveConfig so a row stored before a config field existed gets its default.
  config: resolveConfig(JSON.parse(row.config) as FunctionConfig),
  createdAt: row.created_at,
});

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly artifacts: ArtifactStore;
  private readonly statements;
  /** Latest version by name: every invoke resolves a name, so reads skip SQLite. */
  private readonly latest = new Map<string, FunctionInfo>();

  constructor(dataDir: string) {
    // The database holds every function's env (secrets, often): owner only.
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    chmodSync(dataDir, 0o700);
    this.artifacts = new ArtifactStore(join(dataDir, 'artifacts', 'sha256'));
    this.db = new Database(join(dataDir, 'kiln.db'));
    // WAL with synchronous=FULL: every commit is fsync'd before it returns.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    this.statements = {
      latest: this.db.prepare<[string], VersionRow>(
        'SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1',
      ),
      list: this.db.prepare<[], VersionRow>(
        'SELECT v.* FROM versions v JOIN (SELECT name, MAX(version) AS version FROM versions GROUP BY name) m USING (name, version) ORDER BY v.name',
      ),
      insert: this.db.prepare(
        `INSERT INTO versions (name, version, kind, digest, prepared, size, config, created_at)
         VALUES (@name, COALESCE((SELECT MAX(version) FROM versions WHERE name = @name), 0) + 1, @kind, @digest, @prepared, @size, @config, @createdAt)`,
      ),
      sameArtifact: this.db.prepare<[string, string], { kind: GuestKind; preparedDigest: string; config: string }>(
        'SELECT kind, prepared AS preparedDigest, config FROM versions WHERE name = ? AND digest = ? ORDER BY version DESC',
      ),
      digestsOf: this.db.prepare<[string, string], { digest: string }>(
        'SELECT digest FROM versions WHERE name = ? UNION SELECT prepared FROM versions WHERE name = ?',
      ),
      deleteAll: this.db.prepare<[string]>('DELETE FROM versions WHERE name = ?'),
      digestInUse: this.db.prepare<[string, string], { n: number }>(
        'SELECT COUNT(*) AS n FROM versions WHERE digest = ? OR prepared = ?',
      ),
    };
  }

  publish(version: NewVersion): FunctionInfo {
    // The files are durable before the row that points at them.
    const digest = this.artifacts.put(version.artifact);
    const prepared = this.artifacts.put(version.prepared);
    this.statements.insert.run({
      name: version.name,
      kind: version.kind,
      digest,
      prepared,
      size: version.artifact.length,
      config: JSON.stringify(version.config),
      createdAt: new Date().toISOString(),
    });
    this.latest.delete(version.name);
    return this.get(version.name)!;
  }

  get(name: string): FunctionInfo | undefined {
    const cached = this.latest.get(name);
    if (cached) return cached;
    const row = this.statements.latest.get(name);
    if (!row) return undefined;
    const info = toInfo(row);
    this.latest.set(name, info);
    return info;
  }

  findPrepared(name: string, artifactDigest: string, config: FunctionConfig): { kind: GuestKind; preparedDigest: string } | undefined {
    const shape = preparedShape(config);
    const match = this.statements.sameArtifact
      .all(name, artifactDigest)
      .find((row) => preparedShape(resolveConfig(JSON.parse(row.config) as FunctionConfig)) === shape);
    return match && { kind: match.kind, preparedDigest: match.preparedDigest };
  }

  list(): FunctionInfo[] {
    return this.statements.list.all().map(toInfo);
  }

  delete(name: string): boolean {
    const digests = this.statements.digestsOf.all(name, name).map((r) => r.digest);
    const removed = this.db.transaction(() => this.statements.deleteAll.run(name).changes)();
    this.latest.delete(name);
    for (const digest of digests) {
      if (this.statements.digestInUse.get(digest, digest)!.n === 0) this.artifacts.remove(digest);
    }
    return removed > 0;
  }

  readArtifact(digest: string): Uint8Array {
    return this.artifacts.read(digest);
  }

  isOpen(): boolean {
    return this.db.open;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
