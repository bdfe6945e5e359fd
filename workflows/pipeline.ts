// The pipeline: validate the spec, plan, then run its DAG of steps. A step starts when its needs succeeded or were
// skipped; independent steps run in parallel; each step is skipped when its outputs are already complete.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  type SignalDefinition,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { durationMs as msToNumber } from '../src/spec/duration.js';
import type { Activities } from '../activities/index.js';
import { formatProblems, resolveSpecInput } from '../src/spec/resolve.js';
import type { Spec, StepSpec } from '../src/spec/schema.js';
import { plan } from '../src/plan/index.js';
import { keelPhase, keelPreset } from '../src/search-attributes.js';
import {
  cancelSignal,
  failureTypes,
  nonRetryableTypes,
  pauseSignal,
  resumeSignal,
  statusQuery,
  stopAfterCheckpointSignal,
  type PipelinePhase,
  type PipelineStatus,
  type StepStatus,
} from './definitions.js';
import { quick, transfer } from './options.js';
import { training } from './training.js';

export interface PipelineResult {
  name: string;
  phase: PipelinePhase;
  steps: StepStatus[];
}

/**
 * One JSON object, as typed into the Web UI's Start Workflow form: a full spec, or
 * `{ "preset": "tiny-local", "overrides": { ... } }`.
 */
export async function pipeline(input: unknown): Promise<PipelineResult> {
  const resolved = resolveSpecInput(input);
  if (!resolved.ok) {
    throw ApplicationFailure.create({
      type: failureTypes.invalidSpec,
      message: `invalid spec:\n${formatProblems(resolved.problems)}`,
      details: [resolved.problems],
      nonRetryable: true,
    });
  }
  const spec = resolved.spec;
  const report = plan(spec);
  const errors = report.findings.filter((f) => f.severity === 'error');
  if (errors.length) {
    throw ApplicationFailure.create({
      type: failureTypes.planError,
      message: `the plan has errors:\n${errors.map((f) => `  ${f.path}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ''}`).join('\n')}`,
      details: [errors],
      nonRetryable: true,
    });
  }
  return new PipelineRun(
    spec,
    report.findings.filter((f) => f.severity !== 'info'),
  ).execute();
}

class PipelineRun {
  private readonly steps = new Map<string, StepStatus>();
  private phase: PipelinePhase = 'running';
  private paused = false;
  private cancelRequested = false;
  private changed = 0;
  private readonly scope = new CancellationScope();
  private readonly runKey = workflowInfo().workflowId;
  private readonly quickActivities: Activities;
  private readonly transferActivities: Activities;

  constructor(
    private readonly spec: Spec,
    private readonly warnings: { path: string; message: string }[],
  ) {
    for (const [id, step] of Object.entries(spec.steps)) {
      this.steps.set(id, { id, kind: step.kind, needs: step.needs, state: 'pending', attempts: 0 });
    }
    this.quickActivities = proxyActivities<Activities>(quick(spec));
    this.transferActivities = proxyActivities<Activities>(transfer(spec));
    setHandler(statusQuery, () => this.status());
    setHandler(pauseSignal, () => {
      this.paused = true;
      this.setPhase('paused');
    });
    setHandler(resumeSignal, async () => {
      this.paused = false;
      if (this.phase === 'paused') this.setPhase('running');
      // An operator looks at the pipeline: a training paused by its crash-loop guard resumes from here too.
      await this.signalTraining(resumeSignal);
    });
    setHandler(stopAfterCheckpointSignal, async () => {
      await this.signalTraining(stopAfterCheckpointSignal);
    });
    setHandler(cancelSignal, (request) => {
      log.info('cancel requested', { reason: request?.reason });
      this.cancelRequested = true;
      this.scope.cancel();
    });
  }

  async execute(): Promise<PipelineResult> {
    upsertSearchAttributes([{ key: keelPreset, value: this.spec.preset ?? 'custom' }]);
    this.setPhase('running');
    const running = new Map<string, Promise<void>>();
    try {
      while (!this.cancelRequested && !this.finished()) {
        await condition(() => !this.paused || this.cancelRequested);
        if (this.cancelRequested) break;
        for (const id of this.readySteps()) {
          if (running.has(id)) continue;
          running.set(
            id,
            this.scope
              .run(() => this.runStep(id))
              .finally(() => {
                this.changed++;
              }),
          );
        }
        if (this.failedStep()) break;
        const seen = this.changed;
        await condition(() => this.changed !== seen || this.cancelRequested || this.paused);
      }
      // Let the steps already running end (pause lets them finish; failure lets siblings finish too).
      await Promise.allSettled(running.values());
    } catch (error) {
      if (!isCancellation(error)) throw error;
      this.cancelRequested = true;
    }
    if (this.cancelRequested) return this.cancelAll(running);
    const failed = this.failedStep();
    if (failed) {
      this.setPhase('failed');
      throw ApplicationFailure.create({
        type: 'StepFailed',
        message: `step ${failed.id} failed after ${failed.attempts} attempt(s): ${failed.reason ?? 'unknown error'}`,
        nonRetryable: true,
      });
    }
    this.setPhase('succeeded');
    return { name: this.spec.name, phase: this.phase, steps: [...this.steps.values()] };
  }

