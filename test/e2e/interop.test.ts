// Any msgpack-rpc client can speak Kiln: a Python script with only Debian's
// python3-msgpack and python3-websockets invokes a function.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guest, ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';

// Debian's interpreter: the packages are installed for it, not for any other python3 on PATH.
const PYTHON = '/usr/bin/python3';

describe('interop', () => {
  let daemon: RunningDaemon;

  beforeAll(async () => {
    daemon = await startDaemon();
    const client = await daemon.client();
    await client.deploy('hello', guest('c/hello.wasm'), { env: { GREETING: 'Hej' } });
    await client.close();
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('a Python msgpack-rpc client invokes a deployed function', () => {
    const script = join(ROOT, 'test', 'interop', 'invoke.py');
    const output = execFileSync(PYTHON, [script, daemon.url, daemon.token!, 'hello', 'greet:Python'], { encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual({
      kind: 'component',
      payload: '{"greeting":"Hej, Python!"}',
      contentType: 'application/json',
      report: { function: 'hello', version: 1, fuelUsed: expect.any(Number), cold: expect.any(Boolean) },
    });
  });

  it('the Python client is refused without the token', () => {
    const script = join(ROOT, 'test', 'interop', 'invoke.py');
    expect(() => execFileSync(PYTHON, [script, daemon.url, '-', 'hello', 'x'], { encoding: 'utf8', stdio: 'pipe' })).toThrow(/401/);
  });
});
