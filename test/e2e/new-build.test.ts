// `kiln new` + `kiln build` + `kiln deploy` + `kiln invoke` in a fresh
// directory, for every SDK language, the way a newcomer would run them.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KILN_BIN, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

const run = promisify(execFile);

describe('kiln new and kiln build', () => {
  let daemon: RunningDaemon;
  let kiln: (cwd: string, ...args: string[]) => Promise<{ stdout: string; stderr: string }>;

  beforeAll(async () => {
    daemon = await startDaemon();
    const env = { ...process.env, KILN_URL: daemon.url, KILN_TOKEN: daemon.token! };
    kiln = (cwd, ...args) => run(process.execPath, [KILN_BIN, ...args], { cwd, env, timeout: 120_000 });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  // componentize-js alone takes 30-60 s on two busy cores.
  it.each(['c', 'cpp', 'rust', 'as', 'js'])('%s: scaffold, build, deploy and invoke from an empty directory', { timeout: 180_000 }, async (lang) => {
    const workspace = mkdtempSync(join(tmpdir(), 'kiln-new-'));
    const name = `fn-${lang}`;
    expect((await kiln(workspace, 'new', name, '--lang', lang)).stdout).toContain(`created ${join(workspace, name)}`);
    const project = join(workspace, name);
    expect((await kiln(project, 'build')).stdout).toContain(`built build/${name}.wasm`);
    await kiln(project, 'deploy', name, `build/${name}.wasm`, '--env', 'GREETING=Hej');
    expect((await kiln(project, 'invoke', name, '--data', 'shout')).stdout).toBe('SHOUT');
    expect((await kiln(project, 'invoke', name, '--data', 'greet:new')).stdout).toBe('{"greeting":"Hej, new!"}');
  });

  it('refuses an existing directory, an unknown language and a directory without kiln.json', async () => {
    const workspace = mkdtempSync(join(tmpdir(), 'kiln-new-'));
    await kiln(workspace, 'new', 'twice', '--lang', 'c');
    await expect(kiln(workspace, 'new', 'twice', '--lang', 'c')).rejects.toMatchObject({ stderr: expect.stringContaining('already exists') });
    await expect(kiln(workspace, 'new', 'x', '--lang', 'cobol')).rejects.toMatchObject({ stderr: expect.stringContaining('cobol') });
    await expect(kiln(workspace, 'build')).rejects.toMatchObject({ stderr: expect.stringContaining('kiln.json') });
  });
});
