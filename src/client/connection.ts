// Where the Temporal server is: flags, then env (KEEL_TEMPORAL_*), then the local dev server default.
import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from '@temporalio/client';

export interface TemporalTarget {
  address: string;
  namespace: string;
  taskQueue: string;
  tls?: { certFile?: string; keyFile?: string; caFile?: string; serverName?: string };
  /** name of the env var holding an API key (Temporal Cloud) */
  apiKeyEnv?: string;
}

export function temporalTarget(
  overrides: Partial<TemporalTarget> = {},
  env: NodeJS.ProcessEnv = process.env,
): TemporalTarget {
  const tls =
    overrides.tls ??
    (env.KEEL_TEMPORAL_TLS_CERT || env.KEEL_TEMPORAL_TLS_CA
      ? {
          certFile: env.KEEL_TEMPORAL_TLS_CERT,
          keyFile: env.KEEL_TEMPORAL_TLS_KEY,
          caFile: env.KEEL_TEMPORAL_TLS_CA,
          serverName: env.KEEL_TEMPORAL_TLS_SERVER_NAME,
        }
      : undefined);
  return {
    address: overrides.address ?? env.KEEL_TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    namespace: overrides.namespace ?? env.KEEL_TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: overrides.taskQueue ?? env.KEEL_TASK_QUEUE ?? 'keel',
    tls,
    apiKeyEnv: overrides.apiKeyEnv ?? env.KEEL_TEMPORAL_API_KEY_ENV,
  };
}

/** Connection options for @temporalio/client and NativeConnection: TLS files read here, the API key from its env var. */
export async function connectionOptions(target: TemporalTarget, env: NodeJS.ProcessEnv = process.env) {
  const options: ConnectionOptions & { apiKey?: string } = { address: target.address };
  if (target.tls) {
    const read = async (path?: string) => (path ? await readFile(path) : undefined);
    const [crt, key, ca] = await Promise.all([
      read(target.tls.certFile),
      read(target.tls.keyFile),
      read(target.tls.caFile),
    ]);
    options.tls = {
      serverNameOverride: target.tls.serverName,
      serverRootCACertificate: ca,
      clientCertPair: crt && key ? { crt, key } : undefined,
    };
  }
  if (target.apiKeyEnv) {
    const apiKey = env[target.apiKeyEnv];
    if (!apiKey) throw new Error(`the Temporal API key env var ${target.apiKeyEnv} is not set`);
    options.apiKey = apiKey;
    options.tls ??= {};
  }
  return options;
}
