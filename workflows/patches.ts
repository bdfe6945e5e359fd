// Patch ids: every change of workflow behaviour that a run started by an earlier keel version would replay
// differently is guarded by `patched(id)`. Listed once; an id is never reused or renamed. When no live run can be
// older than a patch, `deprecatePatch(id)` replaces it, and a later release removes the old branch (docs/upgrading.md).
export const patches = {
  /**
   * keel 0.2: the spec is resolved and planned in an activity (`prepareRun`), steering is by Updates, a run that is
   * cancelled ends CANCELED, and training is cancelled (not terminated) when its pipeline closes.
   */
  preparedRuns: 'keel-0.2-prepared-runs',
  /**
   * keel 0.3: after a failure training heals only what the failure touched (Ray is kept on every healthy node; a full
   * restart when the last such heal did not bring training back), and each restart records its recovery timeline.
   */
  recovery: 'keel-0.3-recovery',
  /**
   * keel 0.3: runs whose spec has `notify` webhooks schedule `sendNotification` activities -- training when it is
   * paused for an operator, resumed, waiting for nodes, a node is quarantined, a checkpoint or an eval (opt-in); the
   * pipeline when it completes or fails (workflows/notify.ts). Checked only when the spec has webhooks.
   */
  notifications: 'keel-0.3-notifications',
  /**
   * keel 0.4: the pipeline and training write their final record (steps, or the training record: checkpoints, evals,
   * rewards, failures and their recovery timeline) to the memo `keelRecord` as they end, however they end (completed,
   * failed, cancelled), so that `keel status` and `keel report` read a finished run with no worker (workflows/record.ts).
   */
  finalRecord: 'keel-0.4-final-record',
  /**
   * keel 0.4: checkpoint retention runs beside supervision (its own heartbeating activity, started when a checkpoint
   * is recorded) instead of before the next supervision: deleting a checkpoint of terabytes no longer pauses the
   * watch over the job. One retention at a time; training awaits it before it ends or continues as new.
   */
  retentionBeside: 'keel-0.4-retention-beside-supervision',
  /**
   * keel 0.4: a run whose executor is Slurm holds one allocation (a holder batch job named after the run, adopted by
   * name) from before its first step until it ends, however it ends (workflows/slurm.ts). Checked only for Slurm specs.
   */
  slurmAllocation: 'keel-0.4-slurm-allocation',
  /**
   * keel 0.5: operators steer a run only through validated Updates. Their handlers exist from the run's first workflow
   * task: one sent before the run is prepared is held, and answered once it is (workflows/steering.ts). The signals of
   * keel 0.1's clients are no longer handled by new runs.
   */
  steeringByUpdates: 'keel-0.5-steering-by-updates',
  /** keel 0.5: training's own re-attach loop around supervision ends at once on a permanent (non-retryable) failure. */
  trainingRetryPermanent: 'keel-0.5-training-retry-permanent',
  /**
   * keel 0.5: a Slurm run starts a guard child workflow (`slurmAllocationGuard`) once its allocation runs; Temporal
   * cancels the guard when the run closes, terminated too, and the guard ends the run's job (workflows/slurm.ts).
   */
  slurmReleaseGuard: 'keel-0.5-slurm-release-guard',
  /**
   * keel 0.5: a training job that neither the dashboard nor the fallback on the head stopped is announced to the
   * run's webhooks (`job-not-stopped`). The stop's outcome itself is recorded in training's state (no command).
   */
  jobStop: 'keel-0.5-job-stop',
  /**
   * keel 0.6: a Slurm run waiting for its allocation shows it in the Web UI (KeelPhase `allocating`), and after
   * `cluster.executor.notifyPendingAfter` announces the wait with Slurm's reason (`allocation-pending`).
   */
  slurmPending: 'keel-0.6-slurm-pending',
} as const;
