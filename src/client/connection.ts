// Where the Temporal server is, field by field: a flag, then the env (KEEL_TEMPORAL_*), then the spec's `temporal`
// section, then the local dev server default. TLS is taken whole from one place: the env when any KEEL_TEMPORAL_TLS*
// variable is set, else the spec. Each field remembers where it came from, so an error names the field to fix.
import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from '@temporalio/client';
import type { TemporalSection } from '../spec/schema.js';

export interface TemporalTls {
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  serverName?: string;
}

export interface TemporalTarget {
  address: string;
  namespace: string;
  taskQueue: string;
  /** TLS on (an empty object: the system's CA certificates, no client certificate) */
  tls?: TemporalTls;
  /** name of the env var holding an API key (Temporal Cloud) */
  apiKeyEnv?: string;
  /** where each field came from, as the user would write it: `--namespace`, `KEEL_TEMPORAL_NAMESPACE`, `temporal.tls` */
  origins?: Partial<Record<keyof Omit<TemporalTarget, 'origins'>, string>>;
}

export class TemporalConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemporalConfigError';
  }
}

export const temporalDefaults = { address: '127.0.0.1:7233', namespace: 'default', taskQueue: 'keel' } as const;

const envNames = {
  address: 'KEEL_TEMPORAL_ADDRESS',
  namespace: 'KEEL_TEMPORAL_NAMESPACE',
  taskQueue: 'KEEL_TASK_QUEUE',
  apiKeyEnv: 'KEEL_TEMPORAL_API_KEY_ENV',
} as const;

const flagNames = {
  address: '--address',
  namespace: '--namespace',
  taskQueue: '--task-queue',
  apiKeyEnv: '--api-key-env',
  tls: 'the tls option',
} as const;

const tlsEnv = {
  certFile: 'KEEL_TEMPORAL_TLS_CERT',
  keyFile: 'KEEL_TEMPORAL_TLS_KEY',
  caFile: 'KEEL_TEMPORAL_TLS_CA',
  serverName: 'KEEL_TEMPORAL_TLS_SERVER_NAME',
} as const;

function tlsFromEnv(env: NodeJS.ProcessEnv): TemporalTls | undefined {
  const tls: TemporalTls = {};
  for (const [field, name] of Object.entries(tlsEnv) as [keyof TemporalTls, string][])
    if (env[name]) tls[field] = env[name];
  const on = Object.keys(tls).length > 0 || /^(1|true|yes|on)$/i.test(env.KEEL_TEMPORAL_TLS ?? '');
  return on ? tls : undefined;
}

/**
 * The target from flags (`overrides`), the env and a spec's `temporal` section, in that order of precedence.
 * `overrides` may carry origins of its own (a library caller naming its fields); flags are named as the CLI's.
 */
export function temporalTarget(
  overrides: Partial<TemporalTarget> = {},
  env: NodeJS.ProcessEnv = process.env,
  spec: TemporalSection = {},
): TemporalTarget {
  const origins: NonNullable<TemporalTarget['origins']> = {};
  const pick = (field: keyof typeof envNames): string | undefined => {
    const candidates: [string | undefined, string][] = [
      [overrides[field], overrides.origins?.[field] ?? flagNames[field]],
      [env[envNames[field]] || undefined, envNames[field]],
      [spec[field], `temporal.${field}`],
    ];
    const found = candidates.find(([value]) => value !== undefined);
    if (found) origins[field] = found[1];
    return found?.[0];
  };
  const address = pick('address') ?? temporalDefaults.address;
  const namespace = pick('namespace') ?? temporalDefaults.namespace;
  const taskQueue = pick('taskQueue') ?? temporalDefaults.taskQueue;
  const apiKeyEnv = pick('apiKeyEnv');
  let tls: TemporalTls | undefined;
  const fromEnv = tlsFromEnv(env);
  if (overrides.tls) [tls, origins.tls] = [overrides.tls, overrides.origins?.tls ?? flagNames.tls];
  else if (fromEnv) [tls, origins.tls] = [fromEnv, 'KEEL_TEMPORAL_TLS_*'];
  else if (spec.tls) [tls, origins.tls] = [spec.tls, 'temporal.tls'];
  return { address, namespace, taskQueue, tls, apiKeyEnv, origins };
}

/** `temporal.tls` + `certFile` -> `temporal.tls.certFile`; the env -> its variable. */
function tlsFieldName(origin: string | undefined, field: keyof TemporalTls): string {
  if (origin === 'KEEL_TEMPORAL_TLS_*') return tlsEnv[field];
  return `${origin ?? 'tls'}.${field}`;
}

