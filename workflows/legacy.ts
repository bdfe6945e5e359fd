// keel 0.1 resolved and planned the spec in workflow code. Kept only so that runs started by that version replay
// (see workflows/patches.ts); new runs prepare in the `prepareRun` activity and never come here.
import { ApplicationFailure } from '@temporalio/workflow';
import { plan } from '../src/plan/index.js';
import { formatProblems, resolveSpecInput } from '../src/spec/resolve.js';
import type { Spec } from '../src/spec/schema.js';
import { failureTypes } from './definitions.js';

export function legacyPreparation(input: unknown): { spec: Spec; warnings: { path: string; message: string }[] } {
  const resolved = resolveSpecInput(input);
  if (!resolved.ok) {
    throw ApplicationFailure.create({
      type: failureTypes.invalidSpec,
      message: `invalid spec:\n${formatProblems(resolved.problems)}`,
      details: [resolved.problems],
      nonRetryable: true,
    });
  }
  const report = plan(resolved.spec);
  const errors = report.findings.filter((f) => f.severity === 'error');
  if (errors.length) {
    throw ApplicationFailure.create({
      type: failureTypes.planError,
      message: `the plan has errors:\n${errors.map((f) => `  ${f.path}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ''}`).join('\n')}`,
      details: [errors],
      nonRetryable: true,
    });
  }
  return { spec: resolved.spec, warnings: report.findings.filter((f) => f.severity !== 'info') };
}
