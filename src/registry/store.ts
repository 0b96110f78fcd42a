// The registry's storage contract. The embedded SQLite store implements it;
// a cluster store (NATS JetStream) will too, so nothing above this line knows
// which one runs.
import type { FunctionConfig, FunctionInfo, GuestKind } from '../protocol/methods.js';

export interface NewVersion {
  name: string;
  kind: GuestKind;
  artifact: Uint8Array;
  /** What prepare made of the artifact under this config (src/engine/prepared-form.ts). */
  prepared: Uint8Array;
  config: FunctionConfig;
}

export interface Store {
  /** Stores the artifact and records a new version of the function, durably, before returning. */
  publish(version: NewVersion): FunctionInfo;
  /** The latest version of a function. */
  get(name: string): FunctionInfo | undefined;
  list(): FunctionInfo[];
  /**
   * The prepared form of an earlier version of this function with the same
   * artifact and the same config where it shapes the prepared form (see
   * preparedShape): a redeploy reuses it instead of preparing again.
   */
  findPrepared(name: string, artifactDigest: string, config: FunctionConfig): { kind: GuestKind; preparedDigest: string } | undefined;
  /** Removes the function and all its versions; false if there was none. */
  delete(name: string): boolean;
  /** Reads an artifact or a prepared form by its digest. */
  readArtifact(digest: string): Uint8Array;
  /** True while the store can serve reads and writes. */
  isOpen(): boolean;
  close(): void;
}
