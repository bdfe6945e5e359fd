// keel's programmatic entry: the typed client, spec and plan helpers.
export {
  KeelClient,
  KeelSchedules,
  RunAlreadyLiveError,
  SteeringRefusedError,
  workflowIdFor,
  describeError,
} from './client/index.js';
export type {
  RunStatus,
  SteeringAnswer,
  ProgressEvent,
  ScheduleRequest,
  ScheduleSummary,
  TemporalTarget,
} from './client/index.js';
export { resolveSpecInput, resolveSpecOrThrow, presets, presetNames, InvalidSpecError } from './spec/index.js';
export type { Spec, SpecInput, SpecProblem } from './spec/index.js';
export { plan } from './plan/index.js';
export type { Plan, Finding } from './plan/index.js';
export type { PipelineStatus, TrainingStatus, StepStatus } from '../workflows/definitions.js';
export { notificationKinds } from './notify/events.js';
export type { NotificationEvent, NotificationKind } from './notify/events.js';
