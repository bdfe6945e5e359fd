// A real Temporal dev server for tests: the `temporal` CLI installed into .venv by the setup script.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { keelSearchAttributes } from '../../src/search-attributes.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export function temporalBinary(): string {
  const path = `${repoRoot}.venv/bin/temporal`;
  if (!existsSync(path)) throw new Error(`no Temporal CLI at ${path}: run 'npm run setup' first`);
  return path;
}

/**
 * Start the dev server (random port, loopback, SQLite in memory unless dbFilename is given) with the Keel* attributes.
 * Headless unless uiPort is given: then the Web UI listens on that loopback port.
 */
export async function startDevServer(
  options: { dbFilename?: string; port?: number; uiPort?: number; extraArgs?: string[] } = {},
): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalBinary() },
      ip: '127.0.0.1',
      port: options.port,
      dbFilename: options.dbFilename,
      ui: options.uiPort !== undefined,
      uiPort: options.uiPort,
      searchAttributes: keelSearchAttributes,
      log: { format: 'pretty', level: 'error' },
      extraArgs: options.extraArgs,
    },
  });
}

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();

/** Bundle workflow code once per test process. */
export function workflowBundle(workflowsPath = `${repoRoot}workflows/index.ts`): Promise<WorkflowBundleWithSourceMap> {
  let bundle = bundles.get(workflowsPath);
  if (!bundle) {
    bundle = bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
    bundles.set(workflowsPath, bundle);
  }
  return bundle;
}

const noop = (): void => undefined;
const quietBundlerLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop };
