// pino, with secrets redacted: keys that name secrets, and the values of the secret env vars a spec names.
import { pino, type Logger } from 'pino';

const secretKeyPaths = [
  '*.token',
  '*.apiKey',
  '*.password',
  '*.secret',
  '*.HF_TOKEN',
  '*.WANDB_API_KEY',
  '*.TEMPORAL_API_KEY',
  'env.*',
];

/** Values that must never be logged (filled from the env vars a spec names as secrets). */
const secretValues = new Set<string>();

export function registerSecretValue(value: string | undefined): void {
  if (value && value.length >= 4) secretValues.add(value);
}

/** Replace every registered secret value inside a string. */
export function redactText(text: string): string {
  let out = text;
  for (const value of secretValues) out = out.split(value).join('[redacted]');
  return out;
}

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'keel',
    level: options.level ?? process.env.KEEL_LOG_LEVEL ?? 'info',
    redact: { paths: secretKeyPaths, censor: '[redacted]' },
    hooks: {
      streamWrite: (line) => redactText(line),
    },
  });
}
