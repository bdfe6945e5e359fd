// The collector's scrape deadline, when the Temporal client's own deadline fires first: the SDK wraps gRPC's
// DEADLINE_EXCEEDED in its own words ("Failed to query Workflow"); the collector must still say the scrape ran out of
// time, and pass any other failure on as it came.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import { ServiceError } from '@temporalio/client';
import { RunCollector } from '../../src/metrics/collect.js';

function clientFailingWith(error: Error): Client {
  const fake = {
    withDeadline: <R>(_deadline: number, fn: () => Promise<R>) => fn(),
    workflow: {
      // eslint-disable-next-line require-yield
      list: async function* () {
        throw error;
      },
    },
  };
  return fake as unknown as Client;
}

/** One scrape (deadline 60 s) whose listing fails as the SDK fails it: a ServiceError wrapping gRPC status `code`. */
function collectFailingWith(code: number, details: string) {
  const grpc = Object.assign(new Error(`${code} ${details}`), { code });
  const client = clientFailingWith(new ServiceError('Failed to list workflows', { cause: grpc }));
  return new RunCollector(client, { taskQueue: 'q', maxRuns: 10, timeoutMs: 60_000 }).collect();
}

describe('metrics collector deadline', () => {
  it("reports a wrapped DEADLINE_EXCEEDED as the scrape's deadline, at once", async () => {
    const snapshot = await collectFailingWith(4, 'DEADLINE_EXCEEDED: Deadline exceeded');
    assert.equal(snapshot.listError, "no answer within the scrape's 60000 ms");
    assert.ok(snapshot.seconds < 5, `took ${snapshot.seconds} s`);
  });

  it('passes any other failure on in its own words', async () => {
    const snapshot = await collectFailingWith(14, 'UNAVAILABLE: connection refused');
    assert.match(snapshot.listError ?? '', /Failed to list workflows/);
  });
});
