// The `kiln` command as a user runs it: a real process against a real daemon.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KILN_BIN, ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const run = promisify(execFile);

describe('kiln CLI', () => {
  let daemon: RunningDaemon;
  let kiln: (...args: string[]) => Promise<{ stdout: string; stderr: string; code: number }>;

  beforeAll(async () => {
    daemon = await startDaemon();
    kiln = async (...args) => {
      const env = { ...process.env, KILN_URL: daemon.url, KILN_TOKEN: daemon.token!, KILN_DATA_DIR: '/nonexistent' };
      try {
        const { stdout, stderr } = await run(process.execPath, [KILN_BIN, ...args], { env, cwd: ROOT });
        return { stdout, stderr, code: 0 };
      } catch (error) {
        const failed = error as { stdout: string; stderr: string; code: number };
        return { stdout: failed.stdout, stderr: failed.stderr, code: failed.code };
      }
    };
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('deploys, invokes, lists, shows and removes', async () => {
    const wasm = join(ROOT, 'build', 'guests', 'c', 'hello.wasm');
    const deployed = await kiln('--json', 'deploy', 'hello', wasm, '--env', 'GREETING=Hi', '--memory', '32', '--timeout', '5000');
    expect(deployed.code).toBe(0);
    expect(JSON.parse(deployed.stdout)).toMatchObject({ name: 'hello', config: { env: { GREETING: 'Hi' }, memoryMb: 32, timeoutMs: 5000 } });

    const invoked = await kiln('invoke', 'hello', '--data', 'greet:CLI');
    expect(invoked).toMatchObject({ code: 0, stdout: '{"greeting":"Hi, CLI!"}' });
    expect(invoked.stderr).toMatch(/REPORT \S+ duration [\d.]+ ms {2}billed \d+ ms/);
    expect(invoked.stderr).toContain('hello: handling 9 bytes');

    const json = await kiln('--json', 'invoke', 'hello', '--data', 'abc');
    expect(json.stdout).toBe('ABC');
    expect(JSON.parse(json.stderr)).toMatchObject({ contentType: 'text/plain', report: { function: 'hello' } });

    const failed = await kiln('invoke', 'hello', '--data', 'fail');
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('error GUEST_ERROR (bad_input): asked to fail');

    expect((await kiln('ls')).stdout).toMatch(/^hello\s+v1\s+component/m);
    expect((await kiln('info', 'hello')).stdout).toContain('memory 32 MiB');
    expect(await kiln('rm', 'hello')).toMatchObject({ code: 0, stdout: 'deleted hello\n' });
    const gone = await kiln('info', 'hello');
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain('error NOT_FOUND');
  });

  it('fails clearly without a token or with bad arguments', async () => {
    const noToken = await run(process.execPath, [KILN_BIN, 'ls'], {
      env: { ...process.env, KILN_URL: daemon.url, KILN_TOKEN: '', KILN_DATA_DIR: '/nonexistent' },
    }).catch((e: { stderr: string; code: number }) => e);
    expect(noToken).toMatchObject({ code: 1, stderr: expect.stringContaining('error UNAUTHENTICATED') });
    const badFlag = await kiln('deploy', 'x', 'y.wasm', '--memory', 'lots');
    expect(badFlag.code).not.toBe(0);
    expect(badFlag.stderr).toContain('expected a whole number');
  });
});
