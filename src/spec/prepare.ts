// A run's spec and plan from what a person typed, or a permanent failure naming every problem. Pure: the
// `prepareRun` activity runs it for new runs; replays of keel 0.1 runs run it in workflow code (workflows/pipeline.ts).
import { ApplicationFailure } from '@temporalio/common';
import { failureTypes } from '../failure-types.js';
import { plan } from '../plan/index.js';
import { formatProblems, resolveSpecInput } from './resolve.js';
import type { Spec } from './schema.js';

export interface PreparedRun {
  spec: Spec;
  /** the plan's warnings (its errors stop the run before any node is touched) */
  warnings: { path: string; message: string }[];
}

/** The spec, validated; an invalid one is a permanent failure naming every problem by its path. */
export function validatedSpec(input: unknown): Spec {
  const resolved = resolveSpecInput(input);
  if (!resolved.ok) {
    throw ApplicationFailure.create({
      type: failureTypes.invalidSpec,
      message: `invalid spec:\n${formatProblems(resolved.problems)}`,
      details: [resolved.problems],
      nonRetryable: true,
    });
  }
  return resolved.spec;
}

/** Validate and plan; plan errors are a permanent failure that names each with its fix. */
export function preparedRun(input: unknown): PreparedRun {
  const spec = validatedSpec(input);
  const report = plan(spec);
  const errors = report.findings.filter((f) => f.severity === 'error');
  if (errors.length) {
    throw ApplicationFailure.create({
      type: failureTypes.planError,
      message: `the plan has errors:\n${errors.map((f) => `  ${f.path}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ''}`).join('\n')}`,
      details: [errors],
      nonRetryable: true,
    });
  }
  return { spec, warnings: report.findings.filter((f) => f.severity !== 'info') };
}
