// keel report ID --out FILE: the run's eval score and reward by rollout (checkpoints and restarts marked) and its step
// timeline, as SVG, PNG or a self-contained HTML page.
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
    .action(async (id: string, options: ServerOptions & { out: string }) => {
      const format = reportFormatOf(options.out);
      if (!format) {
        console.error(`keel report: --out must end in .svg, .png or .html, not '${options.out}'`);
        process.exit(2);
      }
      await withClient(options, async (client) => {
        const status = await client.status(id);
        const trainStarted = status.pipeline?.steps.some((s) => s.kind === 'train' && s.startedAt);
        if (!status.pipeline || (trainStarted && !status.training)) {
          // Queries on a run (finished or not) are answered by a worker replaying it.
          console.error(
            `keel report: could not read the recorded state of ${id} (${status.runStatus}); is a worker polling task queue keel (keel worker)?`,
          );
          process.exit(1);
        }
        const data = reportData(status);
        await writeFile(options.out, await renderReport(data, format));
        console.log(
          `${options.out}: ${data.evals.length} evals, ${data.rewards.length} rewards, ${data.checkpoints.length} checkpoints, ${data.restarts.length} restarts, ${data.steps.length} steps`,
        );
      });
    });
}
