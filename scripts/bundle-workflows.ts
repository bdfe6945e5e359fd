// `npm run bundle`: the workflow bundle a production worker loads with --bundle (no bundling at start-up).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { defaultBundlePath, workflowsPath } from '../workers/control.js';

const { code } = await bundleWorkflowCode({ workflowsPath });
await mkdir(dirname(defaultBundlePath), { recursive: true });
await writeFile(defaultBundlePath, code);
console.log(`wrote ${defaultBundlePath} (${(code.length / 1024).toFixed(0)} kB)`);
