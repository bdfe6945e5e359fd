// Every activity, built by one factory: workers inject what differs (directory, environment); tests do the same.
import { clusterActivities } from './cluster.js';
import type { ActivityDeps } from './context.js';
import { stepActivities } from './steps.js';
import { trainingActivities } from './training.js';
import { promotionActivities } from './promotion.js';
import { prepareActivities } from './prepare.js';
import { steeringActivities } from './steering.js';
import { notifyActivities } from './notify.js';
import { slurmActivities } from './slurm.js';

export type { ActivityDeps } from './context.js';
export { closeExecutors } from './context.js';

export function createActivities(deps: ActivityDeps) {
  return {
    ...stepActivities(deps),
    ...clusterActivities(deps),
    ...trainingActivities(deps),
    ...promotionActivities(deps),
    ...prepareActivities(deps),
    ...steeringActivities(),
    ...notifyActivities(deps),
    ...slurmActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
