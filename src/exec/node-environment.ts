// The environment a program starts with on a node. Never the control worker's: the worker holds secrets (its own
// credentials, the raw values of named secrets) that a launched program must not inherit. Over ssh, sshd builds a
// login environment; the local executor builds the same small set from the worker's account, and the step adds its
// own variables and its named secrets on top.

/** What a login session has (what sshd sets, plus the locale): nothing else of the worker reaches a program. */
export const loginVariables = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LC_ALL', 'TZ'] as const;

/** A fallback PATH when the worker has none (sshd's default). */
const defaultPath = '/usr/local/bin:/usr/bin:/bin';

export function loginEnvironment(from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = { PATH: defaultPath };
  for (const name of loginVariables) {
    const value = from[name];
    if (value !== undefined && value !== '') env[name] = value;
  }
  return env;
}
