// The `kiln` command: the daemon (`serve`) and a client for everything else.
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { connect, KilnError, type FunctionInfo, type FunctionLive, type InvocationReport, type KilnClient } from '../client/index.js';
import { startDaemon } from '../daemon.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../limits.js';
import { INSTANCE_MODES, type InstanceMode } from '../protocol/methods.js';
import { buildProject, LANGUAGES, newProject, type Language } from '../toolchain/project.js';
import { defaultDataDir, defaultUrl, envNumber, resolveToken } from './settings.js';

interface GlobalOptions {
  url: string;
  token?: string;
  json?: boolean;
}

const program = new Command('kiln')
  .description('Kiln: a WebAssembly serverless runtime')
  .addOption(new Option('--url <url>', 'daemon URL (env KILN_URL)').default(defaultUrl(), 'ws://127.0.0.1:7070'))
  .option('--token <token>', 'admin token (env KILN_TOKEN; default: the local daemon’s token file)')
  .option('--json', 'machine-readable output')
  .showHelpAfterError();

interface DeployOptions {
  env?: Record<string, string>;
  memory?: number;
  timeout?: number;
  fuel?: number;
  instanceMode?: InstanceMode;
  maxConcurrency?: number;
  maxQueue?: number;
  provisioned?: number;
  idleTtl?: number;
}

const integer = (value: string): number => {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new InvalidArgumentError('expected a whole number');
  return parsed;
};

const keyValue = (value: string, previous: Record<string, string> = {}): Record<string, string> => {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('expected KEY=VALUE');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
};

async function withClient<T>(run: (client: KilnClient, options: GlobalOptions) => Promise<T>): Promise<T> {
  const options = program.opts<GlobalOptions>();
  const client = await connect(options.url, { token: resolveToken(options.token, options.url) });
  try {
    return await run(client, options);
  } finally {
    await client.close();
  }
}

function printFunction(info: FunctionInfo & { live?: FunctionLive }, json: boolean | undefined): void {
  if (json) return console.log(JSON.stringify(info));
  const { env, memoryMb, timeoutMs, fuel, instanceMode, maxConcurrency, maxQueue, provisioned, idleTtlMs } = info.config;
  console.log(`${info.name}  version ${info.version}  ${info.kind}  ${info.size} bytes  sha256:${info.digest.slice(0, 12)}`);
  console.log(`  memory ${memoryMb} MiB  timeout ${timeoutMs} ms  fuel ${fuel}  instances ${instanceMode}  env ${Object.keys(env).join(',') || '-'}`);
  console.log(
    `  concurrency ${maxConcurrency ?? 'unlimited'}${maxConcurrency === undefined ? '' : `  queue ${maxQueue}`}` +
      `  provisioned ${provisioned}  idle ttl ${idleTtlMs} ms`,
  );
  console.log(`  deployed ${info.createdAt}`);
  const live = info.live;
  if (!live) return;
  console.log(
    `  now: ${live.instances} ready instances (${(live.instanceBytes / 2 ** 20).toFixed(2)} MiB) on ${live.executors} executors, ` +
      `${live.inflight} in flight, ${live.queued} queued`,
  );
  console.log(
    `  since start: ${live.invocations} invocations, ${live.coldStarts} cold starts, ${live.errors} errors ` +
      `(${live.timeouts} timeouts), ${live.throttled} throttled, ${live.reaped} reaped idle, ${live.evicted} evicted`,
  );
}

function reportLine(report: InvocationReport): string {
  return (
    `REPORT ${report.requestId} duration ${report.durationMs.toFixed(3)} ms  billed ${report.billedMs} ms  ` +
    `fuel ${report.fuelUsed}  memory ${(report.memoryBytes / 2 ** 20).toFixed(2)} MiB  ${report.cold ? `cold (init ${report.initUs} µs)` : 'warm'}`
  );
}

function printLogs(report: InvocationReport | undefined): void {
  if (!report) return;
  if (report.stdout) process.stderr.write(`--- guest stdout ---\n${report.stdout}${report.stdout.endsWith('\n') ? '' : '\n'}`);
  if (report.stderr) process.stderr.write(`--- guest stderr ---\n${report.stderr}${report.stderr.endsWith('\n') ? '' : '\n'}`);
  if (report.logsTruncated) process.stderr.write('(guest output truncated)\n');
}

