// The daemon's log: one REPORT line per invocation, pino JSON on stdout, with
// the same requestId as the client's report, and every buffered line written
// out by a graceful shutdown.
import { describe, expect, it } from 'vitest';
import { KilnError } from '../../src/client/index.js';
import { guest, startDaemon } from '../helpers/daemon.js';

describe('logs', () => {
  it('writes a REPORT line per invocation, all of them flushed at shutdown', async () => {
    const daemon = await startDaemon({ dev: true, logLevel: 'info' });
    const client = await daemon.client();
    await client.deploy('logged', guest('component/testkit.wasm'));
    const ok = await Promise.all(Array.from({ length: 200 }, (_, i) => client.invoke('logged', `call ${i}`)));
    const failed = await client.invoke('logged', 'trap').catch((error: KilnError) => error);
    await client.close();
    expect(await daemon.stop('SIGTERM')).toBe(0);

    const records = daemon
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const reports = records.filter((r) => r.msg === 'REPORT');
    expect(reports).toHaveLength(201);
    const byId = new Map(reports.map((r) => [r.requestId, r]));
    for (const { report } of ok) {
      expect(byId.get(report.requestId)).toMatchObject({ level: 30, service: 'kiln', function: 'logged', version: 1, fuelUsed: report.fuelUsed, cold: report.cold });
    }
    const trapReport = (failed as KilnError).data as { report: { requestId: string } };
    expect(byId.get(trapReport.report.requestId)).toMatchObject({ error: 'GUEST_TRAP' });
    expect(records.at(-1)).toMatchObject({ msg: 'stopped' });
  });
});
