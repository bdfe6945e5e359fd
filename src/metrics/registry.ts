// keel's Prometheus metrics (prom-client): the worker process's own (CPU, memory, event loop), the per-run figures of
// a snapshot and how the scrape went. docs/metrics.md describes each one; keep the two in step.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { RunsSnapshot } from './collect.js';

export class KeelMetrics {
  readonly registry = new Registry();
  /** every metric set from a snapshot: all are cleared before each snapshot is applied */
  private readonly fromSnapshot: (Gauge | Counter)[] = [];

  private readonly g = (name: string, help: string, labelNames: string[] = ['run']) =>
    this.track(new Gauge({ name, help, labelNames, registers: [this.registry] }));
  private readonly c = (name: string, help: string, labelNames: string[] = ['run']) =>
    this.track(new Counter({ name, help, labelNames, registers: [this.registry] }));

  private readonly runInfo = this.g('keel_run_info', 'A running keel pipeline (value 1), by its preset', [
    'run',
    'preset',
  ]);
  private readonly runPhase = this.g('keel_run_phase', "The pipeline's phase (value 1 for the current one)", [
    'run',
    'phase',
  ]);
  private readonly up = this.g(
    'keel_training_status_up',
    'Whether the training answered its status query in this scrape (1) or not (0: no worker, timed out)',
  );
  private readonly phase = this.g('keel_training_phase', "The training's phase (value 1 for the current one)", [
    'run',
    'phase',
  ]);
  private readonly rollout = this.g('keel_training_rollout', 'The last rollout the trainer logged');
  private readonly numRollout = this.g(
    'keel_training_num_rollout',
    'Rollouts the run trains in all (rollout.numRollout)',
  );
  private readonly saveInterval = this.g(
    'keel_training_save_interval_rollouts',
    'Rollouts between two checkpoints (ckpt.saveInterval)',
  );
  private readonly lastCheckpoint = this.g(
    'keel_training_last_checkpoint_rollout',
    'The rollout of the last checkpoint keel recorded',
  );
  private readonly checkpointAge = this.g(
    'keel_training_last_checkpoint_age_seconds',
    'Seconds since the last checkpoint was recorded (before the first: since the training run started)',
  );
  private readonly checkpointInterval = this.g(
    'keel_training_checkpoint_interval_seconds',
    'The median gap between the last recorded checkpoints (after three checkpoints)',
  );
  private readonly evalScore = this.g('keel_training_last_eval_score', 'The last eval score the trainer logged');
  private readonly evalRollout = this.g('keel_training_last_eval_rollout', 'The rollout of the last eval score');
  private readonly progressAge = this.g(
    'keel_training_last_progress_age_seconds',
    'Seconds since the supervision last saw the trainer progress (only while it supervises a job)',
  );
  private readonly submissions = this.c('keel_training_submissions_total', 'Ray jobs submitted for the training');
  private readonly restarts = this.c(
    'keel_training_restarts_total',
    'Times the training restarted its job after a failure',
  );
  private readonly failures = this.c('keel_training_failures_total', 'Training failures, by kind', ['run', 'kind']);
  private readonly lostSeconds = this.g(
    'keel_training_lost_seconds',
    'Seconds without training progress because of failures: last progress before each failure to the first rollout after it',
  );
  private readonly rolloutsLost = this.c(
    'keel_training_rollouts_lost_total',
    'Rollouts trained after the last checkpoint before a failure (redone after the resume)',
  );
  private readonly redoSeconds = this.g(
    'keel_training_redo_seconds',
    "The lost rollouts' time at the run's healthy pace (as keel status accounts it)",
  );
  private readonly recoverySeconds = this.c(
    'keel_training_recovery_seconds_total',
    "Restarts' seconds by part, each counted once it ended: detection, keel (classify, heal, resubmit until the job runs), trainer_startup",
    ['run', 'part'],
  );
  private readonly nodes = this.g(
    'keel_training_nodes',
    'Nodes of the run by state: healthy (in the Ray cluster), quarantined, spare',
    ['run', 'state'],
  );
  private readonly scrapeSeconds = this.g(
    'keel_metrics_scrape_duration_seconds',
    'Seconds the last scrape took to read the runs',
    [],
  );
  private readonly runs = this.g('keel_metrics_runs', 'Running workflows the last scrape reported, by type', ['type']);
  private readonly truncated = this.g(
    'keel_metrics_runs_truncated',
    'Whether more runs were running than one scrape reports (1): raise --metrics-max-runs',
    [],
  );
  private readonly listUp = this.g(
    'keel_metrics_list_up',
    'Whether listing the running workflows worked (1) or not (0)',
    [],
  );
  private readonly sdkUp = this.g(
    'keel_metrics_sdk_up',
    "Whether the Temporal SDK's own metrics were read for this scrape (1) or not (0)",
    [],
  );

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  private track<M extends Gauge | Counter>(metric: M): M {
    this.fromSnapshot.push(metric);
    return metric;
  }

  setSdkUp(up: boolean): void {
    this.sdkUp.set(up ? 1 : 0);
  }

  /** Replace every per-run series with those of this snapshot (a run that ended leaves no series behind). */
  update(snapshot: RunsSnapshot): void {
    for (const metric of this.fromSnapshot) metric.reset();

    for (const p of snapshot.pipelines) {
      this.runInfo.set({ run: p.run, preset: p.preset ?? '' }, 1);
      if (p.phase) this.runPhase.set({ run: p.run, phase: p.phase }, 1);
    }
    for (const t of snapshot.trainings) {
      const run = { run: t.run };
      this.up.set(run, t.figures ? 1 : 0);
      const f = t.figures;
      if (!f) continue;
      this.phase.set({ ...run, phase: f.phase }, 1);
      this.numRollout.set(run, f.numRollout);
      this.checkpointAge.set(run, f.lastCheckpointAgeSeconds);
      const optional: [Gauge, number | undefined][] = [
        [this.rollout, f.rollout],
        [this.saveInterval, f.saveInterval],
        [this.lastCheckpoint, f.lastCheckpoint],
        [this.checkpointInterval, f.checkpointIntervalSeconds],
        [this.evalScore, f.lastEvalScore],
        [this.evalRollout, f.lastEvalRollout],
        [this.progressAge, f.lastProgressAgeSeconds],
        [this.redoSeconds, f.redoSeconds],
      ];
      for (const [gauge, value] of optional) if (value !== undefined) gauge.set(run, value);
      this.submissions.inc(run, f.submissions);
      this.restarts.inc(run, f.restarts);
      for (const [kind, count] of Object.entries(f.failuresByKind)) this.failures.inc({ ...run, kind }, count);
      this.lostSeconds.set(run, f.secondsLost);
      this.rolloutsLost.inc(run, f.rolloutsLost);
      for (const [part, value] of Object.entries(f.recoverySeconds)) this.recoverySeconds.inc({ ...run, part }, value);
      if (f.nodes) for (const [state, count] of Object.entries(f.nodes)) this.nodes.set({ ...run, state }, count);
    }
    this.scrapeSeconds.set(snapshot.seconds);
    this.runs.set({ type: 'pipeline' }, snapshot.pipelines.length);
    this.runs.set({ type: 'training' }, snapshot.trainings.length);
    this.truncated.set(snapshot.truncated ? 1 : 0);
    this.listUp.set(snapshot.listError ? 0 : 1);
  }
}
