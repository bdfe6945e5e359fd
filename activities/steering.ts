// Steering that workflow code cannot do itself: a run asks Temporal to cancel it (a workflow may not cancel its own
// execution), so that an operator's `cancel` ends it CANCELED whichever way it came (CLI, client, Web UI update).
import { Context } from '@temporalio/activity';

export function steeringActivities() {
  async function requestCancellation(input: { workflowId: string; runId?: string }): Promise<void> {
    await Context.current().client.workflow.getHandle(input.workflowId, input.runId).cancel();
  }
  return { requestCancellation };
}
