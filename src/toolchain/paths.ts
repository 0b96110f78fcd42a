// Where Kiln's own guest-side files are: the WIT worlds and the SDKs, found
// relative to this module so they work from a checkout or an installed package.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: dist/toolchain/ → ../.. */
export const KILN_ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

export const HANDLER_WIT = join(KILN_ROOT, 'wit', 'handler.wit');

export const SDK = {
  c: join(KILN_ROOT, 'guest-sdk', 'c'),
  cpp: join(KILN_ROOT, 'guest-sdk', 'cpp'),
  rust: join(KILN_ROOT, 'guest-sdk', 'rust'),
  as: join(KILN_ROOT, 'guest-sdk', 'assemblyscript'),
  js: join(KILN_ROOT, 'guest-sdk', 'js'),
} as const;
