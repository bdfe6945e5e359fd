// The training child workflow: submit the job once, supervise it one checkpoint at a time, and when it fails,
// classify, heal the cluster and resubmit with --load (slime resumes at tracker + 1). Never two live jobs.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { durationMs as msToNumber } from '../src/spec/duration.js';
import { stopForTimeLimit } from '../src/cluster/time-limit.js';
import type { Activities } from '../activities/index.js';
import type { SupervisionCursor } from '../activities/training.js';
import type { Spec } from '../src/spec/schema.js';
import { isPermanentFailure } from '../src/failure-types.js';
import { keelCheckpoint, keelEvalScore, keelPhase, keelRollout } from '../src/search-attributes.js';
import {
  addNodesUpdate,
  cancelSignal,
  failureTypes,
  resumeSignal,
  stopAfterCheckpointSignal,
  trainingPhaseSignal,
  trainingStatusQuery,
  type TrainingStatus,
} from './definitions.js';
import { addNodesArgs, firstProblem, maxExtraNodes, searchDouble, searchInt } from './inputs.js';
import { quick, retention, stopping, supervise, transfer } from './options.js';
import { patches } from './patches.js';
import { trainingNotifications, type Announced } from './notify.js';
import { keepFinalRecord, showDetails, trainingDetails } from './record.js';

export interface TrainingInput {
  spec: Spec;
  runKey: string;
  /** carried across continue-as-new */
  state?: TrainingStatus & {
    restartTimes: string[];
    extraNodes: { host: string; gpus?: number; name?: string }[];
    /** the cluster is being healed (carried across continue-as-new while waiting for nodes) */
    healing?: boolean;
    /** where the last supervision of the current job stopped reading its log (the next one starts there) */
    cursor?: SupervisionCursor;
    /** what the notifications last announced (workflows/notify.ts) */
    announced?: Announced;
    /** keel 0.7: when the current job's last checkpoint was recorded (or the job submitted): the next one's interval */
    intervalFrom?: string;
  };
  /** a stopAfterCheckpoint signal received by an earlier run of the chain, carried across continue-as-new */
  stopAfterCheckpoint?: boolean;
  /**
   * keel 0.7, Slurm: the pipeline continues this training in a new allocation when the current one ends, so training
   * stops after the last checkpoint that its time limit leaves room for (and returns when the allocation ended).
   */
  inAllocations?: boolean;
}

export interface TrainingResult {
  jobId?: string;
  lastCheckpoint?: number;
  /** the eval score logged at the last checkpoint, when one was */
  lastCheckpointEvalScore?: number;
  lastEvalScore?: number;
  restarts: number;
  stoppedEarly: boolean;
  /**
   * keel 0.7, Slurm: training stopped because its allocation ends (after a checkpoint: `planned`) or ended under the
   * job; `carry` is its state, for the training that goes on in the next allocation.
   */
  allocationEnd?: AllocationEnd;
  carry?: TrainingInput['state'];
}

export interface AllocationEnd {
  planned: boolean;
  /** nodes the next allocation must not have (lost ones: too few healthy nodes were left) */
  exclude?: string[];
  jobId: string;
  /** Slurm's state of the holder job when training looked (RUNNING, TIMEOUT, GONE, ...) */
  state: string;
  endsAt?: string;
  why: string;
  lastCheckpoint?: number;
}