program
  .command('serve')
  .description('run the daemon')
  .option('--host <host>', 'address to listen on (env KILN_HOST)', process.env.KILN_HOST ?? DEFAULT_HOST)
  .option('--port <port>', 'port to listen on, 0 for any (env KILN_PORT)', integer)
  .option('--data-dir <dir>', 'where functions and artifacts are stored (env KILN_DATA_DIR)', defaultDataDir())
  .option('--workers <n>', 'executor threads (env KILN_WORKERS; default: one per core, plus one)', integer)
  .option('--memory-budget <mb>', 'MiB that idle instances and pooled memories may hold (env KILN_MEMORY_BUDGET_MB; default: half the RAM)', integer)
  .option('--dev', 'development mode: no authentication, loopback only (env KILN_DEV=1)', process.env.KILN_DEV === '1')
  .action(async (flags: { host: string; port?: number; dataDir: string; workers?: number; memoryBudget?: number; dev: boolean }) => {
    const options = {
      ...flags,
      port: flags.port ?? envNumber('KILN_PORT') ?? DEFAULT_PORT,
      workers: flags.workers ?? envNumber('KILN_WORKERS'),
      memoryBudgetMb: flags.memoryBudget ?? envNumber('KILN_MEMORY_BUDGET_MB'),
    };
    const daemon = await startDaemon(options);
    if (daemon.tokenCreated) {
      process.stderr.write(`\nAdmin token (shown once; stored in ${options.dataDir}/admin.token):\n  ${daemon.token}\n\n`);
    }
    if (options.dev) process.stderr.write('Development mode: authentication is OFF.\n');
    process.stderr.write(`Kiln listening on ws://${daemon.host}:${daemon.port}\n`);
    const stop = () => {
      daemon.close().then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(error);
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });

program
  .command('deploy')
  .description('deploy a function (a new version if it exists)')
  .argument('<name>', 'function name')
  .argument('<file>', 'a .wasm component or WASI preview-1 command')
  .option('--env <KEY=VALUE>', 'environment variable for the guest (repeatable)', keyValue)
  .option('--memory <mb>', 'memory limit in MiB', integer)
  .option('--timeout <ms>', 'timeout per invocation in ms', integer)
  .option('--fuel <n>', 'fuel budget per invocation', integer)
  .addOption(new Option('--instance-mode <mode>', 'reuse: warm instances keep state; fresh: a new instance per invocation').choices(INSTANCE_MODES))
  .option('--max-concurrency <n>', 'invocations that may run at once (default: no limit)', integer)
  .option('--max-queue <n>', 'invocations that may wait at the concurrency limit before THROTTLED', integer)
  .option('--provisioned <n>', 'instances kept restored at all times (default 0)', integer)
  .option('--idle-ttl <ms>', 'idle time after which other instances are dropped (default 600000)', integer)
  .action((name: string, file: string, options: DeployOptions) =>
    withClient(async (client, global) => {
      const config = {
        env: options.env,
        memoryMb: options.memory,
        timeoutMs: options.timeout,
        fuel: options.fuel,
        instanceMode: options.instanceMode,
        maxConcurrency: options.maxConcurrency,
        maxQueue: options.maxQueue,
        provisioned: options.provisioned,
        idleTtlMs: options.idleTtl,
      };
      printFunction(await client.deploy(name, readFileSync(file), config), global.json);
    }),
  );

program
  .command('invoke')
  .description('invoke a function: the response goes to stdout, the report to stderr')
  .argument('<name>', 'function name')
  .option('--data <text>', 'the request payload')
  .option('--file <path>', 'read the request payload from a file')
  .option('--content-type <type>', 'the request content type')
  .action((name: string, options: { data?: string; file?: string; contentType?: string }) =>
    withClient(async (client, global) => {
      if (options.data !== undefined && options.file !== undefined) throw new InvalidArgumentError('give --data or --file, not both');
      const payload = options.file !== undefined ? readFileSync(options.file) : Buffer.from(options.data ?? '');
      try {
        const result = await client.invoke(name, payload, { contentType: options.contentType });
        process.stdout.write(result.payload);
        if (global.json) process.stderr.write(`${JSON.stringify({ contentType: result.contentType, report: result.report })}\n`);
        else {
          printLogs(result.report);
          process.stderr.write(`${reportLine(result.report)}\n`);
        }
      } catch (error) {
        const report = error instanceof KilnError ? (error.data as { report?: InvocationReport } | undefined)?.report : undefined;
        if (!global.json) printLogs(report);
        throw error;
      }
    }),
  );

program
  .command('new')
  .description('start a function project from the SDK example of a language')
  .argument('<name>', 'function name (also the directory, unless --dir)')
  .addOption(new Option('--lang <lang>', 'the language').choices(LANGUAGES).makeOptionMandatory())
  .option('--dir <dir>', 'where to create the project (default: ./NAME)')
  .action((name: string, options: { lang: Language; dir?: string }) => {
    const dir = resolve(options.dir ?? name);
    const project = newProject(dir, name, options.lang);
    console.log(`created ${dir} (${project.lang}): edit ${project.entry}, then kiln build ${options.dir ?? name}`);
  });

program
  .command('build')
  .description('build a function project into a deployable component (build/NAME.wasm)')
  .argument('[dir]', 'the project directory', '.')
  .action(async (dir: string) => {
    const output = await buildProject(resolve(dir));
    console.log(`built ${relative(process.cwd(), output) || output}`);
  });

program
  .command('ls')
  .description('list functions')
  .action(() =>
    withClient(async (client, global) => {
      const functions = await client.list();
      if (global.json) return console.log(JSON.stringify(functions));
      if (functions.length === 0) return console.log('no functions deployed');
      for (const f of functions) console.log(`${f.name.padEnd(24)} v${String(f.version).padEnd(4)} ${f.kind.padEnd(10)} ${f.size} bytes`);
    }),
  );

program
  .command('info')
  .description('show a function: its config, its live instances and its counters')
  .argument('<name>', 'function name')
  .action((name: string) =>
    withClient(async (client, global) => {
      printFunction(await client.get(name), global.json);
    }),
  );

program
  .command('rm')
  .description('delete a function and all its versions')
  .argument('<name>', 'function name')
  .action((name: string) =>
    withClient(async (client, global) => {
      await client.delete(name);
      if (global.json) console.log(JSON.stringify({ deleted: name }));
      else console.log(`deleted ${name}`);
    }),
  );

program.parseAsync().catch((error: unknown) => {
  const json = program.opts<GlobalOptions>().json;
  if (error instanceof KilnError) {
    if (json) process.stderr.write(`${JSON.stringify(error.toWire())}\n`);
    else {
      const guestCode = (error.data as { guestCode?: string } | undefined)?.guestCode;
      process.stderr.write(`error ${error.code}${guestCode ? ` (${guestCode})` : ''}: ${error.message}\n`);
    }
  } else {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  process.exit(1);
});
