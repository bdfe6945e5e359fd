// A run's record where a user looks without a worker: the final record in the memo (read from history), and the
// current details the Web UI shows on the run's page (markdown, set on change only; details are not history events).
import { getCurrentDetails, patched, setCurrentDetails, upsertMemo } from '@temporalio/workflow';
import { recordMemoKey, type PipelineStatus, type TrainingStatus } from './definitions.js';
import { patches } from './patches.js';

/** Write the run's final record to its memo: called once on every way out but continue-as-new. */
export function keepFinalRecord(record: PipelineStatus | TrainingStatus): void {
  if (patched(patches.finalRecord)) upsertMemo({ [recordMemoKey]: record });
}

/** Show `markdown` as the run's current details in the Web UI, when it changed. */
export function showDetails(markdown: string): void {
  if (getCurrentDetails() !== markdown) setCurrentDetails(markdown);
}

/** The pipeline's current details: its phase and every step's state. */
export function pipelineDetails(status: PipelineStatus): string {
  const steps = status.steps.map(
    (s) => `- ${s.id} (${s.kind}): **${s.state}**${s.attempts > 1 ? `, attempt ${s.attempts}` : ''}`,
  );
  return [
    `**keel run ${status.name}**${status.preset ? ` (preset ${status.preset})` : ''}: ${status.phase}${status.paused ? ', paused' : ''}`,
    '',
    ...steps,
    ...(status.training ? ['', trainingDetails(status.training)] : []),
  ].join('\n');
}

/** Training's current details: phase, rollout x/y, last checkpoint and eval, restarts, what it waits for. */
export function trainingDetails(t: TrainingStatus): string {
  const lastCheckpoint = t.checkpoints.at(-1);
  const lastEval = t.evals.at(-1);
  const lines = [
    `**training**: ${t.phase}`,
    `- rollout ${t.lastRollout ?? '-'} / ${t.numRollout}`,
    `- last checkpoint: ${lastCheckpoint ? `iteration ${lastCheckpoint.iteration}` : 'none yet'}`,
    `- last eval: ${lastEval ? `${lastEval.score} at rollout ${lastEval.rollout}` : 'none yet'}`,
    `- restarts: ${t.restarts}`,
  ];
  if (t.waitingFor) lines.push(`- waiting for: ${t.waitingFor}`);
  return lines.join('\n');
}
