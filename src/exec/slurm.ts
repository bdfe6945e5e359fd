// The Slurm executor: every command is a step of the run's allocation on one node (`srun --overlap --jobid J
// --nodelist=<node>`), and the process-record scripts are the same as the local and ssh executors'.
//
// A launched program is a step of its own whose task is keel's wrapper, in its own session, running the program in
// the foreground: the step lasts as long as the program, and Slurm tracks every process of it. The srun client that
// starts the step is detached from the worker (its own session): a worker that restarts leaves it running, and even
// a killed srun client leaves its step running. The record on the node is what keel re-attaches to.
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path, { posix } from 'node:path';
import { execa } from 'execa';
import { stepArgv } from '../cluster/slurm.js';
import { ExecError, ExecTimeoutError, NodeScriptError } from './errors.js';
import { envArgs, recordDir, recordPrefix, renderSecretEnvFile, validateLaunchSpec } from './launch-spec.js';
import { loginEnvironment } from './node-environment.js';
import { wrapperScript } from './node-scripts.js';
import {
  ScriptExecutor,
  type CommandListener,
  type ExecOnNodeOptions,
  type RawResult,
  type StateDir,
} from './script-executor.js';
import { nodeName, type LaunchSpec, type NodeTarget, type ProcessRecord } from './types.js';

export interface SlurmExecutorOptions {
  stateDir: StateDir;
  /** the allocation every step runs in */
  jobId: string;
  /** SLURM_CONF for srun on the worker host (Slurm's own default when absent) */
  slurmConf?: string;
  maxConcurrentCommands?: number;
  onCommand?: CommandListener;
}

/** A step could not be started: the allocation is gone, or the node is not part of it (or not responding). */
export class SlurmStepError extends ExecError {
  override readonly type = 'SlurmStepError';
  constructor(
    readonly node: string,
    readonly jobId: string,
    readonly stderr: string,
  ) {
    super(`srun on ${node} in job ${jobId} failed: ${stderr.trim() || 'no message'}`);
  }
}

/** What srun prints when it could not run the step at all (as opposed to a task that exited non-zero). */
const srunOwnFailure = /^srun: error: (?!.*: task \d+: Exited with exit code)/m;

/**
 * Prepare a launch under the record's lock: `reattached` + the record when its program still runs; otherwise clear
 * the old record, rotate the log, link it, store the secrets from stdin, and print `prepared`.
 * Args: dir logFile hasSecrets(0|1)
 */
const prepareScript = `
keel_alive() {
  _f=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1,20)
  [ -n "$_f" ] && [ "\${_f%% *}" != Z ] && [ "\${_f#* }" = "$2" ]
}
dir=$1; log=$2; secrets=$3
umask 077
mkdir -p -- "$dir" || exit 1
exec 9>"$dir/lock" || exit 1
flock -w 60 9 || { echo "timed out waiting for the launch lock of $dir" >&2; exit 1; }
if [ ! -f "$dir/exit_code" ] && [ -f "$dir/record.json" ] && read -r pid st < "$dir/pid" && keel_alive "$pid" "$st"; then
  echo reattached; cat -- "$dir/record.json"; exit 0
fi
rm -f -- "$dir/exit_code" "$dir/pid" "$dir/record.json" "$dir/secret.env"
mkdir -p -- "$(dirname -- "$log")" || exit 1
if [ -e "$log" ] || [ -L "$log" ]; then mv -f -- "$log" "$log.1"; fi
if [ "$log" != "$dir/output.log" ]; then ln -sfn -- "$log" "$dir/output.log" || exit 1; fi
if [ "$secrets" = 1 ]; then cat > "$dir/secret.env" || exit 1; fi
echo prepared
`;

/**
 * The step's task: keel's wrapper in a session of its own (its pid is the process group `stop` signals), in the
 * foreground, so that the step ends when the program does. Args: dir logFile cwd recordPrefix wrapper nEnv... argv...
 */
const stepTaskScript = `
dir=$1; log=$2; cwd=$3; prefix=$4; wrapper=$5; shift 5
mask=$(umask)
exec setsid -w sh -c "$wrapper" keel-wrapper "$dir" "$cwd" "$mask" "$prefix" "$@" </dev/null >"$log" 2>&1
`;

const recordWaitMs = 30_000;

export class SlurmExecutor extends ScriptExecutor {
  readonly kind = 'slurm' as const;
  private readonly env: Record<string, string>;

  constructor(private readonly options: SlurmExecutorOptions) {
    super(options.stateDir, options.maxConcurrentCommands);
    // srun passes its environment to the step: a login's, never the worker's (secrets, the worker's own SLURM_*).
    this.env = { ...loginEnvironment(), ...(options.slurmConf ? { SLURM_CONF: options.slurmConf } : {}) };
  }