export async function training(input: TrainingInput): Promise<TrainingResult> {
  const { spec, runKey } = input;
  const t = proxyActivities<Activities>(transfer(spec));
  const s = proxyActivities<Activities>(supervise(spec));
  const r = proxyActivities<Activities>(retention(spec));
  const q = proxyActivities<Activities>(quick(spec));

  const state: NonNullable<TrainingInput['state']> = input.state ?? {
    phase: 'starting',
    submissions: 0,
    restarts: 0,
    numRollout: spec.rollout.numRollout,
    saveInterval: spec.ckpt.saveInterval,
    checkpoints: [],
    evals: [],
    failures: [],
    restartTimes: [],
    extraNodes: [],
  };
  let stopAfterCheckpoint = input.stopAfterCheckpoint ?? false;
  let operatorDecision: 'resume' | 'cancel' | undefined;

  setHandler(trainingStatusQuery, () => state);
  setHandler(stopAfterCheckpointSignal, () => {
    stopAfterCheckpoint = true;
  });
  setHandler(resumeSignal, () => {
    operatorDecision = 'resume';
  });
  setHandler(cancelSignal, () => {
    operatorDecision = 'cancel';
  });
  setHandler(
    addNodesUpdate,
    ({ nodes }) => {
      state.extraNodes.push(...nodes);
      return { added: nodes.map((n) => n.name ?? n.host) };
    },
    {
      validator: (args) => {
        const parsed = addNodesArgs.safeParse(args);
        if (!parsed.success) throw new Error(`addNodes refused: ${firstProblem(parsed.error)}`);
        if (state.extraNodes.length + parsed.data.nodes.length > maxExtraNodes)
          throw new Error(`addNodes refused: at most ${maxExtraNodes} added nodes in all`);
      },
    },
  );

  const notifications = trainingNotifications(spec, runKey, state);
  const setPhase = (phase: string): void => {
    notifications.observe(phase);
    if (phase === state.phase && phaseShown) return;
    const operatorWaitChanged = (phase === operatorWait) !== (state.phase === operatorWait);
    state.phase = phase;
    phaseShown = true;
    showDetails(trainingDetails(state));
    upsertSearchAttributes([{ key: keelPhase, value: `training:${phase}` }]);
    // The pipeline answers `resume` for its training: it must know when training waits for an operator.
    const parent = workflowInfo().parent;
    if (operatorWaitChanged && parent) {
      void getExternalWorkflowHandle(parent.workflowId, parent.runId)
        .signal(trainingPhaseSignal, { phase })
        .catch((error: unknown) => log.warn('could not tell the pipeline the phase', { error: String(error) }));
    }
  };
  let phaseShown = false;

  // Retention beside supervision (patches.retentionBeside): at most one at a time; a checkpoint recorded while one
  // runs asks for another pass after it. A failure is thrown where training next looks (as the inline call did).
  let retaining: Promise<void> | undefined;
  let retainAgain = false;
  let retentionFailure: unknown;
  const retainBeside = (): void => {
    if (retaining) {
      retainAgain = true;
      return;
    }
    retaining = (async () => {
      do {
        retainAgain = false;
        state.retention = await r.applyRetention.executeWithOptions(summaries.retention, [
          { spec, scores: [...state.evals] },
        ]);
      } while (retainAgain);
    })()
      .catch((error: unknown) => {
        retentionFailure = error;
      })
      .finally(() => {
        retaining = undefined;
      });
  };
  /** Wait for a retention running beside supervision; throw its failure. */
  const retained = async (): Promise<void> => {
    if (retaining) await retaining;
    if (retentionFailure !== undefined) throw retentionFailure;
  };
  const retain = async (): Promise<void> => {
    if (patched(patches.retentionBeside)) retainBeside();
    else
      state.retention = await r.applyRetention.executeWithOptions(summaries.retention, [{ spec, scores: state.evals }]);
  };

  // Stopping options (heartbeating, minutes): the same command as under `quick`, so a run replays unchanged.
  const st = proxyActivities<Activities>(stopping(spec));
  const stopJob = async (): Promise<void> => {
    const stop = await st.stopTrainingJob.executeWithOptions(summaries.stop, [
      { spec, runKey, jobId: state.jobId!, activeNodes: state.activeNodes, extraNodes: state.extraNodes },
    ]);
    // (an activity of keel 0.4 and before returned nothing)
    if (!stop) return;
    state.jobStop = stop;
    if (stop.how === 'not-stopped') notifications.jobNotStopped(stop);
  };

  // keel 0.7, Slurm: the allocation's time, read after each checkpoint and after a failure.
  const allocationJob =
    input.inAllocations && spec.cluster.executor.kind === 'slurm' ? spec.cluster.executor.jobId : undefined;
  const readAllocation = async () =>
    allocationJob !== undefined && patched(patches.slurmTimeLimit)
      ? await q.slurmAllocationTime.executeWithOptions(summaries.allocation, [{ spec }])
      : undefined;
  /** keel 0.7, Slurm: the heal found too few healthy nodes; training goes on in a new allocation without these. */
  let reallocation: { why: string; exclude: string[] } | undefined;
  const reallocated = (): Promise<TrainingResult> =>
    allocationEnded({ planned: false, jobId: allocationJob!, state: 'RUNNING', ...reallocation! });
  /** Training ends here, for the pipeline to continue it in a new allocation. The job is stopped (or gone). */
  const allocationEnded = async (end: Omit<AllocationEnd, 'lastCheckpoint'>): Promise<TrainingResult> => {
    log.info(end.planned ? 'stopping for the allocation time limit' : 'the allocation ended', { ...end });
    (state.allocationEnds ??= []).push({
      at: new Date().toISOString(),
      allocation: end.jobId,
      job: state.jobId,
      checkpoint: state.checkpoints.at(-1)?.iteration,
      planned: end.planned,
      why: end.why,
    });
    if (state.jobId && end.planned) await stopJob();
    state.jobId = undefined;
    await retained();
    setPhase(end.planned ? 'stopped-for-time-limit' : 'allocation-ended');
    return {
      ...result(state, true),
      allocationEnd: { ...end, lastCheckpoint: state.checkpoints.at(-1)?.iteration },
      carry: carried(state),
    };
  };

  /** Continue as new when Temporal suggests it, or when this run's history is long anyway (any server). */
  const continueIfLong = async (where: string): Promise<void> => {
    const info = workflowInfo();
    if (!info.continueAsNewSuggested && info.historyLength < maxEventsPerRun) return;
    await retained();
    // The next run re-attaches to the same job (state.jobId) or goes on healing (state.healing).
    log.info('continuing as new', { where, jobId: state.jobId, historyLength: info.historyLength });
    await continueAsNew<typeof training>({
      spec,
      runKey,
      state,
      stopAfterCheckpoint,
      inAllocations: input.inAllocations,
    });
  };

  /**
   * Probe, quarantine, take spares, bring Ray up: until the cluster is ready, waiting visibly for nodes. `keepRay`:
   * restart Ray only on what the failure touched of the nodes the job ran on.
   */
  const heal = async (keepRay?: boolean): Promise<Awaited<ReturnType<typeof t.healCluster>>> => {
    setPhase('healing');
    for (let waits = 0; ; waits++) {
      // Back off to a few minutes between probes, spent inside the activity (no timer events in this history).
      const base = msToNumber(spec.policies.initialRetryInterval) * 3;
      const longest = spec.policies.nodeWaitMax ? msToNumber(spec.policies.nodeWaitMax) : defaultNodeWaitMaxMs;
      const pauseMs = waits === 0 ? 0 : Math.min(base * 2 ** Math.min(waits - 1, 16), Math.max(base, longest));
      const healing = t.healCluster.executeWithOptions(summaries.heal, [
        {
          spec,
          runKey,
          extraNodes: state.extraNodes,
          pauseMs,
          ...(keepRay ? { keepRay, activeNodes: state.activeNodes } : {}),
        },
      ]);
      let bringUpFailed = false;
      const healed = await healing.catch((error: unknown) => {
        // Ray did not come up on the chosen nodes this time: probe and try again after a pause.
        log.warn('healing attempt failed', { error: String(error) });
        bringUpFailed = true;
        return {
          ready: false,
          reason: `bring-up failed: ${String(error)}`,
          nodes: [],
          quarantined: state.quarantined ?? [],
        };
      });
      state.quarantined = healed.quarantined;
      if (healed.ready) {
        state.waitingFor = undefined;
        state.activeNodes = healed.nodes;
        state.healing = undefined;
        return healed;
      }
      state.waitingFor = healed.reason;
      // keel 0.7, Slurm: too few healthy nodes left in the allocation -- a new one, without the lost nodes.
      if (!bringUpFailed && allocationJob !== undefined && patched(patches.slurmTimeLimit)) {
        reallocation = {
          why: `${healed.reason}: a new allocation without ${healed.quarantined.join(', ') || 'them'}`,
          exclude: healed.quarantined,
        };
        return healed;
      }
      setPhase('waiting-for-nodes');
      await continueIfLong('waiting for nodes');
    }
  };

  const supervised = async (): Promise<TrainingResult> => {
    for (;;) {
      if (retentionFailure !== undefined) await retained();
      if (state.healing) await heal();
      if (reallocation) return await reallocated();
      if (!state.jobId) {
        setPhase('submitting');
        const submitted = await t.submitTrainingJob.executeWithOptions(summaries.submit, [
          {
            spec,
            runKey,
            // unique per training execution (a retried train step starts a new one) and per submission within it
            generation: `${workflowInfo().firstExecutionRunId.slice(-8)}-${state.submissions + 1}`,
            activeNodes: state.activeNodes,
            extraNodes: state.extraNodes,
          },
        ]);
        state.submissions++;
        const recovering = state.failures.at(-1);
        if (recovering && !recovering.recoveredAt) recovering.resubmittedAt = new Date().toISOString();
        state.jobId = submitted.jobId;
        state.intervalFrom = new Date().toISOString();
        state.cursor = undefined;
        state.resumeFrom = submitted.tracker;
        state.baseline = submitted.tracker;
        log.info('training job submitted', { jobId: submitted.jobId, tracker: submitted.tracker });
      }
      setPhase('running');
      const supervision = {
        spec,
        runKey,
        jobId: state.jobId,
        // The checkpoint the job resumed from is not new, however long the trainer takes to start.
        afterIteration: Math.max(state.checkpoints.at(-1)?.iteration ?? -1, state.baseline ?? -1),
        resumeFrom: state.resumeFrom,
        activeNodes: state.activeNodes,
        extraNodes: state.extraNodes,
        // read only what the job logged since the last supervision
        cursor: state.cursor?.jobId === state.jobId ? state.cursor : undefined,
      };
      // The supervising activity dies with its worker (heartbeat timeout); the job does not. Supervise the same job
      // again: it re-attaches by its submission id and re-reads the job's log.
      let outcome: Awaited<ReturnType<typeof s.superviseUntilCheckpoint>> | undefined;
      for (let tries = 1; outcome === undefined; tries++) {
        try {
          outcome = await s.superviseUntilCheckpoint.executeWithOptions(summaries.supervise, [supervision]);
        } catch (error) {
          if (isCancellation(error) || tries >= 5) throw error;
          // A permanent failure (keel 0.5): no re-attach can help.
          if (isPermanentFailure(error) && patched(patches.trainingRetryPermanent)) throw error;
          log.warn('supervision lost; re-attaching to the job', { jobId: state.jobId, error: String(error) });
          await sleep(msToNumber(spec.policies.initialRetryInterval));
        }
      }
      state.resumeFrom = undefined;
      state.cursor = outcome.cursor;
      const lastFailure = state.failures.at(-1);
      if (lastFailure && !lastFailure.recoveredAt && outcome.jobRunningAt)
        lastFailure.jobRunningAt ??= outcome.jobRunningAt;
      if (lastFailure && !lastFailure.recoveredAt && outcome.firstRolloutAt)
        lastFailure.recoveredAt = outcome.firstRolloutAt;
      // Search attributes take bounded values only: an out-of-range one would fail every workflow task.
      const lastRollout = searchInt(outcome.lastRollout);
      if (lastRollout !== undefined && lastRollout !== state.lastRollout) {
        state.lastRollout = lastRollout;
        upsertSearchAttributes([{ key: keelRollout, value: lastRollout }]);
      }
      for (const e of outcome.evals) {
        if (!state.evals.some((x) => x.rollout === e.rollout)) state.evals.push(e);
      }
      state.rewards = mergeRewards(state.rewards ?? [], outcome.rewards ?? []);
      showDetails(trainingDetails(state));

      if (outcome.kind === 'checkpoint') {
        // Every checkpoint saved since the last one recorded: a poll can miss one the trainer superseded quickly.
        const lastRecorded = state.checkpoints.at(-1)?.iteration ?? -1;
        for (const iteration of outcome.saved ?? [outcome.iteration]) {
          if (iteration <= lastRecorded || iteration === outcome.iteration) continue;
          const score = state.evals.find((e) => e.rollout === iteration)?.score;
          state.checkpoints.push({ iteration, at: new Date().toISOString(), evalScore: score });
        }
        const evalAt = state.evals.find((e) => e.rollout === outcome.iteration);
        state.checkpoints.push({
          iteration: outcome.iteration,
          at: new Date().toISOString(),
          evalScore: evalAt?.score,
        });
        const evalScore = searchDouble(evalAt?.score);
        const attributes = [
          ...(searchInt(outcome.iteration) === undefined ? [] : [{ key: keelCheckpoint, value: outcome.iteration }]),
          ...(evalScore === undefined ? [] : [{ key: keelEvalScore, value: evalScore }]),
        ];
        if (attributes.length > 0) upsertSearchAttributes(attributes);
        log.info('checkpoint saved', { iteration: outcome.iteration, evalScore: evalAt?.score });
        notifications.observe();
        await retain();
        if (stopAfterCheckpoint) {
          await stopJob();
          state.jobId = undefined;
          await retained();
          setPhase('stopped');
          return result(state, true);
        }
        // (the last checkpoint: the job ends by itself)
        const time = outcome.iteration < state.numRollout - 1 ? await readAllocation() : undefined;
        if (time) {
          const now = Date.now();
          // (a job submitted by keel 0.6: from the checkpoint before this one)
          const intervalMs =
            now - Date.parse(state.intervalFrom ?? (state.checkpoints.at(-2) ?? state.checkpoints.at(-1)!).at);
          state.intervalFrom = new Date(now).toISOString();
          const marginMs = msToNumber(
            (spec.cluster.executor as { stopBeforeEnd?: string }).stopBeforeEnd ?? defaultStopBeforeEnd,
          );
          const decision = time.live
            ? stopForTimeLimit({ now, endsAt: time.endsAt, intervalMs, marginMs })
            : { stop: true, why: `Slurm job ${time.jobId} ended (${time.state})` };
          if (decision.stop) {
            return await allocationEnded({
              planned: time.live,
              jobId: time.jobId,
              state: time.state,
              endsAt: time.endsAt,
              why: decision.why,
            });
          }
        }
      } else if (outcome.kind === 'succeeded') {
        await retain();
        await retained();
        state.jobId = undefined;
        setPhase('succeeded');
        return result(state, false);
      } else {
        // The job failed, hung, or lost a node: classified by the activity in one place.
        // kind and message, plus the figures the soak benchmark reads: last rollout, tracker, detection times
        state.failures.push({ at: new Date().toISOString(), ...outcome.failure });
        log.warn('training job failed', { ...outcome.failure });
        if (outcome.failure.kind === 'config-error' || outcome.failure.kind === 'resume-mismatch') {
          setPhase('failed');
          // the job is stopped on the way out (see below)
          throw ApplicationFailure.create({
            type: outcome.failure.kind === 'config-error' ? failureTypes.configError : failureTypes.resumeMismatch,
            message: outcome.failure.message,
            nonRetryable: true,
          });
        }
        // Slurm ended the allocation itself (its time limit, or scancel from outside keel): nothing to heal here.
        const time = await readAllocation();
        if (time && !time.live) {
          return await allocationEnded({
            planned: false,
            jobId: time.jobId,
            state: time.state,
            why: `Slurm job ${time.jobId} ended (${time.state}) under the training job: ${outcome.failure.message}`,
          });
        }
        await stopJob();
        state.jobId = undefined;
        if (crashLoop(spec, state)) {
          setPhase('paused-crash-loop');
          operatorDecision = undefined;
          await condition(() => operatorDecision !== undefined);
          if (operatorDecision === 'cancel') {
            setPhase('cancelled');
            return result(state, true);
          }
          state.restartTimes = [];
        }
        state.restarts++;
        state.restartTimes.push(new Date().toISOString());
        state.healing = true;
        const failure = state.failures.at(-1)!;
        if (patched(patches.recovery)) {
          // Keep Ray where it is healthy -- unless the last heal kept it and training did not come back after it.
          const previous = state.failures.at(-2);
          const keptInVain = previous?.heal === 'kept' && !previous.recoveredAt;
          const healed = await heal(!keptInVain);
          if (reallocation) return await reallocated();
          failure.healedAt = new Date().toISOString();
          failure.heal = healed.mode;
          failure.restartedOn = healed.restartedOn;
        } else {
          await heal();
        }
      }
      await continueIfLong('supervising');
    }
  };

  try {
    const ended = await supervised();
    keepFinalRecord(trainingRecord(state));
    return ended;
  } catch (error) {
    // Every way out but continue-as-new stops the job: cancelled (the run, this child, or the pipeline terminated --
    // its parent-close policy cancels this workflow), failed, or a bug. The GPUs must not run unsupervised.
    if (!(error instanceof ContinueAsNew) && state.jobId) {
      await CancellationScope.nonCancellable(stopJob);
      state.jobId = undefined;
      if (isCancellation(error)) setPhase('cancelled');
    }
    if (!(error instanceof ContinueAsNew)) keepFinalRecord(trainingRecord(state));
    throw error;
  } finally {
    await notifications.delivered();
  }
}

