// `keel report`: a run's recorded state -> one chart (Vega-Lite, rendered to SVG in Node without a browser): eval score
// and reward against rollout with checkpoints and restarts marked, and the step timeline. Every drawn point carries
// an exact description (its aria-label in the SVG), so a reader or a test can check the chart against the run.
import type { TopLevelSpec } from 'vega-lite';
import type { RunStatus } from '../client/index.js';
import { healthyPace, restartAccounts } from '../progress/recovery.js';

export interface ReportData {
  workflowId: string;
  runStatus: string;
  /** how many executions of the run name the report covers (re-runs, continuations) */
  executions: number;
  evals: { rollout: number; score: number }[];
  rewards: { rollout: number; reward: number }[];
  checkpoints: { iteration: number; at: string; evalScore?: number }[];
  /** a failure training restarted after: where it broke (rollout) and the checkpoint it resumed from */
  restarts: { at: string; rollout: number; tracker?: number; kind: string }[];
  /** where each restart's time went (a stacked bar per restart; src/progress/recovery.ts defines the segments) */
  recovery: { restart: string; segment: RecoverySegment; seconds: number }[];
  /** where a later execution's training began (its first rollout): the boundary between two executions */
  boundaries: { rollout: number; execution: number }[];
  steps: { id: string; state: string; start: string; end: string }[];
}

/**
 * The chart's data from a run's status, or from every execution of a run name (oldest first): a rollout recorded by
 * several executions (a continuation re-runs what followed its checkpoint) shows its latest value. `now` ends the bars
 * of steps still running.
 */
export function reportData(input: RunStatus | RunStatus[], now = new Date()): ReportData {
  const executions = Array.isArray(input) ? input : [input];
  const last = executions.at(-1);
  const evals = new Map<number, number>();
  const rewards = new Map<number, number>();
  const checkpoints = new Map<number, ReportData['checkpoints'][number]>();
  const data: ReportData = {
    workflowId: last?.workflowId ?? '',
    runStatus: last?.runStatus ?? 'UNKNOWN',
    executions: executions.length,
    evals: [],
    rewards: [],
    checkpoints: [],
    restarts: [],
    recovery: [],
    boundaries: [],
    steps: [],
  };
  executions.forEach((status, index) => {
    const training = status.training;
    const rollouts = [...(training?.evals ?? []), ...(training?.rewards ?? [])].map((p) => p.rollout);
    if (index > 0 && rollouts.length) data.boundaries.push({ rollout: Math.min(...rollouts), execution: index + 1 });
    for (const e of training?.evals ?? []) evals.set(e.rollout, e.score);
    for (const r of training?.rewards ?? []) rewards.set(r.rollout, r.reward);
    for (const c of training?.checkpoints ?? []) {
      checkpoints.set(c.iteration, { iteration: c.iteration, at: c.at, evalScore: c.evalScore });
    }
    // A failure that ends the run (config error, resume mismatch) is not a restart.
    data.restarts.push(
      ...(training?.failures ?? [])
        .filter((f) => f.kind !== 'config-error' && f.kind !== 'resume-mismatch')
        .map((f) => ({
          at: f.at,
          rollout: f.lastRollout ?? (f.tracker ?? -1) + 1,
          ...(f.tracker !== undefined ? { tracker: f.tracker } : {}),
          kind: f.kind,
        })),
    );
    data.recovery.push(...recoveryBars(training, new Set(data.recovery.map((r) => r.restart)).size));
    const prefix = executions.length > 1 ? `run ${index + 1}: ` : '';
    data.steps.push(
      ...(status.pipeline?.steps ?? [])
        .filter((s) => s.startedAt)
        .map((s) => ({
          id: `${prefix}${s.id}`,
          state: s.state,
          start: s.startedAt!,
          end: s.endedAt ?? now.toISOString(),
        })),
    );
  });
  const byKey = <T>(m: Map<number, T>) => [...m].sort(([a], [b]) => a - b).map(([, v]) => v);
  data.evals = byKey(new Map([...evals].map(([rollout, score]) => [rollout, { rollout, score }])));
  data.rewards = byKey(new Map([...rewards].map(([rollout, reward]) => [rollout, { rollout, reward }])));
  data.checkpoints = byKey(checkpoints);
  return data;
}

export type RecoverySegment = 'detection' | 'keel' | 'trainer start-up' | 'rollouts re-done';

/** `numberedBefore`: restarts drawn for earlier executions (numbering goes on across them). */
function recoveryBars(training: RunStatus['training'], numberedBefore = 0): ReportData['recovery'] {
  if (!training) return [];
  const pace = healthyPace(training);
  return restartAccounts(training).flatMap((r, i) => {
    const restart = `#${numberedBefore + i + 1} ${r.kind} at rollout ${r.rollout ?? '-'}`;
    const segments: [RecoverySegment, number | undefined][] = [
      ['detection', r.detection],
      ['keel', r.keel],
      ['trainer start-up', r.trainerStartup],
      ['rollouts re-done', pace === undefined ? undefined : r.rolloutsLost * pace],
    ];
    return segments
      .filter((seg): seg is [RecoverySegment, number] => seg[1] !== undefined)
      .map(([segment, seconds]) => ({ restart, segment, seconds }));
  });
}

/** The exact text of each drawn mark (the SVG's aria-label): `<what> rollout=<n> value=<number as JS prints it>`. */
export const markLabel = {
  eval: (rollout: number, score: number) => `eval rollout=${rollout} score=${score}`,
  reward: (rollout: number, reward: number) => `reward rollout=${rollout} reward=${reward}`,
  checkpoint: (iteration: number) => `checkpoint iteration=${iteration}`,
  restart: (rollout: number, kind: string) => `restart rollout=${rollout} kind=${kind}`,
  step: (id: string, state: string) => `step ${id} ${state}`,
  boundary: (rollout: number, execution: number) => `boundary rollout=${rollout} execution=${execution}`,
  recovery: (restart: string, segment: string, seconds: number) => `recovery ${restart} ${segment} seconds=${seconds}`,
};

