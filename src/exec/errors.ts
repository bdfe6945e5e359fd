// Typed executor errors. `type` is a stable string that activities can map to retryable / non-retryable failures.

export class ExecError extends Error {
  readonly type: string = 'ExecError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A launch spec is malformed (bad id, env name, relative path): retrying cannot help. */
export class InvalidLaunchSpecError extends ExecError {
  override readonly type = 'InvalidLaunchSpec';
}

/** A secret named by a spec is not set on the control side. */
export class MissingSecretError extends ExecError {
  override readonly type = 'MissingSecret';
  constructor(readonly envName: string) {
    super(`secret env var ${envName} is not set on the control side`);
  }
}

/** ssh itself failed (exit 255): connection refused, host key mismatch, authentication. Usually transient. */
export class SshConnectionError extends ExecError {
  override readonly type = 'SshConnectionError';
  constructor(
    readonly host: string,
    readonly stderr: string,
  ) {
    super(`ssh to ${host} failed: ${stderr.trim() || 'exit 255'}`);
  }
}

export class ExecTimeoutError extends ExecError {
  override readonly type = 'ExecTimeout';
  constructor(
    readonly node: string,
    readonly timeoutMs: number,
  ) {
    super(`command on ${node} timed out after ${timeoutMs} ms`);
  }
}

/** A node-side helper script failed unexpectedly (disk full, permissions, missing tools). */
export class NodeScriptError extends ExecError {
  override readonly type = 'NodeScriptError';
  constructor(
    readonly node: string,
    readonly operation: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`${operation} on ${node} failed (exit ${exitCode}): ${stderr.trim()}`);
  }
}

export class UnknownProcessError extends ExecError {
  override readonly type = 'UnknownProcess';
  constructor(
    readonly node: string,
    readonly id: string,
  ) {
    super(`no process record for ${id} on ${node}`);
  }
}
