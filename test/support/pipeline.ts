// Helpers for pipeline tests: a spec of small real commands on local nodes, and a worker on a test task queue.
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities/index.js';
import { resolveSpecOrThrow, type Spec, presets, deepMerge } from '../../src/spec/index.js';
import { repoRoot, workflowBundle } from './temporal.js';

const tempDirs: string[] = [];

/** A fresh directory under the system temp dir, removed when the test process exits (KEEL_KEEP_TEST_DIRS=1 keeps it). */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (tempDirs.push(dir) === 1 && process.env.KEEL_KEEP_TEST_DIRS !== '1')
    process.once('exit', () => {
      for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    });
  return dir;
}

/** The tiny-local spec with these steps, storage and process records in a temp dir, short timeouts. */
export function commandSpec(options: {
  name: string;
  dir: string;
  steps: Record<string, unknown>;
  overrides?: Record<string, unknown>;
}): Spec {
  const raw = deepMerge(presets['tiny-local'], {
    name: options.name,
    storage: { baseDir: join(options.dir, 'shared') },
    cluster: { stateDir: join(options.dir, 'nodes', '{node}') },
    policies: { heartbeatTimeout: '3s', initialRetryInterval: '500ms', maxAttempts: 4 },
    ...(options.overrides ?? {}),
  }) as Record<string, unknown>;
  raw.steps = options.steps;
  return resolveSpecOrThrow(raw);
}

let queue = 0;

export function uniqueQueue(prefix = 'keel-test'): string {
  queue++;
  return `${prefix}-${process.pid}-${queue}-${Date.now() % 100000}`;
}

/** A worker with the real activities; `cwd` is where the spec's relative paths resolve (default: the checkout). */
export async function createTestWorker(
  env: TestWorkflowEnvironment,
  taskQueue: string,
  options: { cwd?: string } = {},
): Promise<Worker> {
  return Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({ cwd: options.cwd ?? repoRoot, env: process.env }),
    shutdownGraceTime: '2s',
  });
}

/** Poll until `check` returns a value (or throw after the timeout). */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
}

/** Like `eventually`, but fails at once when the run ends first (with its failure in the message). */
export async function eventuallyWhileRunning<T>(
  handle: { describe(): Promise<{ status: { name: string } }>; result(): Promise<unknown> },
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined && value !== false) return value;
    const description = await handle.describe().catch(() => undefined);
    if (description && description.status.name !== 'RUNNING') {
      const outcome = await handle.result().then(
        () => 'it completed',
        (error: unknown) => String((error as Error).cause ?? error),
      );
      throw new Error(`the run ended (${description.status.name}) before ${what}: ${outcome}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
