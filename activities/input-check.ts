// Every input path training reads must be on every node, and the same there: the prompt and eval data (slime's
// RolloutManager runs on whichever node Ray picks), --hf-checkpoint, --ref-load, and the slime and Megatron
// checkouts. One POSIX sh script per node fingerprints them (a file: size and sha256; a git checkout: its HEAD and the
// content of every file that differs from it; another directory: the names and sizes of its files). What running
// Python writes (__pycache__, *.pyc) is left out: the conversion runs Python in the slime checkout on some nodes only.
// Paths travel as arguments, never in the script.
import { ApplicationFailure } from '@temporalio/activity';
import { nodeName } from '../src/recipe/commands.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { trainingInputs } from '../src/recipe/inputs.js';
import { failureTypes } from '../src/failure-types.js';
import { executorFor, target } from './context.js';

const fingerprintScript = [
  'for p in "$@"; do',
  '  if [ -f "$p" ]; then',
  '    printf "file %s %s\\n" "$(wc -c < "$p" | tr -d " ")" "$(sha256sum < "$p" | cut -d " " -f 1)"',
  '  elif [ -d "$p" ] && [ "$(git -C "$p" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$p" && pwd -P)" ]; then',
  // a git checkout: HEAD, and the content of every file that differs from it (tracked or not, ignored ones left out)
  '    head=$(git -C "$p" rev-parse HEAD 2>/dev/null || echo -)',
  '    list=$(git -C "$p" --no-optional-locks status --porcelain --untracked-files=all 2>/dev/null | grep -v -e "__pycache__/" -e "\\.pyc\\"\\{0,1\\}\\$" | while IFS= read -r line; do',
  '      f=${line#???}; f=${f##* -> }',
  '      if [ -f "$p/$f" ]; then s=$(sha256sum < "$p/$f" | cut -d " " -f 1); else s=deleted; fi',
  '      printf "%s %s\\n" "$s" "$f"',
  '    done | LC_ALL=C sort)',
  '    first=$(printf "%s\\n" "$list" | head -n 1 | cut -d " " -f 2-)',
  '    printf "git %s %s %s %s\\n" "$head" "$(printf "%s" "$list" | grep -c .)" "$(printf "%s" "$list" | sha256sum | cut -d " " -f 1)" "$first"',
  '  elif [ -d "$p" ]; then',
  // what running Python leaves behind (__pycache__, *.pyc) is not an input
  '    list=$(cd "$p" && find . \\( -name .git -o -name __pycache__ \\) -prune -o -type f ! -name "*.pyc" -printf "%P %s\\n" | LC_ALL=C sort)',
  '    printf "dir %s %s\\n" "$(printf "%s" "$list" | grep -c .)" "$(printf "%s" "$list" | sha256sum | cut -d " " -f 1)"',
  '  else',
  '    echo missing',
  '  fi',
  'done',
].join('\n');

async function fingerprints(spec: Spec, node: NodeSpec, paths: string[]): Promise<string[] | string> {
  try {
    const r = await executorFor(spec).run(target(node), ['sh', '-c', fingerprintScript, 'keel-inputs', ...paths], {
      // sha256 of prompt data of gigabytes on a parallel file system: the probe heartbeats meanwhile
      timeoutMs: 2 * 3600_000,
      env: spec.cluster.env,
    });
    const lines = r.stdout.trim().split('\n');
    if (r.exitCode !== 0 || lines.length !== paths.length) return `the input check failed: ${r.stderr.trim()}`;
    return lines;
  } catch (error) {
    return `unreachable: ${(error as Error).message.split('\n')[0]}`;
  }
}

function describe(fingerprint: string): string {
  const [kind, a, b] = fingerprint.split(' ');
  if (kind === 'file') return `a file of ${a} bytes, sha256 ${b?.slice(0, 12)}`;
  if (kind === 'dir') return `a directory of ${a} files`;
  if (kind === 'git') {
    const first = fingerprint.split(' ').slice(4).join(' ');
    const commit = a === '-' ? 'with no commit' : `at commit ${a?.slice(0, 12)}`;
    if (b === '0') return `a clean git checkout ${commit}`;
    return `a git checkout ${commit} with ${b} local change${b === '1' ? '' : 's'} (${first}${b === '1' ? '' : ', ...'})`;
  }
  return fingerprint;
}

/** Problems, each naming the node and the path; none when every input is on every node and the same. */
export async function inputProblems(spec: Spec, nodes: NodeSpec[] = spec.cluster.nodes): Promise<string[]> {
  const inputs = trainingInputs(spec);
  const results = await Promise.all(
    nodes.map((n) =>
      fingerprints(
        spec,
        n,
        inputs.map((i) => i.path),
      ),
    ),
  );
  const problems: string[] = [];
  results.forEach((r, n) => {
    if (typeof r === 'string') problems.push(`${nodeName(nodes[n]!)}: ${r}`);
  });
  inputs.forEach((input, i) => {
    const seen = results.map((r) => (typeof r === 'string' ? undefined : r[i]));
    const present = seen.filter((f): f is string => f !== undefined && f !== 'missing');
    const counts = new Map<string, number>();
    for (const f of present) counts.set(f, (counts.get(f) ?? 0) + 1);
    const common = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    seen.forEach((f, n) => {
      const node = nodeName(nodes[n]!);
      if (f === 'missing') problems.push(`${node}: ${input.path} (${input.what}) is missing`);
      else if (f !== undefined && common !== undefined && f !== common) {
        problems.push(
          `${node}: ${input.path} (${input.what}) differs from the other nodes: ${describe(f)}, elsewhere ${describe(common)}`,
        );
      }
    });
  });
  return problems;
}

/** Fail the run at once when an input is missing or differs on a node: a retry cannot put it there. */
export async function checkInputsOnNodes(spec: Spec): Promise<{ inputs: number }> {
  const problems = await inputProblems(spec);
  if (problems.length) {
    throw ApplicationFailure.nonRetryable(
      `training inputs are not the same on every node:\n${problems.map((p) => `  ${p}`).join('\n')}\n` +
        'put them in shared storage (storage.baseDir) or copy them to every node',
      failureTypes.badInput,
    );
  }
  return { inputs: trainingInputs(spec).length };
}
