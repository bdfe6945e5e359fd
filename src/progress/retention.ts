// Which checkpoints to keep. Pure (no I/O), so workflow code may call it; deleting is an activity's work.
//
// Never deleted: the tracker's iteration, the one being written and the promoted one (retraining's promoted.json: the
// checkpoint an operator may be serving). Kept: the best `keepBest` by eval score, every
// iteration with (iteration + 1) % keepEvery === 0 (slime saves at rollout ids 19, 39, ...: keepEvery counts rollouts),
// and the last `keepLast` complete ones. An incomplete directory (partial save, damaged) is deleted only once a newer
// complete checkpoint exists: until then it may be the save in progress.

export type RetentionReason =
  'tracker' | 'writing' | 'promoted' | 'best' | 'every' | 'last' | 'awaiting-newer-checkpoint';

export interface RetentionCandidate {
  iteration: number;
  complete: boolean;
  /** The eval score logged for this iteration (higher is better); undefined when not evaluated. */
  score?: number | undefined;
}

export interface RetentionInput {
  iterations: RetentionCandidate[];
  tracker: number | 'release' | undefined;
  writing?: number | undefined;
  /** the promoted checkpoint (promoted.json), never deleted */
  promoted?: number | undefined;
  keepLast: number;
  keepEvery?: number | undefined;
  keepBest?: number | undefined;
}

export interface RetentionPlan {
  keep: { iteration: number; reasons: RetentionReason[] }[];
  delete: number[];
}

export function planRetention(input: RetentionInput): RetentionPlan {
  const { keepLast, keepEvery = 0, keepBest = 0 } = input;
  for (const [name, value] of Object.entries({ keepLast, keepEvery, keepBest })) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer`);
  }
  const byIteration = new Map<number, RetentionCandidate>();
  for (const candidate of input.iterations) {
    const seen = byIteration.get(candidate.iteration);
    if (!seen || (!seen.complete && candidate.complete)) byIteration.set(candidate.iteration, candidate);
  }
  const all = [...byIteration.values()].sort((a, b) => a.iteration - b.iteration);
  const complete = all.filter((candidate) => candidate.complete);
  const newestComplete = complete.at(-1)?.iteration;

  const reasons = new Map<number, RetentionReason[]>();
  const keep = (iteration: number, reason: RetentionReason) => {
    const list = reasons.get(iteration) ?? [];
    if (!list.includes(reason)) list.push(reason);
    reasons.set(iteration, list);
  };

  for (const candidate of all) {
    if (candidate.iteration === input.tracker) keep(candidate.iteration, 'tracker');
    if (candidate.iteration === input.writing) keep(candidate.iteration, 'writing');
    if (candidate.iteration === input.promoted) keep(candidate.iteration, 'promoted');
    if (!candidate.complete && (newestComplete === undefined || newestComplete < candidate.iteration)) {
      keep(candidate.iteration, 'awaiting-newer-checkpoint');
    }
  }
  const scored = complete
    .filter((candidate) => typeof candidate.score === 'number' && !Number.isNaN(candidate.score))
    .sort((a, b) => b.score! - a.score! || b.iteration - a.iteration);
  for (const candidate of scored.slice(0, keepBest)) keep(candidate.iteration, 'best');
  if (keepEvery > 0) {
    for (const candidate of complete)
      if ((candidate.iteration + 1) % keepEvery === 0) keep(candidate.iteration, 'every');
  }
  for (const candidate of complete.slice(Math.max(0, complete.length - keepLast))) keep(candidate.iteration, 'last');

  return {
    keep: all
      .filter((candidate) => reasons.has(candidate.iteration))
      .map((candidate) => ({ iteration: candidate.iteration, reasons: reasons.get(candidate.iteration)! })),
    delete: all.filter((candidate) => !reasons.has(candidate.iteration)).map((candidate) => candidate.iteration),
  };
}

/**
 * What the policy will delete once the next checkpoint (`saveInterval` rollouts after the newest) is complete:
 * the plan for the directories left after `current`, with that checkpoint added as the tracker's.
 */
export function planNextDeletion(input: RetentionInput & { saveInterval: number }, current: RetentionPlan): number[] {
  if (!Number.isInteger(input.saveInterval) || input.saveInterval < 1)
    throw new RangeError('saveInterval must be a positive integer');
  const remaining = input.iterations.filter((candidate) => !current.delete.includes(candidate.iteration));
  const newest =
    typeof input.tracker === 'number'
      ? input.tracker
      : Math.max(-1, ...remaining.filter((c) => c.complete).map((c) => c.iteration));
  const next = newest + input.saveInterval;
  const plan = planRetention({
    ...input,
    iterations: [...remaining, { iteration: next, complete: true }],
    tracker: next,
    writing: undefined,
  });
  return plan.delete.filter((iteration) => iteration !== next);
}