/** What the Web UI shows for each of training's activities (its timeline and event history). */
const summaries = {
  submit: { summary: 'submit the training job' },
  supervise: { summary: 'supervise until the next checkpoint' },
  heal: { summary: 'heal the cluster' },
  stop: { summary: 'stop the training job' },
  retention: { summary: 'apply checkpoint retention' },
  allocation: { summary: "read the Slurm allocation's time left" },
};

/** `cluster.executor.stopBeforeEnd` for specs prepared by keel 0.6 and before. */
const defaultStopBeforeEnd = '10m';

/** The phase in which training waits for an operator (its parent pipeline is told when it enters or leaves it). */
const operatorWait = 'paused-crash-loop';
/** A run of the training chain continues as new past this many events, even where the server suggests nothing. */
const maxEventsPerRun = 4000;
/** The longest pause between two probes while waiting for nodes, for specs from before `policies.nodeWaitMax`. */
const defaultNodeWaitMaxMs = 5 * 60_000;

/** At most this many reward points are kept in the run state (it is carried across continue-as-new). */
const maxRewardPoints = 2000;

function mergeRewards(
  kept: NonNullable<TrainingStatus['rewards']>,
  points: NonNullable<TrainingStatus['rewards']>,
): NonNullable<TrainingStatus['rewards']> {
  const byRollout = new Map(kept.map((p) => [p.rollout, p.reward]));
  for (const p of points) byRollout.set(p.rollout, p.reward);
  let merged = [...byRollout].sort(([a], [b]) => a - b).map(([rollout, reward]) => ({ rollout, reward }));
  // Too long: keep every other point (and the last), so the series still spans the whole run.
  while (merged.length > maxRewardPoints) merged = merged.filter((_, i) => i % 2 === 0 || i === merged.length - 1);
  return merged;
}

