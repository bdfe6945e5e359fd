// pino, with secrets redacted: keys that name secrets, and the values of the secret env vars a spec names. Where the
// lines go is a LogOutput: JSON lines (for tools and journald) or pretty text (pino-pretty, for a person), to a file
// or a stream.
import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

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

export const logFormats = ['json', 'pretty'] as const;
export type LogFormat = (typeof logFormats)[number];

/** Where log lines go: a file path (created with its directory, appended to) or a file descriptor (1 stdout, 2 stderr). */
export interface LogOutput {
  format: LogFormat;
  destination: string | 1 | 2;
}

function destinationStream(output: LogOutput): DestinationStream {
  const { destination } = output;
  if (output.format === 'pretty') {
    const colorize =
      typeof destination === 'number' && Boolean((destination === 1 ? process.stdout : process.stderr).isTTY);
    return pretty({ destination, colorize, sync: true, mkdir: true, ignore: 'pid,hostname' });
  }
  return pino.destination({ dest: destination, sync: true, mkdir: true });
}

export function createLogger(options: { level?: string; name?: string; output?: LogOutput } = {}): Logger {
  const settings = {
    name: options.name ?? 'keel',
    level: options.level || process.env.KEEL_LOG_LEVEL || 'info',
    redact: { paths: secretKeyPaths, censor: '[redacted]' },
    hooks: { streamWrite: (line: string) => redactText(line) },
  };
  return options.output ? pino(settings, destinationStream(options.output)) : pino(settings);
}
