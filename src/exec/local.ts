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

export interface LocalExecutorOptions {
  /** Absolute directory of process records (`<stateDir>/procs/<id>/`), or one per node. */
  stateDir: StateDir;
  onCommand?: CommandListener;
}

export class LocalExecutor extends ScriptExecutor {
  readonly kind = 'local' as const;
  private readonly onCommand: CommandListener | undefined;

  constructor(options: LocalExecutorOptions) {
    super(options.stateDir);
    this.onCommand = options.onCommand;
  }

  protected async execOnNode(node: NodeTarget, argv: string[], options: ExecOnNodeOptions = {}): Promise<RawResult> {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('empty argv');
    this.onCommand?.({ node: nodeName(node), argv });
    const result = await execa(file, args, {
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