  private async cancelAll(running: Map<string, Promise<void>>): Promise<PipelineResult> {
    this.setPhase('cancelling');
    await Promise.allSettled(running.values());
    // Stop whatever keel launched for this run, even though the run itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      this.quickActivities.stopLaunched({ spec: this.spec, runKey: this.runKey }),
    );
    for (const step of this.steps.values()) {
      if (step.state === 'pending' || step.state === 'running') step.state = 'cancelled';
    }
    this.setPhase('cancelled');
    return { name: this.spec.name, phase: this.phase, steps: [...this.steps.values()] };
  }

  private finished(): boolean {
    return [...this.steps.values()].every((s) => s.state === 'succeeded' || s.state === 'skipped');
  }

  private failedStep(): StepStatus | undefined {
    return [...this.steps.values()].find((s) => s.state === 'failed');
  }

  private readySteps(): string[] {
    if (this.paused || this.failedStep()) return [];
    return [...this.steps.values()]
      .filter((s) => s.state === 'pending')
      .filter((s) => s.needs.every((n) => ['succeeded', 'skipped'].includes(this.steps.get(n)!.state)))
      .map((s) => s.id);
  }

  private async runStep(id: string): Promise<void> {
    const status = this.steps.get(id)!;
    const step = this.spec.steps[id]!;
    status.state = 'running';
    status.startedAt = new Date().toISOString();
    this.changed++;
    log.info('step started', { step: id, kind: step.kind });
    try {
      const before = await this.quickActivities.checkStep({ spec: this.spec, stepId: id });
      if (before.complete) {
        status.state = 'skipped';
        status.reason = `outputs already complete: ${before.reason}`;
        status.outputs = before.outputs;
        return;
      }
      status.outputs = await this.runWithRetries(id, step, status);
      if (before.checkable !== false) {
        const after = await this.quickActivities.checkStep({ spec: this.spec, stepId: id });
        if (!after.complete) {
          throw ApplicationFailure.nonRetryable(
            `ran, but outputs are not complete: ${after.reason}`,
            'IncompleteOutputs',
          );
        }
        status.reason = after.reason;
      } else {
        status.reason = undefined;
      }
      status.state = 'succeeded';
    } catch (error) {
      if (isCancellation(error)) {
        status.state = 'cancelled';
        throw error;
      }
      status.state = 'failed';
      status.reason = describeFailure(error);
      log.warn('step failed', { step: id, reason: status.reason });
    } finally {
      status.endedAt = new Date().toISOString();
      log.info('step ended', { step: id, state: status.state, attempts: status.attempts });
    }
  }

  private async runWithRetries(id: string, step: StepSpec, status: StepStatus): Promise<Record<string, unknown>> {
    const { maxAttempts, initialRetryInterval } = this.spec.policies;
    for (;;) {
      status.attempts++;
      this.changed++;
      try {
        return await this.runOnce(id, step, status.attempts);
      } catch (error) {
        if (isCancellation(error) || isPermanent(error) || status.attempts >= maxAttempts) throw error;
        status.reason = `attempt ${status.attempts} failed: ${describeFailure(error)}`;
        const backoff = Math.min(msToNumber(initialRetryInterval) * 2 ** (status.attempts - 1), 10 * 60_000);
        log.warn('step attempt failed; retrying', { step: id, attempt: status.attempts, backoffMs: backoff });
        await sleep(backoff);
      }
    }
  }

  private async runOnce(id: string, step: StepSpec, attempt: number): Promise<Record<string, unknown>> {
    const input = { spec: this.spec, stepId: id, runKey: this.runKey, attempt, since: this.steps.get(id)!.startedAt };
    const a = this.transferActivities;
    switch (step.kind) {
      case 'probe':
        return { nodes: await this.quickActivities.probeNodes(input) };
      case 'hf-download':
        return await a.downloadModel(input);
      case 'fp8-cast':
        return await a.castWeights(input);
      case 'torch-dist-convert':
        return await a.convertCheckpoint(input);
      case 'ray-cluster':
        return await a.startRayCluster(input);
      case 'command':
        return await a.runCommandStep(input);
      case 'gang':
        return await a.runGangStep(input);
      case 'train': {
        const result = await executeChild(training, {
          workflowId: `${this.runKey}-training`,
          args: [{ spec: this.spec, runKey: this.runKey }],
        });
        return { ...result };
      }
    }
  }

  /** Forward a signal to the training child while a train step runs (a no-op otherwise). */
  private async signalTraining(signal: SignalDefinition<[]>): Promise<void> {
    const training = [...this.steps.values()].some((s) => s.kind === 'train' && s.state === 'running');
    if (!training) return;
    await getExternalWorkflowHandle(`${this.runKey}-training`)
      .signal(signal)
      .catch((error: unknown) => log.warn('could not forward the signal to training', { error: String(error) }));
  }

  private setPhase(phase: PipelinePhase): void {
    this.phase = phase;
    upsertSearchAttributes([{ key: keelPhase, value: phase }]);
  }

  private status(): PipelineStatus {
    return {
      name: this.spec.name,
      preset: this.spec.preset,
      phase: this.phase,
      paused: this.paused,
      steps: [...this.steps.values()],
      warnings: this.warnings,
    };
  }
}

function isPermanent(error: unknown): boolean {
  const cause =
    (error as { cause?: { type?: string; nonRetryable?: boolean } }).cause ??
    (error as { type?: string; nonRetryable?: boolean });
  return Boolean(cause && ((cause.type && nonRetryableTypes.includes(cause.type)) || cause.nonRetryable));
}

function describeFailure(error: unknown): string {
  let e = error as { message?: string; cause?: unknown } | undefined;
  const parts: string[] = [];
  while (e) {
    if (e.message && !parts.includes(e.message)) parts.push(e.message);
    e = e.cause as typeof e;
  }
  return parts.filter((p) => p !== 'Activity task failed').join(': ') || String(error);
}
