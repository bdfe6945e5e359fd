// The process-record operations shared by the local and ssh executors, built on one primitive: run an argv on a node
// (`execOnNode`). Each operation is a constant POSIX sh script with its values passed as positional arguments.
import { posix } from 'node:path';
import pLimit, { type LimitFunction } from 'p-limit';
import { ExecTimeoutError, NodeScriptError, UnknownProcessError } from './errors.js';
import {
  envArgs,
  recordDir,
  recordPrefix,
  renderSecretEnvFile,
  requireAbsolute,
  validateEnvNames,
  validateLaunchId,
  validateLaunchSpec,
} from './launch-spec.js';
import {
  launchScript,
  notFoundExitCode,
  readFileScript,
  runScript,
  statusScript,
  readRangeScript,
  stopScript,
  stopUnderScript,
  tailScript,
  writeFileScript,
  wrapperScript,
} from './node-scripts.js';
import {
  nodeName,
  type Executor,
  type FileRange,
  type LaunchSpec,
  type NodeTarget,
  type ProcessRecord,
  type ProcessStatus,
  type RunOptions,
  type RunResult,
  type TailResult,
} from './types.js';

/** Raw result of one command on a node; stdout stays bytes so that log offsets are byte offsets. */
export interface RawResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: string;
}

export interface ExecOnNodeOptions {
  input?: string;
  timeoutMs?: number;
}

/** Where process records live on a node: one directory for all nodes, or one per node (nodes sharing a disk). */
export type StateDir = string | ((node: NodeTarget) => string);

/** Receives every command an executor runs, for debug logging (argv only; secrets never travel in argv). */
export type CommandListener = (event: { node: string; argv: string[] }) => void;

/**
 * Commands an executor runs on nodes at once, over all its nodes, unless told otherwise. Each one in flight is a
 * process on the worker's host (an ssh client, or the command itself for the local executor) with its pipes; a fan-out
 * over 1024 nodes queues behind this bound instead of starting 1024 processes at once.
 */
export const defaultMaxConcurrentCommands = 64;

const defaultTailBytes = 1 << 20;
const defaultGraceMs = 10_000;
const timeoutBackstopMs = 10_000;
/** The exit code of coreutils `timeout` when the time ran out. */
const timedOutExitCode = 124;

export abstract class ScriptExecutor implements Executor {
  abstract readonly kind: 'local' | 'ssh' | 'slurm';

  private readonly limit: LimitFunction;

  constructor(
    private readonly stateDirOption: StateDir,
    maxConcurrentCommands = defaultMaxConcurrentCommands,
  ) {
    this.limit = pLimit(maxConcurrentCommands);
  }

  /** Runs argv (argv[0] looked up in PATH) on the node; never throws for a non-zero exit. Called within the bound. */
  protected abstract execOnNode(node: NodeTarget, argv: string[], options?: ExecOnNodeOptions): Promise<RawResult>;

