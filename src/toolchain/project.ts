// `kiln new` and `kiln build`: a function project is a directory with a
// kiln.json ({name, lang, entry}) and one source file started from the SDK's
// example. The SDKs stay in Kiln's install and are referenced, not copied —
// except AssemblyScript's, which asc can only import by relative path.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { compileAssemblyScript, compileC, compileCpp, compileRust, ToolchainError } from './compilers.js';
import { wrapComponent } from './component.js';
import { componentizeJs } from './javascript.js';
import { HANDLER_WIT, KILN_ROOT, SDK } from './paths.js';

export const LANGUAGES = ['c', 'cpp', 'rust', 'as', 'js'] as const;
export type Language = (typeof LANGUAGES)[number];

export interface ProjectFile {
  name: string;
  lang: Language;
  /** The handler's source file, relative to the project. */
  entry: string;
}

interface LanguageSupport {
  entry: string;
  /** The SDK example a new project starts from, and how its SDK import changes in a project. */
  template: string;
  localize(source: string): string;
  /** Extra files a new project gets. */
  scaffold?(dir: string): void;
  /** Builds the component: a core module then wrapped, or (JS) the component directly. */
  build(dir: string, entry: string, output: string): Promise<void>;
}

/** A core module compiled by `compile`, wrapped into a handler component. */
const viaCore = (compile: (dir: string, entry: string, core: string) => void) => async (dir: string, entry: string, output: string) => {
  const core = output.replace(/\.wasm$/, '.core.wasm');
  compile(dir, entry, core);
  writeFileSync(output, await wrapComponent(readFileSync(core), readFileSync(HANDLER_WIT, 'utf8'), 'handler'));
};

const AS_SDK_FILE = join('assembly', 'kiln.ts');

const SUPPORT: Record<Language, LanguageSupport> = {
  c: {
    entry: 'handler.c',
    template: join(SDK.c, 'examples', 'hello.c'),
    localize: (s) => s.replace('#include "../kiln.h"', '#include "kiln.h"'),
    build: viaCore((dir, entry, core) => compileC(join(dir, entry), core, { include: [SDK.c] })),
  },
  cpp: {
    entry: 'handler.cpp',
    template: join(SDK.cpp, 'examples', 'hello.cpp'),
    localize: (s) => s.replace('#include "../kiln.hpp"', '#include "kiln.hpp"'),
    build: viaCore((dir, entry, core) => compileCpp(join(dir, entry), core, { include: [SDK.cpp] })),
  },
  rust: {
    entry: 'handler.rs',
    template: join(SDK.rust, 'examples', 'hello.rs'),
    localize: (s) => s,
    build: viaCore((dir, entry, core) => compileRust(join(dir, entry), core, dir)),
  },
  as: {
    entry: 'handler.ts',
    template: join(SDK.as, 'examples', 'hello.ts'),
    localize: (s) => s.replaceAll('"../assembly/kiln"', '"./assembly/kiln"'),
    scaffold: (dir) => {
      mkdirSync(join(dir, 'assembly'), { recursive: true });
      writeFileSync(join(dir, AS_SDK_FILE), readFileSync(join(SDK.as, AS_SDK_FILE)));
      // The SDK's asconfig.json, with the WASI shim's library path made relative to this project.
      const config = JSON.parse(readFileSync(join(SDK.as, 'asconfig.json'), 'utf8')) as { options: { lib: string[] } };
      config.options.lib = [relative(dir, join(KILN_ROOT, 'node_modules', '@assemblyscript', 'wasi-shim', 'assembly'))];
      writeFileSync(join(dir, 'asconfig.json'), `${JSON.stringify(config, null, 2)}\n`);
    },
    build: viaCore((dir, entry, core) => compileAssemblyScript(join(dir, entry), core, join(dir, 'asconfig.json'), dir)),
  },
  js: {
    entry: 'handler.js',
    template: join(SDK.js, 'examples', 'hello.js'),
    localize: (s) => s.replace("from '../kiln.js'", "from './kiln.js'"),
    scaffold: (dir) => writeFileSync(join(dir, 'kiln.js'), readFileSync(join(SDK.js, 'kiln.js'))),
    build: async (dir, entry, output) => {
      mkdirSync(dirname(output), { recursive: true });
      writeFileSync(output, await componentizeJs(join(dir, entry)));
    },
  },
};

export function isLanguage(value: string): value is Language {
  return (LANGUAGES as readonly string[]).includes(value);
}

/** Creates `dir` with a kiln.json and a handler started from the language's example. */
export function newProject(dir: string, name: string, lang: Language): ProjectFile {
  if (existsSync(dir)) throw new ToolchainError(`${dir} already exists`);
  const support = SUPPORT[lang];
  mkdirSync(dir, { recursive: true });
  const project: ProjectFile = { name, lang, entry: support.entry };
  writeFileSync(join(dir, 'kiln.json'), `${JSON.stringify(project, null, 2)}\n`);
  writeFileSync(join(dir, support.entry), support.localize(readFileSync(support.template, 'utf8')));
  support.scaffold?.(dir);
  return project;
}

export function readProject(dir: string): ProjectFile {
  const file = join(dir, 'kiln.json');
  if (!existsSync(file)) throw new ToolchainError(`${file} not found: run kiln build in a directory made by kiln new`);
  const project = JSON.parse(readFileSync(file, 'utf8')) as Partial<ProjectFile>;
  if (typeof project.name !== 'string' || typeof project.entry !== 'string' || !isLanguage(String(project.lang))) {
    throw new ToolchainError(`${file} must hold {"name", "lang": ${LANGUAGES.join('|')}, "entry"}`);
  }
  return project as ProjectFile;
}

/** Builds the project into build/NAME.wasm (a component of the handler world) and returns its path. */
export async function buildProject(dir: string): Promise<string> {
  const project = readProject(dir);
  const output = join(dir, 'build', `${project.name}.wasm`);
  await SUPPORT[project.lang].build(dir, project.entry, output);
  return output;
}
