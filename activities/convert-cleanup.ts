// Before a conversion (re)starts: remove what a failed attempt left in the step's own output directory. slime's tool
// saves into iter_0000001/ (Megatron overwrites into a non-empty directory, keeping files it does not rewrite), then
// rank 0 writes the tracker and runs shutil.move(iter_0000001, release), which nests into an existing release/ and
// leaves it stale. Only these three names, only inside the torch_dist directory, and never while a member of the
// gang is still running (a retried activity re-attaches to it instead).
import { log } from '@temporalio/activity';
import { gangMemberId, type Executor, type NodeTarget } from '../src/exec/index.js';
import { iterationDirName, trackerFileName } from '../src/progress/checkpoints.js';
import { joinPath, stripTrailingSlash } from '../src/spec/paths.js';

export function conversionLeftovers(torchDistDir: string): string[] {
  const dir = stripTrailingSlash(torchDistDir);
  return [joinPath(dir, 'release'), joinPath(dir, iterationDirName(1)), joinPath(dir, trackerFileName)];
}

export async function clearFailedConversion(options: {
  executor: Executor;
  gangId: string;
  nodes: NodeTarget[];
  torchDistDir: string;
}): Promise<{ cleared: boolean }> {
  const { executor, gangId, nodes } = options;
  const statuses = await Promise.all(nodes.map((node, rank) => executor.status(node, gangMemberId(gangId, rank))));
  if (statuses.some((s) => s?.state === 'running')) return { cleared: false }; // in flight: re-attach, touch nothing
  const leftovers = conversionLeftovers(options.torchDistDir);
  const result = await executor.run(nodes[0]!, ['rm', '-rf', '--', ...leftovers], { timeoutMs: 600_000 });
  if (result.exitCode !== 0) throw new Error(`could not clear ${leftovers.join(', ')}: ${result.stderr.trim()}`);
  log.info('cleared what an earlier conversion attempt left', { leftovers });
  return { cleared: true };
}
