// A minimal workflow for the infrastructure smoke test.
import { proxyActivities } from '@temporalio/workflow';
import type * as activities from './smoke-activities.js';

const { greet } = proxyActivities<typeof activities>({ startToCloseTimeout: '10s' });

export async function smoke(name: string): Promise<string> {
  return await greet({ name });
}
