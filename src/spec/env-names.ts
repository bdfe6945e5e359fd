// Names of environment variables in a spec. A spec names variables, never their values; each field that names a
// worker variable accepts only names of its kind, so that a spec cannot point a field at an unrelated secret (an
// endpoint field at an AWS key: its value would end up in an error message or a plain environment).
import { z } from 'zod';

const namePattern = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export const variableName = z
  .string()
  .regex(namePattern, 'must be an environment variable name (letters, digits, _), not a value');

/** A variable name for one field: also matches `pattern` (say what in `what`). */
export function variableNameMatching(pattern: RegExp, what: string) {
  return variableName.refine((name) => !namePattern.test(name) || pattern.test(name), {
    message: `must ${what}: this field names a variable of that kind`,
  });
}

/** Variables that steer the loader, the shell or the interpreter: never set from a secret. */
const reserved =
  /^(PATH|HOME|USER|LOGNAME|SHELL|IFS|ENV|BASH_ENV|CDPATH|PS4|TMPDIR|LD_.*|PYTHON.*|MASTER_ADDR|MASTER_PORT|RAY_.*)$/;

/** A secret's variable name: upper case, and not one that changes how programs start. */
export const secretEnvName = variableName
  .refine((name) => !namePattern.test(name) || /^[A-Z_][A-Z0-9_]*$/.test(name), {
    message: 'must be an upper-case variable name (e.g. WANDB_API_KEY)',
  })
  .refine((name) => !reserved.test(name), {
    message: 'names a variable that changes how programs start (PATH, LD_*, PYTHON*, RAY_*, ...): not a secret',
  });
