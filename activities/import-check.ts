// What training imports, imported on every node before anything is submitted: a node whose image lacks deep_ep or
// whose sglang cannot load its libraries fails minutes into the job otherwise. Run as train.py runs: in slime.dir,
// with the job's environment (PYTHONPATH to Megatron, LD_LIBRARY_PATH and the rest of rayHead.jobEnv).
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { executorFor, target } from './context.js';

/** Prints one `module<TAB>error` line per module that fails to import; exits 0 either way. */
const importScript = `import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as error:
        print(name + "\\t" + (type(error).__name__ + ": " + str(error)).replace("\\n", " ")[:400], flush=True)
`;

/** Problems on one node, each naming the module and Python's error; none when every module imports. */
export async function importProblems(spec: Spec, node: NodeSpec): Promise<string[]> {
  const modules = spec.slime.imports;
  if (modules.length === 0) return [];
  const env = { ...spec.cluster.env, PYTHONPATH: spec.slime.megatronPath, ...spec.rayHead.jobEnv };
  try {
    const r = await executorFor(spec).run(target(node), [spec.slime.python, '-c', importScript, ...modules], {
      cwd: spec.slime.dir,
      env,
      timeoutMs: 300_000,
    });
    if (r.exitCode !== 0)
      return [`${spec.slime.python} could not run the import check: ${r.stderr.trim().slice(-300)}`];
    return r.stdout
      .split('\n')
      .filter((line) => line.includes('\t'))
      .map((line) => {
        const [name, error] = line.split('\t');
        return `cannot import ${name} (slime.imports) in ${spec.slime.dir}: ${error}`;
      });
  } catch (error) {
    return [`the import check failed: ${(error as Error).message.split('\n')[0]}`];
  }
}