async function readTlsFile(path: string, name: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new TemporalConfigError(`${name}: cannot read ${path} (${code}): give the path of ${what}`);
  }
}

/**
 * Connection options for @temporalio/client's Connection and the worker's NativeConnection: the TLS files read here,
 * the API key taken from the env var the target names (TLS is then on: Temporal Cloud requires it).
 */
export async function connectionOptions(
  target: TemporalTarget,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ConnectionOptions & { apiKey?: string }> {
  const options: ConnectionOptions & { apiKey?: string } = { address: target.address };
  const tls = target.tls;
  if (tls) {
    const origin = target.origins?.tls;
    if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) {
      const missing = tls.certFile ? 'keyFile' : 'certFile';
      throw new TemporalConfigError(
        `${tlsFieldName(origin, missing)} is missing: a client certificate needs its key (give both or neither)`,
      );
    }
    const [crt, key, ca] = await Promise.all([
      tls.certFile && readTlsFile(tls.certFile, tlsFieldName(origin, 'certFile'), 'the client certificate (PEM)'),
      tls.keyFile && readTlsFile(tls.keyFile, tlsFieldName(origin, 'keyFile'), "the client certificate's key (PEM)"),
      tls.caFile && readTlsFile(tls.caFile, tlsFieldName(origin, 'caFile'), "the server's CA certificate (PEM)"),
    ]);
    options.tls = {
      ...(tls.serverName ? { serverNameOverride: tls.serverName } : {}),
      ...(ca ? { serverRootCACertificate: ca } : {}),
      ...(crt && key ? { clientCertPair: { crt, key } } : {}),
    };
  }
  if (target.apiKeyEnv) {
    const apiKey = env[target.apiKeyEnv];
    if (!apiKey) {
      const field = target.origins?.apiKeyEnv ?? 'apiKeyEnv';
      throw new TemporalConfigError(
        `${field} names the env var ${target.apiKeyEnv}, which is not set: export the Temporal API key in ` +
          `${target.apiKeyEnv} where keel runs (the spec holds only the variable's name)`,
      );
    }
    options.apiKey = apiKey;
    options.tls ??= {};
  }
  refuseCredentialsForSpecAddress(target, options, env);
  return options;
}

/** Confirms an address a spec file chose, so that keel sends it the credentials (API key, client certificate). */
export const trustAddressEnv = 'KEEL_TEMPORAL_TRUST_ADDRESS';

/**
 * A spec file may say where to connect, but not which local secret to send there: a credential goes to an address
 * from a spec only when the user confirms that address (a flag, KEEL_TEMPORAL_ADDRESS, or KEEL_TEMPORAL_TRUST_ADDRESS).
 */
function refuseCredentialsForSpecAddress(
  target: TemporalTarget,
  options: ConnectionOptions & { apiKey?: string },
  env: NodeJS.ProcessEnv,
): void {
  const origin = target.origins?.address;
  if (!origin?.startsWith('temporal.')) return;
  const tls = typeof options.tls === 'object' ? options.tls : undefined;
  const sends = [
    ...(options.apiKey !== undefined ? [`the API key in ${target.apiKeyEnv} (${target.origins?.apiKeyEnv})`] : []),
    ...(tls?.clientCertPair ? [`the client certificate (${target.origins?.tls})`] : []),
  ];
  if (sends.length === 0) return;
  const trusted = (env[trustAddressEnv] ?? '').split(',').map((a) => a.trim());
  if (trusted.includes(target.address)) return;
  throw new TemporalConfigError(
    `${origin}: ${target.address} comes from the spec file, and keel would send it ${sends.join(' and ')}; ` +
      'a spec may say where to connect, not which local secret to send there. If this is your Temporal server, ' +
      `confirm it: --address ${target.address}, KEEL_TEMPORAL_ADDRESS=${target.address} or ` +
      `${trustAddressEnv}=${target.address}`,
  );
}

/** One line for a person: where keel connects, and where that came from. */
export function describeTarget(target: TemporalTarget): string {
  const from = (field: keyof NonNullable<TemporalTarget['origins']>) =>
    target.origins?.[field] ? ` (${target.origins[field]})` : '';
  const parts = [
    `${target.address}${from('address')}`,
    `namespace ${target.namespace}${from('namespace')}`,
    `task queue ${target.taskQueue}${from('taskQueue')}`,
  ];
  if (target.tls) parts.push(`TLS${from('tls')}`);
  if (target.apiKeyEnv) parts.push(`API key from ${target.apiKeyEnv}${from('apiKeyEnv')}`);
  return parts.join(', ');
}
