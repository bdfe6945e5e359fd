// The flags every command that talks to Temporal shares, and the client they make. Precedence, field by field:
// flag > env (KEEL_TEMPORAL_*, KEEL_TASK_QUEUE) > the spec's `temporal` section (--spec FILE, or the spec a command
// starts) > the local dev server. src/client/connection.ts resolves it.
import type { Command } from 'commander';
import {
  describeTarget,
  KeelClient,
  TemporalConfigError,
  temporalTarget,
  type TemporalTarget,
} from '../client/index.js';
import type { TemporalSection } from '../spec/schema.js';
import { loadSpecOrExit } from './commands/spec.js';

export interface ServerOptions {
  address?: string;
  namespace?: string;
  taskQueue?: string;
  apiKeyEnv?: string;
  /** a spec file whose `temporal` section says where Temporal is */
  spec?: string;
}

export function connectionFlags(command: Command, options: { specFlag?: boolean } = {}): Command {
  command
    .option(
      '--address <host:port>',
      'Temporal frontend (env KEEL_TEMPORAL_ADDRESS; spec temporal.address; default 127.0.0.1:7233)',
    )
    .option(
      '--namespace <ns>',
      'Temporal namespace (env KEEL_TEMPORAL_NAMESPACE; spec temporal.namespace; default default)',
    )
    .option(
      '--task-queue <name>',
      'task queue of the control worker (env KEEL_TASK_QUEUE; spec temporal.taskQueue; default keel)',
    )
    .option(
      '--api-key-env <VAR>',
      'env var holding a Temporal Cloud API key (env KEEL_TEMPORAL_API_KEY_ENV; spec temporal.apiKeyEnv)',
    );
  if (options.specFlag !== false)
    command.option('--spec <file>', "take the connection from this spec's temporal section (flags and env win)");
  return command;
}

export function flagTarget(options: ServerOptions): Partial<TemporalTarget> {
  return {
    address: options.address,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    apiKeyEnv: options.apiKeyEnv,
  };
}

/** The `temporal` section of the --spec file (its problems printed by path, exit 2), if one was given. */
export async function specSection(options: ServerOptions): Promise<TemporalSection | undefined> {
  return options.spec ? (await loadSpecOrExit(options.spec, {})).temporal : undefined;
}

/** A bad connection setting (a TLS file, an unset API key variable) is the user's to fix: its message, exit 2. */
export function exitOnConfigError(error: unknown): never {
  if (error instanceof TemporalConfigError) {
    console.error(`keel: ${error.message}`);
    process.exit(2);
  }
  throw error;
}

export async function withClient<T>(
  options: ServerOptions,
  fn: (client: KeelClient) => Promise<T>,
  spec?: TemporalSection,
): Promise<T> {
  const section = spec ?? (await specSection(options));
  const client = await KeelClient.connect(flagTarget(options), section).catch((error: unknown) => {
    if (error instanceof TemporalConfigError) exitOnConfigError(error);
    const target = describeTarget(temporalTarget(flagTarget(options), process.env, section));
    console.error(`keel: cannot connect to Temporal at ${target}: ${error instanceof Error ? error.message : error}`);
    process.exit(1);
  });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}