function crashLoop(spec: Spec, state: NonNullable<TrainingInput['state']>): boolean {
  const windowMs = msToNumber(spec.policies.crashLoop.window);
  const now = Date.now();
  const recent = state.restartTimes.filter((t) => now - Date.parse(t) < windowMs);
  return recent.length >= spec.policies.crashLoop.maxRestarts;
}

/** The training record (what `trainingStatus` answers) without the state that only the next run of the chain needs. */
function trainingRecord(state: NonNullable<TrainingInput['state']>): TrainingStatus {
  const {
    restartTimes: _restartTimes,
    extraNodes: _extraNodes,
    healing: _healing,
    cursor: _cursor,
    announced: _announced,
    ...record
  } = state;
  return record;
}

/** Training's state for the training that goes on in the next allocation: what was the job's and the nodes' is gone. */
function carried(state: NonNullable<TrainingInput['state']>): NonNullable<TrainingInput['state']> {
  const {
    jobId: _jobId,
    cursor: _cursor,
    activeNodes: _activeNodes,
    quarantined: _quarantined,
    healing: _healing,
    waitingFor: _waitingFor,
    resumeFrom: _resumeFrom,
    intervalFrom: _intervalFrom,
    ...kept
  } = state;
  return { ...kept, phase: 'starting' };
}

function result(state: NonNullable<TrainingInput['state']>, stoppedEarly: boolean): TrainingResult {
  return {
    jobId: state.jobId,
    lastCheckpoint: state.checkpoints.at(-1)?.iteration,
    lastCheckpointEvalScore: state.checkpoints.at(-1)?.evalScore,
    lastEvalScore: state.evals.at(-1)?.score,
    restarts: state.restarts,
    stoppedEarly,
  };
}