  get jobId(): string {
    return this.options.jobId;
  }

  protected async execOnNode(node: NodeTarget, argv: string[], options: ExecOnNodeOptions = {}): Promise<RawResult> {
    const [srun, ...args] = [...stepArgv(this.options.jobId, nodeName(node)), '--', ...argv];
    this.options.onCommand?.({ node: nodeName(node), argv: [srun!, ...args] });
    const result = await execa(srun!, args, {
      env: this.env,
      extendEnv: false,
      reject: false,
      encoding: 'buffer',
      stripFinalNewline: false,
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
    });
    if (result.timedOut) throw new ExecTimeoutError(nodeName(node), options.timeoutMs ?? 0);
    const stderr = Buffer.from(result.stderr).toString('utf8');
    if (result.exitCode === undefined || (result.exitCode !== 0 && srunOwnFailure.test(stderr))) {
      throw new SlurmStepError(nodeName(node), this.options.jobId, stderr || String(result.message));
    }
    return { exitCode: result.exitCode, stdout: result.stdout, stderr };
  }

  override async launch(node: NodeTarget, spec: LaunchSpec): Promise<{ record: ProcessRecord; reattached: boolean }> {
    validateLaunchSpec(spec);
    const dir = recordDir(this.stateDirOf(node), spec.id);
    const logFile = spec.logFile ?? posix.join(dir, 'output.log');
    const secretFile = renderSecretEnvFile(spec.secretEnv);
    const prepared = await this.bounded(() =>
      this.execOnNode(
        node,
        ['sh', '-c', prepareScript, 'keel-prepare', dir, logFile, secretFile === undefined ? '0' : '1'],
        { input: secretFile ?? '' },
      ),
    );
    const out = Buffer.from(prepared.stdout).toString('utf8');
    if (prepared.exitCode !== 0)
      throw new NodeScriptError(nodeName(node), 'launch', prepared.exitCode, prepared.stderr);
    const [verdict, ...rest] = out.trimEnd().split('\n');
    if (verdict === 'reattached') return { record: JSON.parse(rest.join('\n')) as ProcessRecord, reattached: true };

    const prefix = recordPrefix({
      id: spec.id,
      node: nodeName(node),
      argv: spec.argv,
      ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
      logFile,
      launchedAt: new Date().toISOString(),
    });
    const task = ['sh', '-c', stepTaskScript, 'keel-step', dir, logFile, spec.cwd ?? '', prefix, wrapperScript];
    const argv = [...stepArgv(this.options.jobId, nodeName(node)), '--', ...task, ...envArgs(spec.env), ...spec.argv];
    this.options.onCommand?.({ node: nodeName(node), argv });
    const client = this.startDetached(node, spec.id, argv);
    const deadline = Date.now() + recordWaitMs;
    for (;;) {
      const status = await this.status(node, spec.id).catch((error: unknown) => {
        if (error instanceof SlurmStepError) throw error;
        return undefined;
      });
      if (status) {
        const { state: _state, exitCode: _exitCode, ...record } = status;
        return { record, reattached: false };
      }
      if (client.exited() !== undefined || Date.now() > deadline) {
        throw new NodeScriptError(
          nodeName(node),
          'launch',
          client.exited() ?? -1,
          `the step of ${spec.id} wrote no record${client.stderr() ? `: ${client.stderr()}` : ''}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** srun in a session of its own, not a child the worker waits for; its own errors go to a file on this host. */
  private startDetached(
    node: NodeTarget,
    id: string,
    argv: string[],
  ): { exited: () => number | undefined; stderr: () => string } {
    const errDir = path.join(os.tmpdir(), 'keel-srun');
    mkdirSync(errDir, { recursive: true, mode: 0o700 });
    const errFile = path.join(errDir, `${this.options.jobId}-${nodeName(node)}-${id.replace(/\//g, '_')}.err`);
    const fd = openSync(errFile, 'w', 0o600);
    const [file, ...args] = argv;
    const child = spawn(file!, args, { env: this.env, detached: true, stdio: ['ignore', 'ignore', fd] });
    closeSync(fd);
    let code: number | undefined;
    child.on('exit', (c, signal) => {
      code = c ?? (signal ? 128 : 1);
    });
    child.on('error', () => {
      code = 127;
    });
    child.unref();
    return {
      exited: () => code,
      stderr: () => {
        try {
          return readFileSync(errFile, 'utf8').trim().slice(-2000);
        } catch {
          return '';
        }
      },
    };
  }
}
