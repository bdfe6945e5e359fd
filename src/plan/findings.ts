// A planner finding: what is wrong (or worth knowing), where in the spec, and how to fix it.
export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  severity: Severity;
  /** spec path, e.g. perf.expertModelParallelSize */
  path: string;
  message: string;
  fix?: string;
}

export function hasErrors(findings: readonly Finding[]): boolean {
  return findings.some((f) => f.severity === 'error');
}
