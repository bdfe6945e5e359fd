// `keel worker --set-current`: make this worker's deployment version the current one once the server has seen it poll
// (the server refuses a version it has not seen poll; the first tries after start-up may come too early).
import type { Client } from '@temporalio/client';
import { Runtime } from '@temporalio/worker';

export async function setCurrentWhenPolling(
  client: Client,
  version: { deploymentName: string; buildId: string },
  timeoutMs = 120_000,
): Promise<void> {
  const logger = Runtime.instance().logger;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.workflowService.setWorkerDeploymentCurrentVersion({
        namespace: client.options.namespace,
        deploymentName: version.deploymentName,
        buildId: version.buildId,
        identity: client.options.identity,
      });
      logger.info('this worker version is now the current version of its deployment', { ...version });
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        logger.error(
          'could not make this worker version current: set it with `temporal worker deployment set-current-version`',
          { ...version, error: String(error) },
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
