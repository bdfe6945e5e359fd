// The pipeline: prepare the run (spec and plan, in an activity), then run its DAG of steps. A step starts when its
// needs succeeded or were skipped; independent steps run in parallel; each step is skipped when its outputs are
// already complete. Operators steer it with Updates (pause, resume, stopAfterCheckpoint, cancel).
import {
  ActivityFailure,
  type ActivityInterfaceFor,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  type SignalDefinition,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { durationMs as msToNumber } from '../src/spec/duration.js';
import type { Activities } from '../activities/index.js';
import type { Spec, StepSpec } from '../src/spec/schema.js';
import { keelPhase, keelPreset } from '../src/search-attributes.js';
import { cancelRequest, firstProblem, searchKeyword, trainingPhasePayload } from './inputs.js';
import {
  cancelSignal,
  cancelUpdate,
  pauseSignal,
  pauseUpdate,
  resumeSignal,
  resumeUpdate,
  statusQuery,
  stopAfterCheckpointSignal,
  stopAfterCheckpointUpdate,
  trainingPhaseSignal,
  type AllocationStatus,
  type PipelinePhase,
  type PipelineStatus,
  type SteeringAnswer,
  type StepStatus,
} from './definitions.js';
import { preparedRun } from '../src/spec/prepare.js';
import { isPermanentFailure } from '../src/failure-types.js';
import { patches } from './patches.js';
import { checking, prepare, quick, stopping, transfer } from './options.js';
import { training } from './training.js';
import { announceRunEnd } from './notify.js';
import { keepFinalRecord, pipelineDetails, showDetails } from './record.js';
import { inSlurmAllocation, type NextAllocation } from './slurm.js';
import type { TrainingInput } from './training.js';
import { EarlySteering, type Steerable, type SteeringAction } from './steering.js';

export interface PipelineResult {
  name: string;
  phase: PipelinePhase;
  steps: StepStatus[];
}

type Warnings = PipelineStatus['warnings'];

/**
 * One JSON object, as typed into the Web UI's Start Workflow form: a full spec, or
 * `{ "preset": "tiny-local", "overrides": { ... } }`.
 */
export async function pipeline(input: unknown): Promise<PipelineResult> {
  if (!patched(patches.preparedRuns)) {
    // A run started by keel 0.1, replayed: it resolved and planned in workflow code and was steered by signals.
    // Only such replays come here; new runs prepare in the `prepareRun` activity below.
    const { spec, warnings } = preparedRun(input);
    return new PipelineRun(spec, warnings, true).execute();
  }
  // keel 0.5: the steering Updates exist from the first workflow task; one sent before the run is prepared is held.
  const early = patched(patches.steeringByUpdates) ? new EarlySteering() : undefined;
  const prepared = await proxyActivities<Activities>(prepare)
    .prepareRun({ spec: input })
    .catch(async (error: unknown) => {
      // An invalid spec or a plan with errors: fail the run with that failure itself, naming every problem.
      const failure =
        error instanceof ActivityFailure && error.cause instanceof ApplicationFailure ? error.cause : error;
      if (early) {
        early.preparationFailed((failure as Error).message ?? String(failure));
        await condition(allHandlersFinished);
      }
      throw failure;
    });
  if (prepared.spec.cluster.executor.kind === 'slurm' && patched(patches.slurmAllocation)) {
    early?.waitingForAllocation(prepared.spec);
    return inSlurmAllocation(prepared.spec, (placed, allocation, next) =>
      new PipelineRun(placed, prepared.warnings, false, allocation, early, next).execute(),
    );
  }
  return new PipelineRun(prepared.spec, prepared.warnings, false, undefined, early).execute();
}

class PipelineRun implements Steerable {
  private readonly steps = new Map<string, StepStatus>();
  private phase: PipelinePhase = 'validating';
  private paused = false;
  private stopAfterCheckpoint = false;
  private cancelReason?: string;
  /** set by the training child while it waits for an operator (crash loop) */
  private trainingPhase?: string;
  private cancelRequested = false;
  private changed = 0;
  private readonly scope = new CancellationScope();
  /** keel 0.7, Slurm: the allocation ends (or ended) under a step; the run goes on in the next one */
  private boundary?: AllocationBoundary;
  /** the boundary before this allocation */
  private lastBoundary?: AllocationBoundary;
  /** the training state carried from the allocation before */
  private trainingCarry?: TrainingInput['state'];
  /** nodes no later allocation may have (lost under training, with too few healthy nodes left) */
  private readonly excluded: string[] = [];
  private readonly runKey = workflowInfo().workflowId;
  private readonly quickActivities: ActivityInterfaceFor<Activities>;
  private readonly transferActivities: ActivityInterfaceFor<Activities>;
  private readonly checkingActivities: ActivityInterfaceFor<Activities>;
  private readonly stoppingActivities: ActivityInterfaceFor<Activities>;

  constructor(
    private spec: Spec,
    private readonly warnings: Warnings,
    /** a keel 0.1 run, replayed: signals only, and a cancelled run ends COMPLETED as it did then */
    private readonly legacy: boolean,
    /** the Slurm allocation the run holds (shown by `status`) */
    private readonly allocation?: AllocationStatus,
    /** keel 0.5+: steering registered at the run's start, attached to this run before its first step */
    private readonly early?: EarlySteering,
    /** keel 0.7, Slurm: the run goes on in a new allocation when its allocation ends */
    private readonly nextAllocation?: NextAllocation,
  ) {
    for (const [id, step] of Object.entries(spec.steps)) {
      this.steps.set(id, { id, kind: step.kind, needs: step.needs, state: 'pending', attempts: 0 });
    }
    this.quickActivities = proxyActivities<Activities>(quick(spec));
    this.transferActivities = proxyActivities<Activities>(transfer(spec));
    // other options than `quick`, the same commands: a run started before replays unchanged (options are not compared)
    this.checkingActivities = proxyActivities<Activities>(checking(spec));
    this.stoppingActivities = proxyActivities<Activities>(stopping(spec));
    setHandler(statusQuery, () => this.status());
    if (legacy) this.handleLegacySignals();
    else this.handleSteering();
  }

  async execute(): Promise<PipelineResult> {
    upsertSearchAttributes([{ key: keelPreset, value: searchKeyword(this.spec.preset ?? 'custom') }]);
    this.setPhase('running');
    // Steering held while the run was prepared takes effect now, before any step starts.
    this.early?.attach(this);
    const running = new Map<string, Promise<void>>();
    let cancelled: unknown;
    try {
      while (!this.cancelRequested && !this.finished()) {
        await condition(() => !this.paused || this.cancelRequested);
        if (this.cancelRequested) break;
        if (this.boundary && ![...this.steps.values()].some((s) => s.state === 'running')) {
          await Promise.allSettled(running.values());
          running.clear();
          await this.continueInNextAllocation(this.boundary);
          continue;
        }
        for (const id of this.readySteps()) {
          if (running.has(id)) continue;
          running.set(
            id,
            this.scope.run(() => this.runStep(id)).finally(() => this.touch()),
          );
        }
        if (this.failedStep()) break;
        const seen = this.changed;
        await condition(() => this.changed !== seen || this.cancelRequested || this.paused);
      }
      // Let the steps already running end (pause lets them finish; failure lets siblings finish too).
      await Promise.allSettled(running.values());
      if (CancellationScope.current().consideredCancelled) this.cancelRequested = true;
    } catch (error) {
      if (!isCancellation(error)) throw error;
      // Temporal cancelled the run (keel cancel, the Web UI's Request Cancellation, the parent closing).
      this.cancelRequested = true;
      cancelled = error;
    }
    if (this.cancelRequested) {
      const result = await this.cancelAll(running);
      if (this.legacy) return result;
      keepFinalRecord(this.status());
      await condition(allHandlersFinished);
      throw cancelled ?? new CancelledFailure(this.cancelReason ?? 'cancelled');
    }
    const failed = this.failedStep();
    if (failed) {
      this.setPhase('failed');
      keepFinalRecord(this.status());
      await announceRunEnd(this.spec, this.runKey, 'failed', [...this.steps.values()]);
      throw ApplicationFailure.create({
        type: 'StepFailed',
        message: `step ${failed.id} failed after ${failed.attempts} attempt(s): ${failed.reason ?? 'unknown error'}`,
        nonRetryable: true,
      });
    }
    this.setPhase('succeeded');
    keepFinalRecord(this.status());
    await announceRunEnd(this.spec, this.runKey, 'succeeded', [...this.steps.values()]);
    return { name: this.spec.name, phase: this.phase, steps: [...this.steps.values()] };
  }

  private async cancelAll(running: Map<string, Promise<void>>): Promise<PipelineResult> {
    this.setPhase('cancelling');
    this.scope.cancel();
    await Promise.allSettled(running.values());
    // Stop whatever keel launched for this run, even though the run itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      this.stoppingActivities.stopLaunched({
        spec: this.spec,
        runKey: this.runKey,
        trainingWorkflowId: `${this.runKey}-training`,
      }),
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
    if (this.paused || this.failedStep() || this.boundary) return [];
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
    this.touch();
    log.info('step started', { step: id, kind: step.kind });
    try {
      const check = () =>
        this.checkingActivities.checkStep.executeWithOptions({ summary: `check ${id}` }, [
          { spec: this.spec, stepId: id },
        ]);
      const before = await check();
      if (before.complete) {
        status.state = 'skipped';
        status.reason = `outputs already complete: ${before.reason}`;
        status.outputs = before.outputs;
        return;
      }
      status.outputs = await this.runWithRetries(id, step, status);
      if (before.checkable !== false) {
        const after = await check();
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
      if (error instanceof AllocationBoundary) {
        // It runs again in the next allocation (skipped there if its outputs are complete).
        status.state = 'pending';
        status.reason = error.message;
        error.step = id;
        this.boundary ??= error;
        return;
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
      this.touch();
      try {
        return await this.runOnce(id, step, status.attempts);
      } catch (error) {
        if (isCancellation(error) || error instanceof AllocationBoundary) throw error;
        // keel 0.7, Slurm: a step that failed because its allocation ended goes on in the next one.
        if (this.nextAllocation && patched(patches.slurmTimeLimit)) {
          const time = await this.quickActivities.slurmAllocationTime({ spec: this.spec });
          if (!time.live) {
            throw new AllocationBoundary(
              `Slurm job ${time.jobId} ended (${time.state}) under step ${id}: ${describeFailure(error)}`,
              { planned: false, progressed: false },
            );
          }
        }
        if (isPermanentFailure(error) || status.attempts >= maxAttempts) throw error;
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
    // the summary the Web UI shows on the run's timeline: what the step does, and its name
    const named = { summary: stepSummary(id, step) };
    switch (step.kind) {
      case 'probe':
        return { nodes: await this.checkingActivities.probeNodes.executeWithOptions(named, [input]) };
      case 'hf-download':
        return await a.downloadModel.executeWithOptions(named, [input]);
      case 'fp8-cast':
        return await a.castWeights.executeWithOptions(named, [input]);
      case 'torch-dist-convert':
        return await a.convertCheckpoint.executeWithOptions(named, [input]);
      case 'ray-cluster':
        return await a.startRayCluster.executeWithOptions(named, [input]);
      case 'command':
        return await a.runCommandStep.executeWithOptions(named, [input]);
      case 'gang':
        return await a.runGangStep.executeWithOptions(named, [input]);
      case 'train': {
        const result = await executeChild(training, {
          workflowId: `${this.runKey}-training`,
          args: [
            {
              spec: this.spec,
              runKey: this.runKey,
              stopAfterCheckpoint: this.stopAfterCheckpoint || undefined,
              // keel 0.7: training stops for the allocation's time limit, and goes on in the next allocation
              ...(this.nextAllocation ? { inAllocations: true } : {}),
              ...(this.trainingCarry ? { state: this.trainingCarry } : {}),
            },
          ],
          // Terminating or failing this run asks training to cancel: it stops its Ray job before it ends.
          ...(this.legacy ? {} : { parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL }),
        });
        const { carry, ...shown } = result;
        if (result.allocationEnd && this.nextAllocation) {
          const end = result.allocationEnd;
          const before = this.trainingCarry?.checkpoints.at(-1)?.iteration;
          this.trainingCarry = carry;
          const lost = (end.exclude ?? []).filter((n) => !this.excluded.includes(n));
          this.excluded.push(...lost);
          throw new AllocationBoundary(
            `${end.why}; training goes on from checkpoint ${end.lastCheckpoint ?? 'none'} in the next allocation`,
            {
              planned: end.planned,
              // (a new allocation without lost nodes is a step on, too)
              progressed: (end.lastCheckpoint !== undefined && end.lastCheckpoint !== before) || lost.length > 0,
            },
          );
        }
        return { ...shown };
      }
    }
  }

  /**
   * keel 0.7, Slurm: the allocation ends (training stopped after a checkpoint) or ended under a step. Release it,
   * allocate again, and run the steps once more on the new nodes: completed ones skip, the cluster comes up there, and
   * training goes on from its checkpoint with its state. When two allocations in a row end under the same step
   * without a new checkpoint, the step fails: the time limit is too short for it.
   */
  private async continueInNextAllocation(boundary: AllocationBoundary): Promise<void> {
    const last = this.lastBoundary;
    this.lastBoundary = boundary;
    this.boundary = undefined;
    const stopped = boundary.step === undefined ? undefined : this.steps.get(boundary.step);
    if (stopped && last !== undefined && last.step === boundary.step && !boundary.progressed && !last.progressed) {
      stopped.state = 'failed';
      stopped.reason = `two allocations in a row ended under step ${stopped.id} before it completed or saved a checkpoint (${boundary.message}): cluster.executor.timeLimit is too short for it`;
      this.touch();
      return;
    }
    log.info('continuing in a new allocation', { why: boundary.message, planned: boundary.planned });
    upsertSearchAttributes([{ key: keelPhase, value: 'allocating' }]);
    this.spec = await this.nextAllocation!(boundary.message, [...this.excluded]);
    upsertSearchAttributes([{ key: keelPhase, value: this.phase }]);
    for (const step of this.steps.values()) {
      Object.assign(step, {
        state: 'pending',
        attempts: 0,
        startedAt: undefined,
        endedAt: undefined,
        outputs: undefined,
      });
    }
    this.touch();
  }

  /** A steering Update's validator: throws the reason it is refused. */
  validate(action: SteeringAction, request: unknown): void {
    this.refuseIfEnded(action);
    if (action === 'resume' && !this.paused && this.trainingPhase !== 'paused-crash-loop') {
      throw new Error(`the run is not paused (phase ${this.phase}${this.trainingNote()}): nothing to resume`);
    }
    if (action === 'stopAfterCheckpoint') {
      if (this.stopAfterCheckpoint) throw new Error('already requested: training stops at its next checkpoint');
      const train = this.trainStep();
      if (!train) throw new Error('this run has no train step');
      if (!['pending', 'running'].includes(train.state)) throw new Error(`the train step is ${train.state}`);
    }
    if (action === 'cancel') {
      if (this.cancelReason) throw new Error(`already being cancelled (${this.cancelReason})`);
      const parsed = cancelRequest.safeParse(request);
      if (!parsed.success) {
        throw new Error(`cancel takes { "reason": "..." } or nothing (${firstProblem(parsed.error)})`);
      }
    }
  }

  /** A steering Update's handler, once validated. */
  act(action: SteeringAction, request: unknown): Promise<SteeringAnswer> {
    switch (action) {
      case 'pause':
        return this.pause();
      case 'resume':
        return this.resume();
      case 'stopAfterCheckpoint':
        return this.requestStopAfterCheckpoint();
      case 'cancel':
        return this.cancel(cancelReasonOf(request));
    }
  }

  private handleSteering(): void {
    // keel 0.5+: the Updates were registered at the run's start (EarlySteering), and no signal steers the run.
    if (!this.early) {
      setHandler(pauseUpdate, () => this.act('pause', undefined), {
        validator: () => this.validate('pause', undefined),
      });
      setHandler(resumeUpdate, () => this.act('resume', undefined), {
        validator: () => this.validate('resume', undefined),
      });
      setHandler(stopAfterCheckpointUpdate, () => this.act('stopAfterCheckpoint', undefined), {
        validator: () => this.validate('stopAfterCheckpoint', undefined),
      });
      setHandler(cancelUpdate, (request) => this.act('cancel', request), {
        validator: (request) => this.validate('cancel', request),
      });
    }
    setHandler(trainingPhaseSignal, (payload) => {
      const parsed = trainingPhasePayload.safeParse(payload);
      if (!parsed.success) {
        log.warn('trainingPhase signal ignored: not { phase: string }', { problem: firstProblem(parsed.error) });
        return;
      }
      this.trainingPhase = parsed.data.phase;
    });
    if (this.early) return;
    // Clients of keel 0.1 still send signals to runs of keel 0.2-0.4: the same actions, without an answer.
    setHandler(pauseSignal, () => void this.pause());
    setHandler(resumeSignal, () => void this.resume(true).catch(() => undefined));
    setHandler(stopAfterCheckpointSignal, () => void this.requestStopAfterCheckpoint().catch(() => undefined));
    setHandler(cancelSignal, (request) => void this.cancel(cancelReasonOf(request)).catch(() => undefined));
  }

  private refuseIfEnded(what: string): void {
    if (['succeeded', 'failed', 'cancelled', 'cancelling'].includes(this.phase) || this.cancelRequested) {
      throw new Error(`cannot ${what}: the run is ${this.cancelRequested ? 'being cancelled' : this.phase}`);
    }
  }

  private async pause(): Promise<SteeringAnswer> {
    if (this.paused) return { accepted: true, message: 'already paused' };
    this.paused = true;
    this.setPhase('paused');
    const running = [...this.steps.values()].filter((s) => s.state === 'running').map((s) => s.id);
    return {
      accepted: true,
      message: `paused: no new step starts until resume${running.length ? `; running steps go on (${running.join(', ')})` : ''}`,
    };
  }

  /** `forwardAlways`: a signal's resume (no answer to give) reaches a running training even before it said it waits. */
  private async resume(forwardAlways = false): Promise<SteeringAnswer> {
    const parts: string[] = [];
    if (this.paused) {
      this.paused = false;
      if (this.phase === 'paused') this.setPhase('running');
      parts.push('the pipeline runs again');
    }
    if (this.trainingPhase === 'paused-crash-loop' || forwardAlways) {
      // Training waits for an operator after its crash-loop budget: the answer comes only once it has the signal.
      await this.signalTraining(resumeSignal);
      this.trainingPhase = undefined;
      parts.push('training restarts its job');
    }
    return { accepted: true, message: parts.join('; ') || 'nothing was paused' };
  }

  private async requestStopAfterCheckpoint(): Promise<SteeringAnswer> {
    this.stopAfterCheckpoint = true;
    if (this.trainStep()?.state === 'running') {
      await this.signalTraining(stopAfterCheckpointSignal);
      return { accepted: true, message: 'training stops its job at its next checkpoint and the run ends' };
    }
    return { accepted: true, message: 'training will stop at its first checkpoint' };
  }

  private async cancel(reason?: string): Promise<SteeringAnswer> {
    this.cancelReason = reason ?? 'cancelled by an operator';
    log.info('cancel requested', { reason: this.cancelReason });
    // A workflow may not cancel itself: an activity asks Temporal to, so that the run ends CANCELED.
    await CancellationScope.nonCancellable(() =>
      this.quickActivities.requestCancellation({ workflowId: this.runKey, runId: workflowInfo().runId }),
    );
    return { accepted: true, message: 'cancelling: keel stops what it launched, then the run ends CANCELED' };
  }

  private handleLegacySignals(): void {
    setHandler(pauseSignal, () => {
      this.paused = true;
      this.setPhase('paused');
    });
    setHandler(resumeSignal, async () => {
      this.paused = false;
      if (this.phase === 'paused') this.setPhase('running');
      await this.signalTraining(resumeSignal).catch((error: unknown) =>
        log.warn('could not forward the signal to training', { error: String(error) }),
      );
    });
    setHandler(stopAfterCheckpointSignal, async () => {
      await this.signalTraining(stopAfterCheckpointSignal).catch((error: unknown) =>
        log.warn('could not forward the signal to training', { error: String(error) }),
      );
    });
    setHandler(cancelSignal, (request) => {
      log.info('cancel requested', { reason: cancelReasonOf(request) });
      this.cancelRequested = true;
      this.scope.cancel();
    });
  }

  private trainStep(): StepStatus | undefined {
    return [...this.steps.values()].find((s) => s.kind === 'train');
  }

  private trainingNote(): string {
    return this.trainingPhase ? `, training ${this.trainingPhase}` : '';
  }

  /** Forward a signal to the training child while a train step runs (a no-op otherwise); throws when undelivered. */
  private async signalTraining(signal: SignalDefinition<[]>): Promise<void> {
    if (this.trainStep()?.state !== 'running') return;
    await getExternalWorkflowHandle(`${this.runKey}-training`).signal(signal);
  }

  private setPhase(phase: PipelinePhase): void {
    if (phase === this.phase) return;
    this.phase = phase;
    upsertSearchAttributes([{ key: keelPhase, value: phase }]);
    showDetails(pipelineDetails(this.status()));
  }

  /** Something changed: the main loop looks again, and the Web UI's details follow. */
  private touch(): void {
    this.changed++;
    showDetails(pipelineDetails(this.status()));
  }

  private status(): PipelineStatus {
    return {
      name: this.spec.name,
      preset: this.spec.preset,
      phase: this.phase,
      paused: this.paused,
      stopAfterCheckpoint: this.stopAfterCheckpoint || undefined,
      cancelReason: this.cancelReason,
      steps: [...this.steps.values()],
      warnings: this.warnings,
      ...(this.allocation ? { allocation: this.allocation } : {}),
    };
  }
}

/** The run's allocation ends under a step (training stopped after a checkpoint: `planned`) and the run goes on. */
class AllocationBoundary extends Error {
  /** the step it ended under */
  step?: string;
  readonly planned: boolean;
  /** training saved a checkpoint in the allocation */
  readonly progressed: boolean;
  constructor(message: string, how: { planned: boolean; progressed: boolean }) {
    super(message);
    this.planned = how.planned;
    this.progressed = how.progressed;
  }
}

const stepVerbs: Record<StepSpec['kind'], string> = {
  probe: 'probe nodes',
  'hf-download': 'download',
  'fp8-cast': 'cast FP8 to BF16',
  'torch-dist-convert': 'convert to torch_dist',
  'ray-cluster': 'start the Ray cluster',
  command: 'run',
  gang: 'run on a gang of nodes',
  train: 'train',
};

/** The step's id and what it does (`cast (cast FP8 to BF16)`); the verb alone when it starts with the id. */
function stepSummary(id: string, step: StepSpec): string {
  const verb = stepVerbs[step.kind];
  return verb === id || verb.startsWith(`${id} `) ? verb : `${id} (${verb})`;
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

/** A cancel's reason: a string (cut to 2000 characters), or none whatever else the request carried. */
function cancelReasonOf(request: unknown): string | undefined {
  const reason = (request as { reason?: unknown } | null | undefined)?.reason;
  return typeof reason === 'string' ? reason.slice(0, 2000) : undefined;
}
