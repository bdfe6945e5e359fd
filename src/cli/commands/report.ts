// keel report ID --out FILE: the run's eval score and reward by rollout (checkpoints, restarts and the boundaries
// between its executions marked) and its step timeline, as SVG, PNG or a self-contained HTML page. It covers every
// execution of the run name (re-runs, continuations), or one with --execution; read from the run's history when no
// worker polls.
import type { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { reportData } from '../../report/chart.js';
import { renderReport, reportFormatOf } from '../../report/render.js';
import { connectionFlags, withClient, type ServerOptions } from './run.js';

export function registerReportCommand(program: Command): void {
  connectionFlags(program.command('report'))
    .description('chart a run: eval score and reward by rollout, checkpoints and restarts marked, step timeline')
    .argument('<id>', 'workflow id of the run (e.g. keel-tiny-local)')
    .requiredOption('--out <file>', 'output file: .svg, .png or .html (format from the extension)')
    .option('--execution <runId>', 'chart one execution (its run id) instead of every execution of the run name')
    .action(async (id: string, options: ServerOptions & { out: string; execution?: string }) => {
      const format = reportFormatOf(options.out);
      if (!format) {
        console.error(`keel report: --out must end in .svg, .png or .html, not '${options.out}'`);
        process.exit(2);
      }
      await withClient(options, async (client) => {
        const executions = options.execution
          ? [await client.status(id, { runId: options.execution })]
          : await client.history(id);
        if (executions.length === 0) {
          console.error(`keel report: no run named ${id}`);
          process.exit(1);
        }
        const unread = executions.filter((e) => !e.pipeline && !e.training);
        if (unread.length === executions.length) {
          console.error(
            `keel report: nothing of ${id} is recorded yet (${executions.at(-1)!.runStatus}): a run is recorded in its history when it ends, and a worker (keel worker) answers before`,
          );
          process.exit(1);
        }
        const data = reportData(executions);
        await writeFile(options.out, await renderReport(data, format));
        const fromHistory = executions.some((e) => e.source === 'history');
        console.log(
          `${options.out}: ${data.evals.length} evals, ${data.rewards.length} rewards, ${data.checkpoints.length} checkpoints, ${data.restarts.length} restarts, ${data.steps.length} steps` +
            (data.executions > 1 ? `, ${data.executions} executions` : '') +
            (fromHistory ? " (read from the run's history)" : ''),
        );
        for (const e of executions) if (e.partial) console.log(`  execution ${e.runId}: not recorded: ${e.partial}`);
      });
    });
}
