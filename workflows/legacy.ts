// keel 0.1 resolved and planned the spec in workflow code. Kept only so that runs started by that version replay
// (see workflows/patches.ts); new runs prepare in the `prepareRun` activity and never come here.
import { preparedRun, type PreparedRun } from '../src/spec/prepare.js';

export function legacyPreparation(input: unknown): PreparedRun {
  return preparedRun(input);
}
