// The guest toolchains Kiln drives: each turns one source file into a core
// Wasm module for the handler world (a WASI reactor). They run Debian's
// compilers (or the assemblyscript package) and say which package to install
// when one is missing.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { KILN_ROOT, SDK } from './paths.js';

export class ToolchainError extends Error {}

const C_FLAGS = ['--target=wasm32-wasi', '-O2', '-Wall', '-Wl,--strip-debug'];
const C_PACKAGES = 'clang lld wasi-libc libclang-rt-dev-wasm32';
const CPP_PACKAGES = `${C_PACKAGES} libc++-dev-wasm32 libc++abi-14-dev-wasm32`;
const RUST_PACKAGES = 'rustc libstd-rust-dev-wasm32';

function run(command: string, args: string[], cwd: string | undefined, packages: string, quiet = false): void {
  try {
    execFileSync(command, args, { cwd, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ToolchainError(`${command} not found: install the Debian packages ${packages}`);
    }
    throw new ToolchainError(`${command} failed (exit status ${(error as { status?: number }).status ?? '?'})`);
  }
}

export interface CompileOptions {
  /** Extra include directories (C/C++). */
  include?: string[];
  /** A reactor (exports _initialize, no main) rather than a command. */
  reactor?: boolean;
}

export function compileC(source: string, output: string, options: CompileOptions = {}): void {
  mkdirSync(dirname(output), { recursive: true });
  const args = [...C_FLAGS, ...(options.reactor === false ? [] : ['-mexec-model=reactor'])];
  for (const dir of options.include ?? []) args.push('-I', dir);
  run('clang', [...args, '-o', output, source], undefined, C_PACKAGES);
}

let libcxxChecked = false;

// No exceptions: clang 14 cannot unwind on wasm32-wasi.
export function compileCpp(source: string, output: string, options: CompileOptions = {}): void {
  if (!libcxxChecked) {
    let libcxx = '';
    try {
      libcxx = execFileSync('clang++', ['--target=wasm32-wasi', '-print-file-name=libc++.a'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch {
      throw new ToolchainError(`clang++ not found: install the Debian packages ${CPP_PACKAGES}`);
    }
    if (!isAbsolute(libcxx) || !existsSync(libcxx)) {
      throw new ToolchainError('clang++ has no wasm32-wasi libc++: install the Debian packages libc++-dev-wasm32 libc++abi-14-dev-wasm32');
    }
    libcxxChecked = true;
  }
  mkdirSync(dirname(output), { recursive: true });
  const args = ['--target=wasm32-wasi', '-mexec-model=reactor', '-std=c++17', '-O2', '-Wall', '-fno-exceptions', '-Wl,--strip-debug'];
  for (const dir of options.include ?? []) args.push('-I', dir);
  run('clang++', [...args, '-o', output, source], undefined, CPP_PACKAGES);
}

interface RustToolchain {
  rustc: string;
  flags: string[];
}
let rustToolchain: RustToolchain | undefined;

// Debian's rustc 1.63 (with libstd-rust-dev-wasm32) is /usr/bin/rustc; a
// rustup toolchain on PATH usually has no wasm target, so it is only the
// fallback. KILN_RUSTC overrides both.
function findRust(): RustToolchain {
  if (rustToolchain) return rustToolchain;
  const rustc = process.env.KILN_RUSTC ?? (existsSync('/usr/bin/rustc') ? '/usr/bin/rustc' : 'rustc');
  run(rustc, ['--version'], undefined, RUST_PACKAGES, true);
  // wasm32-wasi before Rust 1.78, wasm32-wasip1 since (wasm32-wasi is gone from 1.84).
  for (const target of ['wasm32-wasi', 'wasm32-wasip1']) {
    let libdir: string;
    try {
      libdir = execFileSync(rustc, ['--print', 'target-libdir', '--target', target], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      continue;
    }
    if (existsSync(libdir) && readdirSync(libdir).some((f) => f.startsWith('libstd-'))) {
      rustToolchain = { rustc, flags: ['--edition', '2021', '--target', target, '-O', '-C', 'panic=abort'] };
      return rustToolchain;
    }
  }
  throw new ToolchainError(
    `${rustc} has no wasm32-wasi standard library: install the Debian packages ${RUST_PACKAGES} (their /usr/bin/rustc is used first; KILN_RUSTC picks another rustc)`,
  );
}

/**
 * The SDK crate as an rlib, then the handler as a cdylib linking it: LTO, one
 * codegen unit, symbols stripped. `cwd` is where panic messages' paths start.
 */
export function compileRust(source: string, output: string, cwd: string): void {
  const { rustc, flags } = findRust();
  mkdirSync(dirname(output), { recursive: true });
  const rlib = join(dirname(output), 'libkiln.rlib');
  run(rustc, [...flags, '--crate-type', 'rlib', '--crate-name', 'kiln', '-o', rlib, join(SDK.rust, 'src', 'lib.rs')], cwd, RUST_PACKAGES);
  const crate = source.replace(/^.*\//, '').replace(/\.rs$/, '').replace(/-/g, '_');
  run(
    rustc,
    [...flags, '-C', 'lto', '-C', 'codegen-units=1', '-C', 'strip=symbols', '--crate-type', 'cdylib', '--crate-name', crate,
      '--extern', `kiln=${rlib}`, '-o', output, relative(cwd, source)],
    cwd,
    RUST_PACKAGES,
  );
}

/**
 * AssemblyScript with an asconfig.json (the SDK's: WASI shim, minimal runtime,
 * the SDK's abort, `_initialize` as the exported start). asc resolves the
 * config's relative `lib` path, and names files in abort messages, relative
 * to `cwd`.
 */
export function compileAssemblyScript(source: string, output: string, config: string, cwd: string): void {
  mkdirSync(dirname(output), { recursive: true });
  const asc = join(KILN_ROOT, 'node_modules', 'assemblyscript', 'bin', 'asc.js');
  if (!existsSync(asc)) throw new ToolchainError('the assemblyscript compiler is missing: run npm install in the Kiln checkout');
  const rel = (path: string) => relative(cwd, path);
  run(process.execPath, [asc, rel(source), '--config', rel(config), '-o', rel(output)], cwd, 'none (npm install)');
}
