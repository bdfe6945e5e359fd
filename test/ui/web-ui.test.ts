// The Web UI, driven by a real browser (Debian's Chromium through playwright-core, headless): a person starts the
// tiny-local pipeline from the Start Workflow form by typing the README's input, and sees the run complete; a second
// start with a bad input shows the run failed with its path-qualified message. Screenshots of both go to
// test/artifacts/. The trainer is killed once after the first checkpoint, so the run restarts from it; then
// `keel report` charts the finished run, and the chart's marks must be the run's recorded evals, rewards, checkpoints
// and restart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { chromium, type Browser, type Page } from 'playwright-core';
import { markLabel, reportData } from '../../src/report/chart.js';
import { KeelClient, type RunStatus } from '../../src/client/index.js';
import { nodeProcesses } from '../../src/local/node-processes.js';
import { TASK_QUEUE, trainingStatusQuery } from '../../workflows/definitions.js';
import { eventually } from '../support/pipeline.js';
import { repoRoot } from '../support/temporal.js';
import { chromiumPath, startWebUiRig, type WebUiRig } from '../support/web-ui.js';
import { drawn } from '../support/report.js';

const artifacts = join(repoRoot, 'test', 'artifacts');

/** The two inputs and the message the README shows: the test types exactly what a reader would. */
async function readmeInputs(): Promise<{ good: string; bad: string; badMessage: string }> {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Starting a run from the Temporal Web UI'));
  const good = /```json\n(.+)\n```/.exec(section)?.[1];
  const bad = /`(\{ "preset": "tiny-local", "overrides": \{ "rollout": \{ "numRolout"[^`]*)`/.exec(section)?.[1];
  const badMessage = /fails\s+with `([^`]+)`/.exec(section)?.[1];
  assert.ok(good && bad && badMessage, "the README's Web UI section names a good input, a bad one and its message");
  return { good, bad, badMessage };
}

async function startFromForm(page: Page, uiUrl: string, workflowId: string, input: string): Promise<void> {
  await page.goto(`${uiUrl}/namespaces/default/workflows/start-workflow`);
  await page.getByTestId('workflowId').fill(workflowId);
  await page.getByTestId('taskQueue').fill(TASK_QUEUE);
  await page.getByTestId('workflowType').fill('pipeline');
  const data = page.locator('.cm-content');
  await data.fill(input);
  await data.blur(); // the editor reformats the JSON on blur; start only after that
  await page.waitForTimeout(500);
  await page.getByTestId('start-workflow-button').click();
  await page.getByRole('link', { name: 'Workflow started successfully' }).waitFor({ timeout: 30_000 });
}

/** Open the run's page and wait until the UI shows it ended; returns the status the UI shows. */
async function waitForEnd(page: Page, uiUrl: string, workflowId: string, timeoutMs: number): Promise<string> {
  await page.goto(`${uiUrl}/namespaces/default/workflows/${workflowId}`);
  const status = page.getByTestId('execution-status');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const shown = (await status.textContent({ timeout: 30_000 }))?.trim() ?? '';
    if (shown !== 'Running') return shown;
    if (Date.now() > deadline) throw new Error(`${workflowId} still shows '${shown}' after ${timeoutMs / 1000} s`);
    await page.waitForTimeout(5000);
    await page.reload();
  }
}

/** Once training has recorded checkpoint 9, SIGKILL the trainer's driver (train.py) on the head node. */
async function killTrainerAfterFirstCheckpoint(rig: WebUiRig, trainingId: string): Promise<void> {
  const handle = rig.env.client.workflow.getHandle(trainingId);
  await eventually(
    async () => {
      // recorded once the eval at 9 is logged; the trainer goes on to rollout 10 and is killed before 19
      const t = await handle.query(trainingStatusQuery);
      return t.checkpoints.some((c) => c.iteration === 9) || undefined;
    },
    600_000,
    'checkpoint 9',
  );
  const pids: number[] = [];
  for (const pid of await nodeProcesses(rig.cluster.nodes[0]!.stateDir)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('train.py') && !cmdline.includes('bash')) pids.push(pid);
  }
  assert.ok(pids.length >= 1, "found the trainer's driver");
  for (const pid of pids) process.kill(pid, 'SIGKILL');
}

