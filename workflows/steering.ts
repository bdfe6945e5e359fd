// Steering from a run's first workflow task (patches.steeringByUpdates): the Updates pause, resume,
// stopAfterCheckpoint and cancel are registered before the run is prepared. An Update sent before then is held, and
// validated and answered once the run is (prepareRun takes seconds); a run that fails to prepare refuses it with the
// reason. A Slurm run waiting for its allocation refuses pause, resume and stopAfterCheckpoint with "not ready, retry"
// (the wait may last days) and acts on cancel at once. No signal steers a run started with this patch.
import { ApplicationFailure, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { Spec } from '../src/spec/schema.js';
import {
  cancelUpdate,
  pauseUpdate,
  resumeUpdate,
  stopAfterCheckpointUpdate,
  type SteeringAnswer,
} from './definitions.js';
import { cancelRequest, firstProblem } from './inputs.js';
import { quick } from './options.js';

export type SteeringAction = 'pause' | 'resume' | 'stopAfterCheckpoint' | 'cancel';

/** A prepared run: its validators (throw the reason for a refusal) and its actions. */
export interface Steerable {
  validate(action: SteeringAction, request: unknown): void;
  act(action: SteeringAction, request: unknown): Promise<SteeringAnswer>;
}

interface Held {
  action: SteeringAction;
  request: unknown;
  resolve: (answer: Promise<SteeringAnswer>) => void;
  reject: (failure: ApplicationFailure) => void;
}

/** The failure type of a steering Update refused after it was held (the run's answer names the reason). */
export const steeringRefused = 'SteeringRefused';

export class EarlySteering {
  private run?: Steerable;
  /** a Slurm run prepared, waiting for its allocation */
  private allocating?: Spec;
  private failed?: string;
  private held: Held[] = [];

  constructor() {
    const handle = (action: SteeringAction) => (request?: unknown) => this.handle(action, request);
    const validate = (action: SteeringAction) => (request?: unknown) => this.validate(action, request);
    setHandler(pauseUpdate, handle('pause'), { validator: validate('pause') });
    setHandler(resumeUpdate, handle('resume'), { validator: validate('resume') });
    setHandler(stopAfterCheckpointUpdate, handle('stopAfterCheckpoint'), {
      validator: validate('stopAfterCheckpoint'),
    });
    setHandler(cancelUpdate, handle('cancel'), { validator: validate('cancel') });
  }

  /** The run is prepared and steerable: answer what was held, in the order it came. Call before the first step. */
  attach(run: Steerable): void {
    this.run = run;
    this.allocating = undefined;
    for (const held of this.held.splice(0)) {
      try {
        run.validate(held.action, held.request);
        held.resolve(run.act(held.action, held.request));
      } catch (error) {
        held.reject(refusal(error));
      }
    }
  }

  /** A Slurm run is prepared and waits for its allocation: cancel acts at once; the rest is refused, to retry. */
  waitingForAllocation(spec: Spec): void {
    this.allocating = spec;
    for (const held of this.held.splice(0)) {
      if (held.action === 'cancel') held.resolve(this.cancelWhileAllocating(spec));
      else held.reject(refusal(new Error(notReady)));
    }
  }

  /** The run failed to prepare: what was held is refused with the reason. */
  preparationFailed(reason: string): void {
    this.failed = reason;
    for (const held of this.held.splice(0)) held.reject(refusal(new Error(`the run failed to prepare: ${reason}`)));
  }

  private validate(action: SteeringAction, request: unknown): void {
    if (this.run) return this.run.validate(action, request);
    if (this.failed) throw new Error(`the run failed to prepare: ${this.failed}`);
    if (action === 'cancel') {
      const parsed = cancelRequest.safeParse(request);
      if (!parsed.success) {
        throw new Error(`cancel takes { "reason": "..." } or nothing (${firstProblem(parsed.error)})`);
      }
    } else if (this.allocating) {
      throw new Error(notReady);
    }
    // Not prepared yet: accepted, held until it is.
  }

  private handle(action: SteeringAction, request: unknown): Promise<SteeringAnswer> {
    if (this.run) return this.run.act(action, request);
    if (this.allocating && action === 'cancel') return this.cancelWhileAllocating(this.allocating);
    return new Promise<SteeringAnswer>((resolve, reject) => this.held.push({ action, request, resolve, reject }));
  }

  private async cancelWhileAllocating(spec: Spec): Promise<SteeringAnswer> {
    // A workflow may not cancel itself: an activity asks Temporal to; the allocation is released as the run ends.
    await proxyActivities<Activities>(quick(spec)).requestCancellation({
      workflowId: workflowInfo().workflowId,
      runId: workflowInfo().runId,
    });
    return { accepted: true, message: 'cancelling: the Slurm allocation is released, then the run ends CANCELED' };
  }
}

const notReady =
  'not ready: the run waits for its Slurm allocation (keel status shows it); retry once it holds the allocation';

/** An Update handler refuses with a Temporal failure (any other error would fail the workflow task). */
function refusal(error: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type: steeringRefused, message: (error as Error).message ?? String(error) });
}