const width = 720;

export function reportSpec(data: ReportData): TopLevelSpec {
  const series = [
    ...data.evals.map((e) => ({
      rollout: e.rollout,
      value: e.score,
      series: 'eval score',
      label: markLabel.eval(e.rollout, e.score),
    })),
    ...data.rewards.map((r) => ({
      rollout: r.rollout,
      value: r.reward,
      series: 'reward',
      label: markLabel.reward(r.rollout, r.reward),
    })),
  ];
  const x = { field: 'rollout', type: 'quantitative' as const, title: 'rollout' };
  const byRollout = {
    width,
    height: 280,
    title: 'eval score and reward by rollout',
    layer: [
      {
        data: { values: series },
        mark: { type: 'line', point: true },
        encoding: {
          x,
          y: { field: 'value', type: 'quantitative', title: 'score / reward' },
          color: { field: 'series', type: 'nominal', title: null },
          description: { field: 'label' },
        },
      },
      {
        data: {
          values: data.checkpoints.map((c) => ({ rollout: c.iteration, label: markLabel.checkpoint(c.iteration) })),
        },
        mark: { type: 'rule', strokeDash: [4, 3], color: '#888' },
        encoding: { x, description: { field: 'label' } },
      },
      {
        data: {
          values: data.restarts.map((r) => ({ rollout: r.rollout, label: markLabel.restart(r.rollout, r.kind) })),
        },
        mark: { type: 'rule', color: '#d62728', strokeWidth: 2 },
        encoding: { x, description: { field: 'label' } },
      },
      {
        data: {
          values: data.boundaries.map((b) => ({
            rollout: b.rollout,
            label: markLabel.boundary(b.rollout, b.execution),
          })),
        },
        mark: { type: 'rule', color: '#2ca02c', strokeWidth: 2, strokeDash: [8, 4] },
        encoding: { x, description: { field: 'label' } },
      },
      {
        data: { values: data.boundaries.map((b) => ({ rollout: b.rollout, text: `run ${b.execution} from here` })) },
        mark: { type: 'text', angle: 270, align: 'right', baseline: 'top', dy: 4, fontSize: 10, color: '#2ca02c' },
        encoding: { x, y: { value: 160 }, text: { field: 'text' } },
      },
      // labels: checkpoints along the top, restarts lower down in red (they may share a rollout with a checkpoint)
      {
        data: { values: data.checkpoints.map((c) => ({ rollout: c.iteration, text: `ckpt ${c.iteration}` })) },
        mark: { type: 'text', angle: 270, align: 'right', baseline: 'bottom', dy: -2, fontSize: 10, color: '#555' },
        encoding: { x, y: { value: 4 }, text: { field: 'text' } },
      },
      {
        data: { values: data.restarts.map((r) => ({ rollout: r.rollout, text: `restart (${r.kind})` })) },
        mark: { type: 'text', angle: 270, align: 'right', baseline: 'top', dy: 4, fontSize: 10, color: '#d62728' },
        encoding: { x, y: { value: 80 }, text: { field: 'text' } },
      },
    ],
  };
  const timeline = {
    width,
    height: Math.max(60, 22 * data.steps.length),
    title: 'steps',
    data: { values: data.steps.map((s) => ({ ...s, label: markLabel.step(s.id, s.state) })) },
    mark: { type: 'bar' as const },
    encoding: {
      y: { field: 'id', type: 'nominal' as const, sort: null, title: null },
      // UTC, 24-hour, dated: a run is read from anywhere, and long runs span days
      x: {
        field: 'start',
        type: 'temporal' as const,
        title: 'time (UTC)',
        scale: { type: 'utc' as const },
        axis: { format: '%Y-%m-%d %H:%M', labelAngle: -30 },
      },
      x2: { field: 'end' },
      color: { field: 'state', type: 'nominal' as const, title: 'state' },
      description: { field: 'label' },
    },
  };
  const segments: RecoverySegment[] = ['detection', 'keel', 'trainer start-up', 'rollouts re-done'];
  const recovery = {
    width,
    height: Math.max(60, 26 * new Set(data.recovery.map((r) => r.restart)).size),
    title: 'where each restart went (seconds)',
    data: {
      values: data.recovery.map((r) => ({
        ...r,
        order: segments.indexOf(r.segment),
        label: markLabel.recovery(r.restart, r.segment, r.seconds),
      })),
    },
    mark: { type: 'bar' as const },
    encoding: {
      y: { field: 'restart', type: 'nominal' as const, sort: null, title: null, axis: { labelLimit: 320 } },
      x: { field: 'seconds', type: 'quantitative' as const, stack: 'zero' as const, title: 'seconds' },
      color: { field: 'segment', type: 'nominal' as const, title: 'part', scale: { domain: segments } },
      order: { field: 'order', type: 'quantitative' as const },
      description: { field: 'label' },
    },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `keel run ${data.workflowId}`,
      subtitle: `${data.runStatus.toLowerCase()}${data.executions > 1 ? `, ${data.executions} executions` : ''}`,
    },
    config: { font: 'DejaVu Sans, sans-serif' },
    vconcat: data.recovery.length ? [byRollout, recovery, timeline] : [byRollout, timeline],
    resolve: { scale: { color: 'independent' } },
  } as TopLevelSpec;
}