describe('Web UI: start a run from the Start Workflow form', { timeout: 1_200_000 }, () => {
  let rig: WebUiRig;
  let browser: Browser;
  let page: Page;
  let client: KeelClient;
  let inputs: Awaited<ReturnType<typeof readmeInputs>>;

  before(async () => {
    const executablePath = chromiumPath();
    inputs = await readmeInputs();
    await mkdir(artifacts, { recursive: true });
    rig = await startWebUiRig();
    client = await KeelClient.connect({ address: rig.address });
    browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  });
  after(async () => {
    await browser?.close();
    await client?.close();
    await rig?.stop();
  });

  it("starts the README's tiny-local input and sees the run complete", async () => {
    const workflowId = 'keel-tiny-local';
    await startFromForm(page, rig.uiUrl, workflowId, inputs.good);
    await killTrainerAfterFirstCheckpoint(rig, `${workflowId}-training`);
    const shown = await waitForEnd(page, rig.uiUrl, workflowId, 900_000);
    await page.screenshot({ path: join(artifacts, 'web-ui-started-run.png'), fullPage: true });
    const status = await client.status(workflowId);
    assert.equal(shown, 'Completed', `the UI shows ${shown}: ${status.failure ?? ''}`);
    assert.equal(status.runStatus, 'COMPLETED');
    // What the form sent is what the README says, and the run did what that input asks for.
    const started = await rig.env.client.workflow.getHandle(workflowId).fetchHistory();
    const payload = started.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
    assert.deepEqual(JSON.parse(Buffer.from(payload!).toString('utf8')), JSON.parse(inputs.good));
    for (const step of status.pipeline?.steps ?? []) assert.equal(step.state, 'succeeded', step.id);
    assert.deepEqual(
      status.training?.checkpoints.map((c) => c.iteration),
      [9, 19],
    );
    // the tiny trainer evaluates before its first rollout too
    assert.deepEqual(
      status.training?.evals.map((e) => e.rollout),
      [0, 9, 19],
    );
    assert.equal(status.training?.restarts, 1);
    assert.deepEqual(
      status.training?.failures.map((f) => [f.kind, f.tracker]),
      [['job-crashed', 9]],
    );
  });

  it('a bad input shows the run failed at once with the path-qualified message', async () => {
    const workflowId = 'keel-tiny-local-bad-input';
    await startFromForm(page, rig.uiUrl, workflowId, inputs.bad);
    const shown = await waitForEnd(page, rig.uiUrl, workflowId, 60_000);
    assert.equal(shown, 'Failed');
    const failure = page.getByTestId('input-and-result');
    await failure.getByText(inputs.badMessage, { exact: false }).first().waitFor({ timeout: 30_000 });
    await failure.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(artifacts, 'web-ui-bad-input-failed.png'), fullPage: true });
    const status = await client.status(workflowId);
    assert.match(status.failure ?? '', /invalid spec/);
    assert.ok(status.failure?.includes(inputs.badMessage), status.failure);
  });

  it('keel report charts the finished run: exactly its recorded evals and rewards, its checkpoints and restarts', async () => {
    const workflowId = 'keel-tiny-local';
    const status = await client.status(workflowId);
    const training = status.training!;
    assert.ok(training.rewards?.length, 'the run recorded a reward per rollout');
    assert.deepEqual(
      training.rewards.map((r) => r.rollout),
      Array.from({ length: 20 }, (_, i) => i),
    );
    const keel = (...args: string[]) =>
      execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], {
        cwd: repoRoot,
        env: { KEEL_TEMPORAL_ADDRESS: rig.address },
      });
    const outputs: Record<string, string> = {};
    for (const ext of ['svg', 'html', 'png']) {
      outputs[ext] = join(artifacts, `report-${workflowId}.${ext}`);
      const { stdout } = await keel('report', workflowId, '--out', outputs[ext]!);
      assert.match(stdout, /3 evals, 20 rewards, 2 checkpoints, 1 restarts, 8 steps/);
    }
    const expected = reportData(status);
    for (const ext of ['svg', 'html']) {
      const chart = await readFile(outputs[ext]!, 'utf8');
      assert.deepEqual(
        drawn(chart, 'eval'),
        training.evals.map((e) => markLabel.eval(e.rollout, e.score)),
        `${ext}: the drawn evals are the recorded ones`,
      );
      assert.deepEqual(
        drawn(chart, 'reward'),
        training.rewards.map((r) => markLabel.reward(r.rollout, r.reward)),
      );
      assert.deepEqual(
        drawn(chart, 'checkpoint'),
        training.checkpoints.map((c) => markLabel.checkpoint(c.iteration)),
      );
      assert.deepEqual(
        drawn(chart, 'restart'),
        expected.restarts.map((r) => markLabel.restart(r.rollout, r.kind)),
      );
      assert.deepEqual(
        drawn(chart, 'step'),
        expected.steps.map((s) => markLabel.step(s.id, s.state)),
      );
    }
    const png = await readFile(outputs.png!);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  });

  it("shows keel's story on the run's pages: step names on the timeline, training's rollout and last eval", async () => {
    try {
      await page.goto(`${rig.uiUrl}/namespaces/default/workflows/keel-tiny-local`);
      // the timeline names each activity by its step (workflows/pipeline.ts stepSummary): `checkStep • check download`
      for (const summary of ['checkStep • check download', 'cast FP8 to BF16', 'cluster (start the Ray cluster)']) {
        await page.getByText(summary).first().waitFor({ timeout: 30_000 });
      }
      await page.screenshot({ path: join(artifacts, 'web-ui-pipeline-story.png'), fullPage: true });
      // the current details (markdown set by the workflow, workflows/record.ts), as the page renders them
      await page.goto(`${rig.uiUrl}/namespaces/default/workflows/keel-tiny-local-training`);
      await page.getByText('superviseUntilCheckpoint • supervise until the next checkpoint').first().waitFor();
      await page.getByRole('tab', { name: 'User Metadata' }).click();
      await shownInFrames(page, 'rollout 19 / 20');
      const score = (await client.status('keel-tiny-local')).training!.evals.at(-1)!;
      await shownInFrames(page, `last eval: ${score.score} at rollout ${score.rollout}`);
    } finally {
      await page.screenshot({ path: join(artifacts, 'web-ui-training-details.png'), fullPage: true });
    }
  });

  it('a continuation: keel report charts the whole run, rollouts 0 to the last, the boundary marked', async () => {
    const workflowId = 'keel-tiny-local';
    const more = JSON.parse(inputs.good) as { overrides: { rollout: { numRollout: number } } };
    more.overrides.rollout.numRollout = 26;
    await client.start(more);
    // a run started by keel carries its summary (src/client/index.ts runSummary)
    await page.goto(`${rig.uiUrl}/namespaces/default/workflows/${workflowId}`);
    await page.getByRole('tab', { name: 'User Metadata' }).click();
    await shownInFrames(page, 'keel tiny-local: tiny-local, 26 rollouts');
    const handle = rig.env.client.workflow.getHandle(workflowId);
    await handle.result();
    const out = join(artifacts, `report-${workflowId}-continued.svg`);
    const { stdout } = await keelCli(rig, 'report', workflowId, '--out', out);
    assert.match(stdout, /, 2 executions/);
    const chart = await readFile(out, 'utf8');
    const rewards = drawn(chart, 'reward').map((label) => Number(/rollout=(\d+)/.exec(label)![1]));
    assert.deepEqual(
      rewards,
      Array.from({ length: 26 }, (_, i) => i),
      'every rollout of both executions',
    );
    assert.deepEqual(drawn(chart, 'boundary'), [markLabel.boundary(20, 2)]);
    // --execution: the continuation alone
    const runs = await client.history(workflowId);
    assert.equal(runs.length, 2);
    const single = join(artifacts, `report-${workflowId}-second.svg`);
    await keelCli(rig, 'report', workflowId, '--out', single, '--execution', runs[1]!.runId!);
    const second = drawn(await readFile(single, 'utf8'), 'reward');
    assert.equal(second[0], markLabel.reward(20, runs[1]!.training!.rewards![0]!.reward));
  });

  it('with every worker stopped, keel status and keel report read the finished run from its history', async () => {
    const workflowId = 'keel-tiny-local';
    const withWorker = await client.status(workflowId);
    await rig.stopWorker();
    const { stdout: status } = await keelCli(rig, 'status', workflowId);
    assert.match(status, /keel-tiny-local: COMPLETED \(succeeded\)/);
    for (const step of withWorker.pipeline!.steps)
      assert.match(status, new RegExp(`^  ${step.id}\\s+${step.state}`, 'm'));
    for (const c of withWorker.training!.checkpoints) assert.match(status, new RegExp(`checkpoint ${c.iteration}\\b`));
    assert.match(status, /training {3}succeeded, rollout 25 of 26/);
    assert.match(status, /read from the run's history/);
    const json = JSON.parse((await keelCli(rig, 'status', workflowId, '--json')).stdout) as RunStatus;
    assert.deepEqual(json.training?.checkpoints, withWorker.training?.checkpoints);
    assert.deepEqual(json.pipeline?.steps, withWorker.pipeline?.steps);
    const out = join(artifacts, `report-${workflowId}-no-worker.svg`);
    const { stdout } = await keelCli(rig, 'report', workflowId, '--out', out);
    assert.match(stdout, /26 rewards, .*2 executions \(read from the run's history\)/);
    assert.equal(drawn(await readFile(out, 'utf8'), 'reward').length, 26);
  });
});

/** The UI renders summaries and details (markdown) in frames of their own: wait until one of them shows `text`. */
async function shownInFrames(page: Page, text: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const frame of page.frames()) {
      const shown = await frame
        .locator('body')
        .innerText({ timeout: 1000 })
        .catch(() => '');
      if (shown.includes(text)) return;
    }
    if (Date.now() > deadline) throw new Error(`the page shows no '${text}' after ${timeoutMs / 1000} s`);
    await page.waitForTimeout(500);
  }
}

function keelCli(rig: WebUiRig, ...args: string[]) {
  return execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], {
    cwd: repoRoot,
    env: { KEEL_TEMPORAL_ADDRESS: rig.address },
  });
}
