// Content-addressed artifact files: sha256/<2 hex>/<64 hex>.wasm under the
// data directory. Written to a temporary file, fsync'd, renamed into place and
// the directory fsync'd, so an acknowledged artifact survives a crash.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const sha256Hex = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class ArtifactStore {
  constructor(private readonly root: string) {
    mkdirSync(root, { recursive: true });
  }

  path(digest: string): string {
    return join(this.root, digest.slice(0, 2), `${digest}.wasm`);
  }

  put(data: Uint8Array): string {
    const digest = sha256Hex(data);
    const target = this.path(digest);
    if (existsSync(target)) return digest;
    const dir = join(this.root, digest.slice(0, 2));
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true });
      fsyncDirectory(this.root);
    }
    const temporary = join(dir, `.${digest}.${randomBytes(4).toString('hex')}.tmp`);
    const fd = openSync(temporary, 'w', 0o644);
    try {
      let written = 0;
      while (written < data.length) written += writeSync(fd, data, written, data.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, target);
    fsyncDirectory(dir);
    return digest;
  }

  read(digest: string): Uint8Array {
    return readFileSync(this.path(digest));
  }

  remove(digest: string): void {
    try {
      unlinkSync(this.path(digest));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}
