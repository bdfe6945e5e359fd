// A workflow whose activity fails twice: the Temporal SDK's worker logs a WARN line ("Activity failed") per attempt.
import { proxyActivities } from '@temporalio/workflow';
import type * as activities from './activities.js';

const { failingStep } = proxyActivities<typeof activities>({
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 2, initialInterval: '50ms' },
});

export async function failsTwice(): Promise<void> {
  await failingStep();
}