  async run(node: NodeTarget, argv: string[], options: RunOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new NodeScriptError(nodeName(node), 'run', -1, 'empty argv');
    validateEnvNames(options.env, 'env');
    const timeoutSec = options.timeoutMs === undefined ? '' : String(Math.max(0.001, options.timeoutMs / 1000));
    // coreutils `timeout` on the node ends the program (an ssh client killed on this side would not); the local
    // timer is only a backstop for a node that stops answering.
    const argvOnNode = [
      'sh',
      '-c',
      runScript,
      'keel-run',
      options.cwd ?? '',
      timeoutSec,
      ...envArgs(options.env),
      ...argv,
    ];
    const raw = await this.bounded(() =>
      this.execOnNode(node, argvOnNode, {
        input: options.input,
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs + timeoutBackstopMs }),
      }),
    );
    if (options.timeoutMs !== undefined && raw.exitCode === timedOutExitCode) {
      throw new ExecTimeoutError(nodeName(node), options.timeoutMs);
    }
    return { exitCode: raw.exitCode, stdout: Buffer.from(raw.stdout).toString('utf8'), stderr: raw.stderr };
  }

  async launch(node: NodeTarget, spec: LaunchSpec): Promise<{ record: ProcessRecord; reattached: boolean }> {
    validateLaunchSpec(spec);
    const dir = this.recordDirOf(node, spec.id);
    const logFile = spec.logFile ?? posix.join(dir, 'output.log');
    const secretFile = renderSecretEnvFile(spec.secretEnv);
    const prefix = recordPrefix({
      id: spec.id,
      node: nodeName(node),
      argv: spec.argv,
      ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
      logFile,
      launchedAt: new Date().toISOString(),
    });
    const hasSecrets = secretFile === undefined ? '0' : '1';
    const args = [dir, logFile, spec.cwd ?? '', prefix, hasSecrets, wrapperScript, ...envArgs(spec.env), ...spec.argv];
    const out = await this.script(node, 'launch', launchScript, args, { input: secretFile ?? '' });
    const [verdict, ...rest] = out.trimEnd().split('\n');
    return { record: parseRecord(node, rest.join('\n')), reattached: verdict === 'reattached' };
  }

  async status(node: NodeTarget, id: string): Promise<ProcessStatus | undefined> {
    const out = await this.script(node, 'status', statusScript, [this.recordDirOf(node, id)], {}, true);
    if (out === undefined) return undefined;
    const lines = out.trimEnd().split('\n');
    const verdict = lines.pop() ?? '';
    const record = parseRecord(node, lines.join('\n'));
    if (verdict === 'running') return { ...record, state: 'running' };
    if (verdict === 'lost') return { ...record, state: 'lost' };
    const exitCode = Number(verdict.replace(/^exit /, ''));
    if (!verdict.startsWith('exit ') || !Number.isInteger(exitCode)) {
      throw new NodeScriptError(nodeName(node), 'status', 0, `unexpected status line ${JSON.stringify(verdict)}`);
    }
    return { ...record, state: 'exited', exitCode };
  }

  async tail(node: NodeTarget, id: string, offset: number, maxBytes = defaultTailBytes): Promise<TailResult> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`invalid tail offset ${offset}`);
    const raw = await this.checked(node, 'tail', tailScript, [
      this.recordDirOf(node, id),
      String(offset),
      String(Math.max(1, maxBytes)),
    ]);
    if (raw === undefined) throw new UnknownProcessError(nodeName(node), id);
    const complete = completeUtf8Prefix(raw.stdout);
    return { text: Buffer.from(complete).toString('utf8'), nextOffset: offset + complete.length };
  }

  async readFileRange(
    node: NodeTarget,
    path: string,
    offset: number,
    maxBytes = defaultTailBytes,
  ): Promise<FileRange | undefined> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`invalid read offset ${offset}`);
    const raw = await this.checked(node, 'read-range', readRangeScript, [
      requireAbsolute(path, 'path'),
      String(offset),
      String(Math.max(1, maxBytes)),
    ]);
    if (raw === undefined) return undefined;
    const newline = raw.stdout.indexOf(0x0a);
    const size = Number(Buffer.from(raw.stdout.subarray(0, newline)).toString('utf8'));
    const bytes = raw.stdout.subarray(newline + 1);
    const complete = completeUtf8Prefix(bytes);
    return {
      text: Buffer.from(complete).toString('utf8'),
      nextOffset: offset + complete.length,
      size,
      bytesRead: bytes.length,
    };
  }

  async stop(node: NodeTarget, id: string, options: { graceMs?: number } = {}): Promise<void> {
    const graceMs = options.graceMs ?? defaultGraceMs;
    const steps = String(Math.max(0, Math.ceil(graceMs / 100)));
    const out = await this.script(node, 'stop', stopScript, [this.recordDirOf(node, id), steps], {}, true);
    if (out === undefined) throw new UnknownProcessError(nodeName(node), id);
  }

  async stopUnder(node: NodeTarget, prefix: string, options: { graceMs?: number; timeoutMs?: number } = {}) {
    const graceMs = options.graceMs ?? defaultGraceMs;
    const steps = String(Math.max(0, Math.ceil(graceMs / 100)));
    // the grace, the wait after SIGKILL (10 s at most) and a margin for a slow node
    const timeoutMs = options.timeoutMs ?? graceMs + 30_000;
    const out = await this.script(node, 'stop-under', stopUnderScript, [this.recordDirOf(node, prefix), steps], {
      timeoutMs,
    });
    return { stopped: Number(out.trim()) || 0 };
  }

  async readFile(node: NodeTarget, path: string): Promise<string | undefined> {
    return this.script(node, 'readFile', readFileScript, [path], {}, true);
  }

  async writeFile(node: NodeTarget, path: string, content: string): Promise<void> {
    await this.script(node, 'writeFile', writeFileScript, [path], { input: content });
  }

  async close(): Promise<void> {}

  /** Runs `work` (one command on a node) within the executor's bound on commands at once. */
  protected bounded<T>(work: () => Promise<T>): Promise<T> {
    return this.limit(work);
  }

  protected stateDirOf(node: NodeTarget): string {
    const dir = typeof this.stateDirOption === 'string' ? this.stateDirOption : this.stateDirOption(node);
    return requireAbsolute(dir, 'stateDir');
  }

  private recordDirOf(node: NodeTarget, id: string): string {
    return recordDir(this.stateDirOf(node), validateLaunchId(id));
  }

  /** Runs a node script; exit 3 means "not found" (-> undefined when allowed), other non-zero exits throw. */
  private async checked(
    node: NodeTarget,
    operation: string,
    script: string,
    args: string[],
    options: ExecOnNodeOptions = {},
  ): Promise<RawResult | undefined> {
    const raw = await this.bounded(() =>
      this.execOnNode(node, ['sh', '-c', script, `keel-${operation}`, ...args], options),
    );
    if (raw.exitCode === notFoundExitCode) return undefined;
    if (raw.exitCode !== 0) throw new NodeScriptError(nodeName(node), operation, raw.exitCode, raw.stderr);
    return raw;
  }

  private async script(
    node: NodeTarget,
    operation: string,
    script: string,
    args: string[],
    options: ExecOnNodeOptions,
    allowNotFound: true,
  ): Promise<string | undefined>;
  private async script(
    node: NodeTarget,
    operation: string,
    script: string,
    args: string[],
    options?: ExecOnNodeOptions,
  ): Promise<string>;
  private async script(
    node: NodeTarget,
    operation: string,
    script: string,
    args: string[],
    options: ExecOnNodeOptions = {},
    allowNotFound = false,
  ): Promise<string | undefined> {
    const raw = await this.checked(node, operation, script, args, options);
    if (raw === undefined) {
      if (allowNotFound) return undefined;
      throw new NodeScriptError(nodeName(node), operation, notFoundExitCode, 'not found');
    }
    return Buffer.from(raw.stdout).toString('utf8');
  }
}

function parseRecord(node: NodeTarget, json: string): ProcessRecord {
  try {
    const record = JSON.parse(json) as ProcessRecord;
    if (typeof record.pid !== 'number' || typeof record.id !== 'string') throw new Error('missing pid or id');
    return record;
  } catch (error) {
    throw new NodeScriptError(nodeName(node), 'read record', 0, `bad process record ${JSON.stringify(json)}: ${error}`);
  }
}

/** The longest prefix that does not end inside a UTF-8 sequence (the rest is read again from the next offset). */
export function completeUtf8Prefix(bytes: Uint8Array): Uint8Array {
  const end = bytes.length;
  // A sequence is at most 4 bytes: look back for its lead byte.
  for (let back = 1; back <= Math.min(4, end); back++) {
    const byte = bytes[end - back]!;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte
    const need = byte >= 0xf8 ? 1 : byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? bytes.subarray(0, end - back) : bytes;
  }
  return bytes;
}
