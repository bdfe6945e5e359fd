// The `keel` command line. Each command lives in its own module under ./commands and registers itself here.
import { Command } from 'commander';
import { registerSpecCommands } from './commands/spec.js';
import { registerRunCommands } from './commands/run.js';
import { registerLocalCommands } from './commands/local.js';
import { registerScheduleCommands } from './commands/schedule.js';
import { registerReportCommand } from './commands/report.js';
import { registerFp8Commands } from './commands/fp8.js';

const program = new Command('keel')
  .description('Durable RL post-training pipelines (slime / Megatron / Ray) on Temporal')
  .showHelpAfterError();

registerSpecCommands(program);
registerRunCommands(program);
registerLocalCommands(program);
registerScheduleCommands(program);
registerReportCommand(program);
registerFp8Commands(program);

await program.parseAsync(process.argv);
