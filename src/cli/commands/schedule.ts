// keel schedule create|list|describe|pause|unpause|trigger|delete: scheduled retraining (Temporal Schedules).
import type { Command } from 'commander';
import type { KeelClient } from '../../client/index.js';
import { absolutize } from '../../spec/paths.js';
import { loadSpecOrExit, withSpecOptions, type SpecOptions } from './spec.js';
import { connectionFlags, withClient, type ServerOptions } from '../connection-flags.js';

export function registerScheduleCommands(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('scheduled retraining: continue from the latest checkpoint, promote if better');
  connectionFlags(withSpecOptions(schedule.command('create')), { specFlag: false })
    .description('create a schedule that starts the retrain workflow (overlap: skip)')
    .option('--every <interval>', "interval, e.g. '7d' or '12h'")
    .option('--cron <expr>', 'cron expression, e.g. "0 3 * * 1"')
    .option('--rollouts <n>', 'rollouts each retraining adds after the latest checkpoint', '100')
    .option('--prompt-data <path>', 'prompt data for the retraining rounds')
    .option('--id <scheduleId>', 'schedule id (default keel-retrain-<name>)')
    .action(
      async (
        file: string | undefined,
        options: SpecOptions &
          ServerOptions & { every?: string; cron?: string; rollouts: string; promptData?: string; id?: string },
      ) => {
        const spec = absolutize(await loadSpecOrExit(file, options), process.cwd());
        await withClient(
          options,
          async (client) => {
            const id = await client.schedules.create({
              spec,
              every: options.every,
              cron: options.cron,
              rollouts: Number(options.rollouts),
              promptData: options.promptData,
              scheduleId: options.id,
            });
            console.log(id);
          },
          spec.temporal,
        );
      },
    );
  connectionFlags(schedule.command('list'))
    .description('schedules, with their next start')
    .action(async (options: ServerOptions) => {
      await withClient(options, async (client) => {
        for (const s of await client.schedules.list()) {
          console.log(
            `${s.scheduleId.padEnd(32)} ${s.paused ? 'paused ' : 'active '} next ${s.nextActionTimes[0]?.toISOString() ?? '-'}`,
          );
        }
      });
    });
  connectionFlags(schedule.command('describe'))
    .argument('<id>')
    .description('a schedule: state, recent and next starts')
    .action(async (id: string, options: ServerOptions) => {
      await withClient(options, async (client) =>
        console.log(JSON.stringify(await client.schedules.describe(id), null, 2)),
      );
    });
  const verbs: [string, string, (c: KeelClient, id: string) => Promise<void>][] = [
    ['pause', 'pause a schedule', (c, id) => c.schedules.pause(id)],
    ['unpause', 'unpause a schedule', (c, id) => c.schedules.unpause(id)],
    ['trigger', 'start a retraining now (skipped if one is running)', (c, id) => c.schedules.trigger(id)],
    ['delete', 'delete a schedule (runs already started go on)', (c, id) => c.schedules.delete(id)],
  ];
  for (const [name, description, fn] of verbs) {
    connectionFlags(schedule.command(name))
      .argument('<id>')
      .description(description)
      .action(async (id: string, options: ServerOptions) => {
        await withClient(options, (client) => fn(client, id));
        console.log(`${name}: ${id}`);
      });
  }
}
