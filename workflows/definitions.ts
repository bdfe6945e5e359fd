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
    /** when training was running again after this failure */
    recoveredAt?: string;
  }[];
  /** kept, deleted at the last checkpoint, and what the policy deletes once the next checkpoint is complete */
  retention?: { keep: number[]; deleted?: number[]; deleteNext: number[] };
  waitingFor?: string;
  /** the tracker the current job resumed from (-1: none), until its first rollout is verified */
  resumeFrom?: number;
  /** nodes the current Ray cluster runs on (head first) */
  activeNodes?: string[];
  quarantined?: string[];
}

export interface PipelineStatus {
  name: string;
  preset?: string;
  phase: PipelinePhase;
  paused: boolean;
  steps: StepStatus[];
  warnings: { path: string; message: string }[];
  training?: TrainingStatus;
  error?: string;
}

/** Running steps finish; no new step starts until `resume`. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Stop what keel launched, then end the run. */
export const cancelSignal = defineSignal<[{ reason?: string }?]>('cancel');
/** Training: wait for the next checkpoint, then stop the job and end cleanly. */
export const stopAfterCheckpointSignal = defineSignal('stopAfterCheckpoint');
/** Training: add nodes (host names) to the pool of spares, e.g. while waiting for nodes. */
export const addNodesUpdate = defineUpdate<
  { added: string[] },
  [{ nodes: { host: string; gpus?: number; name?: string }[] }]
>('addNodes');

export const statusQuery = defineQuery<PipelineStatus>('status');
export const trainingStatusQuery = defineQuery<TrainingStatus>('trainingStatus');

export { failureTypes, nonRetryableTypes } from '../src/failure-types.js';
