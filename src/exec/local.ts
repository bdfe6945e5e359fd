// The local executor: node-side scripts run on this host through execa.
import { execa } from 'execa';
import { ExecTimeoutError } from './errors.js';
import {
  ScriptExecutor,
  type CommandListener,
  type ExecOnNodeOptions,
  type RawResult,
  type StateDir,
} from './script-executor.js';
import { nodeName, type NodeTarget } from './types.js';
import { loginEnvironment } from './node-environment.js';

export interface LocalExecutorOptions {
  /** Absolute directory of process records (`<stateDir>/procs/<id>/`), or one per node. */
  stateDir: StateDir;
  /** Commands at once, over all nodes (processes on this host). Default 64. */
  maxConcurrentCommands?: number;
  onCommand?: CommandListener;
  /**
   * The environment every command starts with, as a login on the node would have it (default: PATH, HOME, USER,
   * LOGNAME, SHELL and the locale of this process). Nothing else of this process is inherited.
   */
  baseEnv?: Record<string, string>;
}

export class LocalExecutor extends ScriptExecutor {
  readonly kind = 'local' as const;
  private readonly onCommand: CommandListener | undefined;
  private readonly baseEnv: Record<string, string>;

  constructor(options: LocalExecutorOptions) {
    super(options.stateDir, options.maxConcurrentCommands);
    this.onCommand = options.onCommand;
    this.baseEnv = { ...(options.baseEnv ?? loginEnvironment()) };
  }

  protected async execOnNode(node: NodeTarget, argv: string[], options: ExecOnNodeOptions = {}): Promise<RawResult> {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('empty argv');
    this.onCommand?.({ node: nodeName(node), argv });
    const result = await execa(file, args, {
      env: this.baseEnv,
      extendEnv: false,
      reject: false,
      encoding: 'buffer',
      stripFinalNewline: false,
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
    });
    if (result.timedOut) throw new ExecTimeoutError(nodeName(node), options.timeoutMs ?? 0);
    return {
      exitCode: result.exitCode ?? (result.signal ? 128 : 1),
      stdout: result.stdout,
      stderr: Buffer.from(result.stderr).toString('utf8'),
    };
  }
}
