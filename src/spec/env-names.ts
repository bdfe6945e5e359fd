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

/** Values that are URLs (or look like one): a field that names a variable holding a URL never takes the URL itself. */
const urlLike = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/|^\/\/|^www\.|^[^\s/]+\.[A-Za-z]{2,}(:\d+)?\//;

/**
 * The name of a variable holding a secret URL (a webhook: whoever has it can post). A URL given instead is refused
 * with the fix, and never repeated in the message.
 */
export function urlVariableName(pattern: RegExp, what: string, example: string) {
  const name = variableNameMatching(pattern, what);
  return z.string().superRefine((value, ctx) => {
    if (urlLike.test(value.trim())) {
      ctx.addIssue({
        code: 'custom',
        message:
          `must name the env var that holds the URL (e.g. ${example}), not the URL itself: the URL is a secret -- ` +
          "set it in the worker's environment and name the variable here",
      });
      return;
    }
    const named = name.safeParse(value);
    if (!named.success)
      for (const issue of named.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
  });
}
