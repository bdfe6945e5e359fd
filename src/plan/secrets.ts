// Secrets never go into a spec: a spec is stored in workflow history and its job env in Ray's runtime_env (which the
// dashboard serves). This check looks at every string of a spec -- and at every `--flag=value` or `Header: value` inside
// one -- for the shapes that common credentials have, and refuses them with the fix: name a variable instead.
import type { Spec } from '../spec/schema.js';
import type { Finding } from './findings.js';

interface SecretShape {
  pattern: RegExp;
  what: string;
}

/** Token shapes, matched anywhere in a string (published prefixes and lengths of each provider). */
const shapes: SecretShape[] = [
  { pattern: /\bhf_[A-Za-z0-9]{30,}\b/, what: 'a Hugging Face token' },
  { pattern: /\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b/, what: 'a GitHub token' },
  { pattern: /\bgithub_pat_[A-Za-z0-9_]{40,}\b/, what: 'a GitHub token' },
  { pattern: /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/, what: 'an AWS access key id' },
  { pattern: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, what: 'a private key' },
  { pattern: /\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{20,}\b/, what: 'an API key' },
  { pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/, what: 'a Slack token' },
  { pattern: /\bBearer\s+[A-Za-z0-9._~+/-]{16,}=*/i, what: 'a bearer token (an Authorization header)' },
  { pattern: /\bBasic\s+[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])/, what: 'basic-auth credentials' },
  { pattern: /\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:[^/\s@]+@/i, what: 'a URL with a password in it' },
  // header.payload.signature, both JSON objects base64url-encoded (`{"` is `eyJ`): Temporal Cloud API keys, OIDC tokens
  {
    pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/,
    what: 'a JWT (e.g. a Temporal Cloud API key)',
  },
  { pattern: /\bhooks\.slack\.com\/(?:services|workflows|triggers)\/\S+/i, what: 'a Slack webhook URL' },
];

/** Values whose meaning comes from a variable or flag name that says "secret": a W&B key, an AWS secret key, ... */
const secretName =
  /(api[_-]?key|secret|token|password|passwd|credential|private[_-]?key|access[_-]?key|wandb[_-]?key)/i;
/** What such a value looks like when it is a real credential (not a file path, a variable name or a placeholder). */
const credentialLike = /^[A-Za-z0-9+/=_.~-]{16,}$/;
/** W&B API keys: 40 hexadecimal characters (86 with the newer `local-` prefix), and AWS secret keys: 40 base64. */
const wandbKey = /^(?:local-)?[0-9a-f]{40}$/;
const awsSecret = /^[A-Za-z0-9+/]{40}$/;

function looksLikeCredentialValue(value: string): boolean {
  if (!credentialLike.test(value) || /^[A-Z_][A-Z0-9_]*$/.test(value) || value.startsWith('/')) return false;
  // a real key mixes digits and letters; words and numbers alone are settings
  return /[0-9]/.test(value) && /[A-Za-z]/.test(value);
}

/** A value that is a credential by its shape alone, or by the secret-sounding name it is assigned to. */
function credentialValue(value: string, name: string | undefined): string | undefined {
  if (wandbKey.test(value)) return 'a W&B API key';
  if (name !== undefined && /aws/i.test(name) && awsSecret.test(value)) return 'an AWS secret access key';
  if (name !== undefined && secretName.test(name) && looksLikeCredentialValue(value)) return `a credential (${name})`;
  return undefined;
}

/** What a string would leak, if anything: a token shape anywhere, or a credential after a secret-sounding name. */
export function secretIn(text: string, name?: string): string | undefined {
  for (const { pattern, what } of shapes) if (pattern.test(text)) return what;
  const whole = credentialValue(text, name);
  if (whole) return whole;
  // `--wandb-key=VALUE`, `WANDB_API_KEY=VALUE`, `password: VALUE` inside one string
  for (const match of text.matchAll(/([A-Za-z-][A-Za-z0-9_.-]*)\s*[=:]\s*["']?([^\s"']+)/g)) {
    const found = credentialValue(match[2]!, match[1]!);
    if (found) return found;
  }
  return undefined;
}

/** Fields that hold hashes or ids that look like keys (a git revision is 40 hex, like a W&B key). */
function exempt(path: string): boolean {
  return path === 'model.revision' || path === 'recipeClaims.source';
}

/** Every string in the spec; `name` is the key or the flag before it (for `--wandb-key VALUE` as two list items). */
export function checkSecrets(spec: Spec, findings: Finding[]): void {
  const report = (path: string, what: string) =>
    findings.push({
      severity: 'error',
      path,
      message: `this value looks like ${what}; secrets never go into a spec (it is stored in workflow history, and a job's env is served by the Ray dashboard)`,
      fix:
        'put the secret in an env var on the worker and name it: model.hfTokenEnv for the Hub token, ' +
        'rayHead.secretEnv: [WANDB_API_KEY] for the training job (never rayHead.jobEnv, extraArgs or a command argv), ' +
        'notify.webhooks[].urlEnv: SLACK_WEBHOOK_URL for a webhook',
    });
  const visit = (value: unknown, path: string, name: string | undefined): void => {
    if (typeof value === 'string') {
      if (exempt(path)) return;
      const what = secretIn(value, name);
      if (what) report(path, what);
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => {
        const previous = i > 0 ? value[i - 1] : undefined;
        // `--wandb-key VALUE` as two items: the flag names the value
        visit(item, `${path}[${i}]`, typeof previous === 'string' && previous.startsWith('-') ? previous : name);
      });
    } else if (value && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) visit(item, path ? `${path}.${key}` : key, key);
    }
  };
  visit(spec, '', undefined);
}
