// Executors (local, ssh, slurm) for one node, and gangs of nodes.
export * from './types.js';
export * from './errors.js';
export { LocalExecutor, type LocalExecutorOptions } from './local.js';
export { SshExecutor, type SshExecutorOptions } from './ssh.js';
export { SlurmExecutor, SlurmStepError, type SlurmExecutorOptions } from './slurm.js';
export { validateLaunchId } from './launch-spec.js';
export { defaultMaxConcurrentCommands, type CommandListener, type StateDir } from './script-executor.js';
export {
  runGang,
  gangMemberId,
  GangMemberFailedError,
  type GangMember,
  type GangProgress,
  type GangResult,
  type RunGangOptions,
} from './gang.js';
