// The metrics collector against the real dev server: it lists the running keel runs of its task queue only, reports
// at most --metrics-max-runs of them, and a training nobody answers for (no worker polls its queue) costs the scrape
// its deadline, not a hang: it is reported down and the endpoint still answers.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createLogger } from '../../src/log.js';
import { freePort } from '../../src/local/net.js';
import { RunCollector, type RunsSnapshot } from '../../src/metrics/collect.js';
import { startMetricsServer } from '../../src/metrics/server.js';
import { keelPhase, keelPreset } from '../../src/search-attributes.js';
import { eventually, uniqueQueue } from '../support/pipeline.js';
import { parseExposition, sampleValue } from '../support/prometheus.js';
import { startDevServer } from '../support/temporal.js';

describe('metrics collector', { timeout: 120_000 }, () => {
  let env: TestWorkflowEnvironment;
  const queue = uniqueQueue('keel-metrics-collect');
  before(async () => {
    env = await startDevServer();
    // No worker polls this queue: the workflows stay running, their queries unanswered.
    for (const run of ['keel-a', 'keel-b']) {
      await env.client.workflow.start('pipeline', {
        taskQueue: queue,
        workflowId: run,
        args: [{}],
        typedSearchAttributes: [
          { key: keelPhase, value: 'running' },
          { key: keelPreset, value: 'tiny-local' },
        ],
      });
    }
    await env.client.workflow.start('training', { taskQueue: queue, workflowId: 'keel-a-training', args: [{}] });
    await env.client.workflow.start('pipeline', { taskQueue: `${queue}-other`, workflowId: 'keel-z', args: [{}] });
  });
  after(async () => {
    await env?.teardown();
  });

  const collector = (maxRuns: number, timeoutMs = 1500) =>
    new RunCollector(env.client, { taskQueue: queue, maxRuns, timeoutMs });

  it('reports the runs of its queue; an unanswered training is down within the deadline', async () => {
    const snapshot = await eventually(
      async () => {
        const s = await collector(10).collect();
        return s.pipelines.length === 2 && s.trainings.length === 1 ? s : undefined;
      },
      30_000,
      'the runs to be listed',
    );
    assert.deepEqual(
      snapshot.pipelines.map((p) => p.run).sort(),
      ['keel-a', 'keel-b'],
      'only the runs of this task queue',
    );
    assert.deepEqual(snapshot.pipelines[0], {
      run: snapshot.pipelines[0]!.run,
      phase: 'running',
      preset: 'tiny-local',
    });
    const [training] = snapshot.trainings;
    assert.equal(training?.run, 'keel-a');
    assert.equal(training?.workflowId, 'keel-a-training');
    assert.equal(training?.figures, undefined);
    assert.match(training?.error ?? '', /deadline|no answer|time/i);
    assert.ok(snapshot.seconds < 1.5 + 1, `the scrape took ${snapshot.seconds} s`);
    assert.equal(snapshot.truncated, false);
    assert.equal(snapshot.listError, undefined);
  });

  it('reports at most --metrics-max-runs runs and says so', async () => {
    const snapshot = await collector(2).collect();
    assert.equal(snapshot.pipelines.length + snapshot.trainings.length, 2);
    assert.equal(snapshot.truncated, true);
  });

  it('the endpoint answers within the deadline; an SDK exporter that does not answer is reported', async () => {
    const closedPort = await freePort('127.0.0.1');
    let collects = 0;
    const counting = collector(10);
    const server = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      collector: {
        collect: (): Promise<RunsSnapshot> => {
          collects++;
          return counting.collect();
        },
      },
      sdkMetricsUrl: `http://127.0.0.1:${closedPort}/metrics`,
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const started = Date.now();
      // two scrapes at once share one reading of the runs
      const [a, b] = await Promise.all([fetch(server.url), fetch(server.url)]);
      assert.ok(Date.now() - started < 1500 + 2500, `answered in ${Date.now() - started} ms`);
      assert.equal(collects, 1);
      for (const res of [a, b]) assert.equal(res.status, 200);
      const samples = parseExposition(await a.text());
      assert.equal(sampleValue(samples, 'keel_training_status_up', { run: 'keel-a' }), 0);
      assert.equal(sampleValue(samples, 'keel_run_phase', { run: 'keel-b', phase: 'running' }), 1);
      assert.equal(sampleValue(samples, 'keel_metrics_sdk_up'), 0);
      assert.equal(sampleValue(samples, 'keel_metrics_list_up'), 1);
      assert.equal((await fetch(server.url.replace('/metrics', '/other'))).status, 404);
    } finally {
      await server.close();
    }
  });
});
