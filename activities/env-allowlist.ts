// The worker decides which of its environment variables a spec may name. A spec travels between people; the worker
// holds the operators' secrets. By default a field may name only variables of its own kind (the Hub token field a
// Hub token, a webhook field a webhook URL); the operator allows others with `keel worker --allow-env NAME...` (or
// KEEL_ALLOW_ENV=NAME,NAME). So `hfEndpointEnv: SLACK_WEBHOOK_URL` or `secretEnv: [AWS_SECRET_ACCESS_KEY]` is refused
// before the value is read.
import { ApplicationFailure } from '@temporalio/activity';
import { failureTypes } from '../src/failure-types.js';

export type EnvField = 'rayHead.secretEnv' | 'model.hfTokenEnv' | 'model.hfEndpointEnv' | 'notify.webhooks[].urlEnv';

/** What each field may name without the operator's word. */
const defaults: Record<EnvField, RegExp> = {
  'rayHead.secretEnv': /^(WANDB_API_KEY|HF_TOKEN|HUGGING_FACE_HUB_TOKEN)$/,
  'model.hfTokenEnv': /^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|KEEL_HF_TOKEN)$/,
  'model.hfEndpointEnv': /^(HF_ENDPOINT|KEEL_HF_ENDPOINT)$/,
  'notify.webhooks[].urlEnv': /^[A-Z][A-Z0-9_]*_(WEBHOOK|HOOK)_URL$/,
};

/** The names the operator allowed beyond the defaults: `--allow-env` and KEEL_ALLOW_ENV (comma- or space-separated). */
export function allowedEnvNames(flag: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = (env.KEEL_ALLOW_ENV ?? '').split(/[\s,]+/).filter(Boolean);
  return [...new Set([...flag.flatMap((f) => f.split(/[\s,]+/)).filter(Boolean), ...fromEnv])];
}

/** Why `name` may not be read for `field` by this worker, or undefined when it may. */
export function envNameRefusal(field: EnvField, name: string, allowed: readonly string[] = []): string | undefined {
  if (defaults[field].test(name) || allowed.includes(name)) return undefined;
  return (
    `${field} names ${name}, which this worker does not let a spec read: if the spec may use it, start the worker ` +
    `with --allow-env ${name} (or KEEL_ALLOW_ENV=${name})`
  );
}

/** Throw a non-retryable config error when `name` may not be read for `field`. */
export function assertEnvNameAllowed(field: EnvField, name: string, allowed: readonly string[] = []): void {
  const refusal = envNameRefusal(field, name, allowed);
  if (refusal) throw ApplicationFailure.nonRetryable(refusal, failureTypes.configError);
}
