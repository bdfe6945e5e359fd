// The probe asks the cluster's own slime checkout for its argument catalogue (scripts/slime_args_catalogue.py, sent
// as `python3 -c`, reading the parsers of slime, Megatron and the sglang and sglang_router installed there, without
// importing them) and refuses the run before
// anything is submitted when train.py would get an unknown flag or a value its parsers reject.
import { ApplicationFailure, log } from '@temporalio/activity';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseCatalogue, withShippedSglang } from '../src/plan/catalogue.js';
import { checkTrainFlags, describeCatalogue, type ArgCatalogue } from '../src/plan/flags.js';
import { headNode } from '../src/recipe/commands.js';
import type { Spec } from '../src/spec/schema.js';
import { failureTypes } from '../src/failure-types.js';
import { executorFor, target } from './context.js';

const catalogueScript = fileURLToPath(new URL('../scripts/slime_args_catalogue.py', import.meta.url));

/** The catalogue of the slime checkout on the head node (undefined when the node cannot be asked). */
export async function clusterCatalogue(spec: Spec): Promise<ArgCatalogue | undefined> {
  const script = await readFile(catalogueScript, 'utf8');
  const argv = [spec.slime.python, '-c', script, '--slime', spec.slime.dir, '--megatron', spec.slime.megatronPath];
  const result = await executorFor(spec)
    .run(target(headNode(spec)), [...argv, '--sglang-auto'], { timeoutMs: 120_000, env: spec.cluster.env })
    .catch((error: unknown) => ({ exitCode: -1, stdout: '', stderr: (error as Error).message }));
  if (result.exitCode !== 0) {
    log.warn('could not read the argument catalogue of the cluster', { stderr: result.stderr.slice(0, 500) });
    return undefined;
  }
  return parseCatalogue(result.stdout, `the argument catalogue of ${spec.slime.dir} on the head node`);
}

/** Fail at once (ConfigError) when a train.py flag is unknown to, or rejected by, the slime that will run. */
export async function checkFlagsOnCluster(spec: Spec): Promise<{ checkedAgainst?: string; notes: string[] }> {
  if (!Object.values(spec.steps).some((s) => s.kind === 'train')) return { notes: [] };
  const onNode = await clusterCatalogue(spec);
  if (!onNode) return { notes: ['the argument catalogue of the cluster could not be read: flags not checked'] };
  const { catalogue, notes } = await withShippedSglang(onNode);
  const findings = checkTrainFlags(spec, catalogue);
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length) {
    throw ApplicationFailure.nonRetryable(
      `train.py flags the slime on the cluster would not take (${describeCatalogue(catalogue)}):\n` +
        errors.map((f) => `  ${f.path}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ''}`).join('\n'),
      failureTypes.configError,
    );
  }
  return {
    checkedAgainst: describeCatalogue(catalogue),
    notes: [...notes, ...findings.map((f) => `${f.path}: ${f.message}`)],
  };
}
