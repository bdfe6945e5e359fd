// Signals, queries, updates and the shapes they carry: one definition shared by workflows, client and CLI.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

export const TASK_QUEUE = 'keel';

export type StepState = 'pending' | 'skipped' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface StepStatus {
  id: string;
  kind: string;
  needs: string[];
  state: StepState;
  attempts: number;
  startedAt?: string;
  endedAt?: string;
  /** why a step was skipped (its outputs are complete), or why it failed */
  reason?: string;
  outputs?: Record<string, unknown>;
}

export type PipelinePhase =
  'validating' | 'planning' | 'running' | 'paused' | 'cancelling' | 'succeeded' | 'failed' | 'cancelled';

export interface CheckpointRecord {
  iteration: number;
  at: string;
  evalScore?: number;
  evalMetrics?: Record<string, number>;
}

export interface TrainingStatus {
  phase: string;
  jobId?: string;
  submissions: number;
  restarts: number;
  lastRollout?: number;
  numRollout: number;
  saveInterval?: number;
  checkpoints: CheckpointRecord[];
  evals: { rollout: number; score: number }[];
  /** `rollout/raw_reward` by rollout (a rollout re-run after a resume keeps its latest value); thinned when long */
  rewards?: { rollout: number; reward: number }[];
  failures: {
    at: string;
    kind: string;
    message: string;
    lastRollout?: number;
    tracker?: number;
    detectedAt?: string;
    lastProgressAt?: string;
    /** when training was running again after this failure: the resubmitted job's first rollout (seen) */
    recoveredAt?: string;
    /** the cluster was ready again (keel 0.3+), and what the heal did to Ray: kept, repaired (some nodes), restarted */
    healedAt?: string;
    heal?: 'kept' | 'repaired' | 'restarted';
    /** the nodes Ray was (re)started on by the heal */
    restartedOn?: string[];
    /** the job was resubmitted, and first seen RUNNING (its driver started): keel's share ends there */
    resubmittedAt?: string;
    jobRunningAt?: string;
  }[];
  /** kept, deleted at the last checkpoint, and what the policy deletes once the next checkpoint is complete */
  retention?: { keep: number[]; deleted?: number[]; deleteNext: number[] };
  waitingFor?: string;
  /** the tracker the current job resumed from (-1: none), until its first rollout is verified */
  resumeFrom?: number;
  /** the tracker the current job started from (-1: none): a checkpoint at or below it is not new */
  baseline?: number;
  /** nodes the current Ray cluster runs on (head first) */
  activeNodes?: string[];
  quarantined?: string[];
  /** how the job was last stopped (keel 0.5): `not-stopped` means it may still run, unsupervised */
  jobStop?: { jobId: string; how: string; status?: string; detail: string; at: string };
}

export interface PipelineStatus {
  name: string;
  preset?: string;
  phase: PipelinePhase;
  paused: boolean;
  /** training stops at its next checkpoint (requested by an operator) */
  stopAfterCheckpoint?: boolean;
  /** why the run is being cancelled, as the operator gave it */
  cancelReason?: string;
  steps: StepStatus[];
  warnings: { path: string; message: string }[];
  training?: TrainingStatus;
  error?: string;
  /** the Slurm allocation the run holds (Slurm executor only) */
  allocation?: AllocationStatus;
}

/** A run's Slurm allocation: its holder job, and the nodes Slurm gave it. */
export interface AllocationStatus {
  jobName: string;
  jobId?: string;
  state: 'allocating' | 'held' | 'releasing' | 'released';
  /** node name -> address, in Slurm's order */
  nodes?: { name: string; address: string }[];
  /** the job was found by name (an earlier attempt or worker submitted it) */
  adopted?: boolean;
  pendingMs?: number;
  pendingReason?: string;
  /** while allocating: the holder job's Slurm state (PENDING, ...), as `keel status` read it from the activity */
  jobState?: string;
}

/**
 * Steering, as Updates: each answers "accepted" with what will happen, or is refused by its validator with the reason
 * (e.g. `resume` on a run that is not paused). The CLI, the client and the Web UI's "Send Update" use them.
 */
export interface SteeringAnswer {
  accepted: true;
  message: string;
}
/** Running steps finish; no new step starts until `resume`. */
export const pauseUpdate = defineUpdate<SteeringAnswer>('pause');
/** Undo `pause`, or let a training paused by its crash-loop guard restart its job. */
export const resumeUpdate = defineUpdate<SteeringAnswer>('resume');
/** Training: wait for the next checkpoint, then stop the job and end the run cleanly. */
export const stopAfterCheckpointUpdate = defineUpdate<SteeringAnswer>('stopAfterCheckpoint');
/** Stop what keel launched and end the run CANCELED (the run requests its own cancellation through Temporal). */
export const cancelUpdate = defineUpdate<SteeringAnswer, [{ reason?: string } | undefined]>('cancel');

/** The signals of earlier keel versions, still handled for runs and clients of those versions; also pipeline -> training. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const cancelSignal = defineSignal<[{ reason?: string }?]>('cancel');
export const stopAfterCheckpointSignal = defineSignal('stopAfterCheckpoint');
/** Training -> its parent pipeline: the training's phase changed in a way steering must know (paused for an operator). */
export const trainingPhaseSignal = defineSignal<[{ phase: string }]>('trainingPhase');
/** Training: add nodes (host names) to the pool of spares, e.g. while waiting for nodes. */
export const addNodesUpdate = defineUpdate<
  { added: string[] },
  [{ nodes: { host: string; gpus?: number; name?: string }[] }]
>('addNodes');

export const statusQuery = defineQuery<PipelineStatus>('status');
/** The memo key under which a run (pipeline or training) keeps its final record (keel 0.4+; workflows/record.ts). */
export const recordMemoKey = 'keelRecord';
export const trainingStatusQuery = defineQuery<TrainingStatus>('trainingStatus');

export { failureTypes, nonRetryableTypes } from '../src/failure-types.js';
