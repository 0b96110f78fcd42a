// Wraps a WASI preview-1 reactor core module into a component of a WIT world,
// through the preview-1 reactor adapter that ships with jco. jco is loaded
// only here, and only when a build needs it (it takes 100-250 ms to load).
import { readFileSync } from 'node:fs';

export async function wrapComponent(core: Uint8Array, witSource: string, world: string): Promise<Uint8Array> {
  const { componentEmbed, componentNew, preview1AdapterReactorPath } = await import('@bytecodealliance/jco');
  // witSource, not witPath: jco's embedded wasm-tools has no preopened directories.
  const embedded = await componentEmbed({ binary: core, witSource, world });
  const adapter = readFileSync(preview1AdapterReactorPath());
  return componentNew(embedded, [['wasi_snapshot_preview1', adapter]]);
}
