// JavaScript handlers: componentize-js (StarlingMonkey) builds the component
// directly. Without http and fetch-event the engine's main module imports
// only what Kiln hosts (docs/notes/componentize-js.md). One build takes
// ~5-20 s and ~800 MB of memory: callers must never run two at once.
import { ToolchainError } from './compilers.js';
import { HANDLER_WIT } from './paths.js';

export async function componentizeJs(source: string): Promise<Uint8Array> {
  let componentize: (options: object) => Promise<{ component: Uint8Array }>;
  try {
    ({ componentize } = (await import('@bytecodealliance/componentize-js')) as unknown as { componentize: typeof componentize });
  } catch {
    throw new ToolchainError('componentize-js is missing: run npm install in the Kiln checkout');
  }
  const { component } = await componentize({
    sourcePath: source,
    witPath: HANDLER_WIT,
    worldName: 'handler',
    disableFeatures: ['http', 'fetch-event'],
  });
  return component;
}
