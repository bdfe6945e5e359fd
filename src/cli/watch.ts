// `keel watch`: progress bars for steps and rollouts, a line per event, an eval trend; exit code 0 when the run
// succeeded. Without a terminal it prints the event lines only.
import cliProgress from 'cli-progress';
import type { KeelClient, RunStatus } from '../client/index.js';
import { printable } from './printable.js';

function evalTrend(scores: number[]): string {
  const ticks = '▁▂▃▄▅▆▇█';
  if (scores.length === 0) return '';
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  return scores.map((s) => ticks[hi === lo ? 3 : Math.round(((s - lo) / (hi - lo)) * (ticks.length - 1))]).join('');
}

export async function watchRun(
  client: KeelClient,
  workflowId: string,
  out: NodeJS.WriteStream = process.stdout,
): Promise<number> {
  const tty = Boolean(out.isTTY);
  const bars = tty
    ? new cliProgress.MultiBar(
        { format: ' {label} |{bar}| {value}/{total} {detail}', hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let stepsBar: cliProgress.SingleBar | undefined;
  let rolloutBar: cliProgress.SingleBar | undefined;
  const say = (line: string) => (bars ? bars.log(`${line}\n`) : out.write(`${line}\n`));
  let final: RunStatus | undefined;
  const evals: number[] = [];
  let paceFrom: { at: number; rollout: number } | undefined;
  /** "next checkpoint at 39 in ~42 s", from the rollout pace seen while watching */
  const nextCheckpoint = (t: NonNullable<RunStatus['training']>): string => {
    if (!t.saveInterval || t.lastRollout === undefined) return '';
    paceFrom ??= { at: Date.now(), rollout: t.lastRollout };
    const next = Math.min(
      t.numRollout - 1,
      (Math.floor((t.lastRollout + 1) / t.saveInterval) + 1) * t.saveInterval - 1,
    );
    const done = t.lastRollout - paceFrom.rollout;
    const eta = done > 0 ? ((Date.now() - paceFrom.at) / done) * (next - t.lastRollout) : undefined;
    return `, next checkpoint at ${next}${eta === undefined ? '' : ` in ~${Math.round(eta / 1000)} s`}`;
  };
  try {
    for await (const event of client.watch(workflowId)) {
      switch (event.type) {
        case 'status': {
          const steps = event.status.pipeline?.steps ?? [];
          const done = steps.filter((s) => s.state === 'succeeded' || s.state === 'skipped').length;
          if (bars && steps.length) {
            stepsBar ??= bars.create(steps.length, 0, { label: 'steps   ', detail: '' });
            stepsBar.update(done, {
              detail: steps
                .filter((s) => s.state === 'running')
                .map((s) => s.id)
                .join(', '),
            });
          }
          const t = event.status.training;
          if (bars && t) {
            rolloutBar ??= bars.create(t.numRollout, 0, { label: 'rollouts', detail: '' });
            const last = t.checkpoints.at(-1);
            rolloutBar.update((t.lastRollout ?? -1) + 1, {
              detail: `${t.phase}${last ? `, checkpoint ${last.iteration}` : ''}${nextCheckpoint(t)}${evals.length ? `, eval ${evalTrend(evals)} ${evals.at(-1)!.toFixed(3)}` : ''}`,
            });
          }
          break;
        }
        case 'step':
          say(`step ${event.step}: ${event.state}${event.reason ? ` (${printable(event.reason)})` : ''}`);
          break;
        case 'rollout':
          if (!bars && (event.rollout + 1) % 10 === 0) say(`rollout ${event.rollout + 1}/${event.numRollout}`);
          break;
        case 'checkpoint':
          if (event.evalScore !== undefined) evals.push(event.evalScore);
          say(
            `checkpoint ${event.iteration}${event.evalScore !== undefined ? `, eval ${event.evalScore.toFixed(3)}  ${evalTrend(evals)}` : ''}`,
          );
          break;
        case 'ended':
          final = event.status;
          break;
      }
    }
  } finally {
    bars?.stop();
  }
  out.write(
    `${workflowId}: ${final?.runStatus ?? 'unknown'}${final?.failure ? `: ${printable(final.failure)}` : ''}\n`,
  );
  return final?.runStatus === 'COMPLETED' ? 0 : 1;
}
