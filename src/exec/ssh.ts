// The ssh executor: the system OpenSSH client through execa. BatchMode (never prompts), connection multiplexing with a
// control socket in a private directory, host key checking on by default. The remote command line is built from an
// argv array by shell-quote; the node-side scripts take every value as a positional argument.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { quote } from 'shell-quote';
import { ExecTimeoutError, SshConnectionError } from './errors.js';
import {
  ScriptExecutor,
  type CommandListener,
  type ExecOnNodeOptions,
  type RawResult,
  type StateDir,
} from './script-executor.js';
import { nodeName, type NodeTarget } from './types.js';

export interface SshExecutorOptions {
  /** Absolute directory of process records on each node, or one per node (nodes sharing a disk). */
  stateDir: StateDir;
  user?: string;
  /** Default port; `NodeTarget.port` overrides it per node. */
  port?: number;
  identityFile?: string;
  knownHostsFile?: string;
  /** Default true (`yes`); `accept-new` trusts unknown hosts on first use but still refuses changed keys. */
  strictHostKeyChecking?: boolean | 'accept-new';
  connectTimeoutSec?: number;
  /** Commands on nodes at once, over all nodes (ssh client processes on this host). Default 64. */
  maxConcurrentCommands?: number;
  /** How long an idle control master stays up. Default 60 s. */
  controlPersistSec?: number;
  /** An ssh_config file to use instead of the user's (`-F`). */
  sshConfigFile?: string;
  /** The ssh client binary. Default `ssh` from PATH. */
  sshPath?: string;
  onCommand?: CommandListener;
}

/** ssh's own failures (connection, authentication, host key) exit with 255. */
const sshFailureExitCode = 255;

export class SshExecutor extends ScriptExecutor {
  readonly kind = 'ssh' as const;
  private controlDir: Promise<string> | undefined;
  private readonly targets = new Map<string, NodeTarget>();

  constructor(private readonly options: SshExecutorOptions) {
    super(options.stateDir, options.maxConcurrentCommands);
  }

  protected async execOnNode(node: NodeTarget, argv: string[], options: ExecOnNodeOptions = {}): Promise<RawResult> {
    const remoteCommand = quote(argv);
    const args = [...(await this.sshArgs(node)), '-T', '--', node.host, remoteCommand];
    this.options.onCommand?.({ node: nodeName(node), argv: [this.sshPath, ...args] });
    const result = await execa(this.sshPath, args, {
      reject: false,
      encoding: 'buffer',
      stripFinalNewline: false,
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
    });
    if (result.timedOut) throw new ExecTimeoutError(nodeName(node), options.timeoutMs ?? 0);
    const stderr = Buffer.from(result.stderr).toString('utf8');
    if (result.exitCode === sshFailureExitCode || result.exitCode === undefined) {
      throw new SshConnectionError(this.describe(node), stderr || String(result.message));
    }
    return { exitCode: result.exitCode, stdout: result.stdout, stderr };
  }

  /** Ends the control masters this executor opened and removes its private socket directory. */
  override async close(): Promise<void> {
    const dir = this.controlDir;
    if (dir === undefined) return;
    const targets = [...this.targets.values()];
    this.targets.clear();
    await Promise.all(
      targets.map(async (node) => {
        const args = [...(await this.sshArgs(node, false)), '-O', 'exit', '--', node.host];
        await this.bounded(() => execa(this.sshPath, args, { reject: false, stdin: 'ignore', timeout: 10_000 }));
      }),
    );
    this.controlDir = undefined;
    await rm(await dir, { recursive: true, force: true });
  }

  private get sshPath(): string {
    return this.options.sshPath ?? 'ssh';
  }

  private describe(node: NodeTarget): string {
    const port = node.port ?? this.options.port;
    return `${this.options.user ? `${this.options.user}@` : ''}${node.host}${port ? `:${port}` : ''}`;
  }

  private async sshArgs(node: NodeTarget, remember = true): Promise<string[]> {
    this.controlDir ??= mkdtemp(path.join(os.tmpdir(), 'keel-ssh-'));
    const controlDir = await this.controlDir;
    if (remember) this.targets.set(this.describe(node), node);
    const o = this.options;
    const strict = o.strictHostKeyChecking ?? true;
    const port = node.port ?? o.port;
    return [
      ...(o.sshConfigFile ? ['-F', o.sshConfigFile] : []),
      ...['-o', 'BatchMode=yes'],
      ...['-o', 'ControlMaster=auto'],
      ...['-o', `ControlPath=${path.join(controlDir, '%C')}`],
      ...['-o', `ControlPersist=${o.controlPersistSec ?? 60}`],
      ...['-o', `StrictHostKeyChecking=${strict === 'accept-new' ? 'accept-new' : strict ? 'yes' : 'no'}`],
      ...(o.knownHostsFile ? ['-o', `UserKnownHostsFile=${o.knownHostsFile}`] : []),
      ...['-o', `ConnectTimeout=${o.connectTimeoutSec ?? 10}`],
      ...['-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4'],
      ...['-o', 'LogLevel=ERROR'],
      ...(o.identityFile ? ['-i', o.identityFile, '-o', 'IdentitiesOnly=yes'] : []),
      ...(o.user ? ['-l', o.user] : []),
      ...(port ? ['-p', String(port)] : []),
    ];
  }
}
