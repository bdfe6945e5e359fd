// The exact commands of every step of a spec, as argv + env + cwd. Pure: the same objects feed the executors
// (what runs) and `keel render` (what a person reads).
import { quote } from 'shell-quote';
import type { NodeSpec, Spec } from '../spec/schema.js';
import { modelPaths, underBase } from '../spec/paths.js';
import { conversionArgs, groupOrder, trainArgGroups } from './args.js';

/** Stands in an argv for the model script's MODEL_ARGS array, expanded on the node by {@link withModelArgs}. */
export const MODEL_ARGS = '@MODEL_ARGS@';

export interface StepCommand {
  /** what this command is, for logs and the rendered script */
  title: string;
  node: string;
  argv: string[];
  env: Record<string, string>;
  /** env vars copied from the worker's environment by name (secrets, endpoints): values never rendered */
  envFromWorker: Record<string, string>;
  cwd?: string;
  /** slime model script (relative to cwd) whose MODEL_ARGS replace the {@link MODEL_ARGS} marker */
  modelScript?: string;
}

export function nodeName(node: NodeSpec): string {
  return node.name ?? node.host;
}

export function nodeIp(node: NodeSpec): string {
  return node.ip ?? node.host;
}

/**
 * A fixed bash program (no spec text inside it) that sources the model script named by $1 and runs the rest of its
 * arguments with the MODEL_ARGS marker replaced by the array -- as the recipe's `source ...; cmd ${MODEL_ARGS[@]}`.
 */
const MODEL_ARGS_WRAPPER =
  'set -e; source "$1"; shift; args=(); for a in "$@"; do if [ "$a" = "' +
  MODEL_ARGS +
  '" ]; then args+=("${MODEL_ARGS[@]}"); else args+=("$a"); fi; done; exec "${args[@]}"';

/** The argv that really runs: wrapped in the fixed bash program when the command needs MODEL_ARGS. */
export function withModelArgs(command: StepCommand): string[] {
  if (!command.modelScript) return command.argv;
  return ['bash', '-c', MODEL_ARGS_WRAPPER, 'keel-model-args', command.modelScript, ...command.argv];
}

function envFromWorker(spec: Spec): Record<string, string> {
  const env: Record<string, string> = {};
  if (spec.model.hfTokenEnv) env.HF_TOKEN = spec.model.hfTokenEnv;
  if (spec.model.hfEndpointEnv) env.HF_ENDPOINT = spec.model.hfEndpointEnv;
  return env;
}

export function headNode(spec: Spec, nodes: NodeSpec[] = spec.cluster.nodes): NodeSpec {
  const head = nodes[0];
  if (!head) throw new Error('the cluster has no nodes');
  return head;
}

/** What an hf-download step fetches: the model by default, or the dataset (or model) repo the step names. */
export interface DownloadTarget {
  repoType: 'model' | 'dataset';
  repo: string;
  revision: string;
  localDir: string;
  files?: string[];
}

export function downloadTarget(spec: Spec, stepId?: string): DownloadTarget {
  const step = stepId === undefined ? undefined : spec.steps[stepId];
  const own = step?.kind === 'hf-download' ? step : undefined;
  const isModel = !own?.repo;
  return {
    repoType: own?.repoType ?? 'model',
    repo: own?.repo ?? spec.model.repo,
    revision: own?.revision ?? (isModel ? spec.model.revision : 'main'),
    localDir: own?.localDir ? underBase(spec, own.localDir) : modelPaths(spec).download,
    files: own?.files,
  };
}

export function downloadCommand(spec: Spec, stepId?: string): StepCommand {
  const target = downloadTarget(spec, stepId);
  const argv = ['hf', 'download'];
  if (target.repoType === 'dataset') argv.push('--repo-type', 'dataset');
  argv.push(target.repo, ...(target.files ?? []), '--local-dir', target.localDir);
  if (target.revision !== 'main') argv.push('--revision', target.revision);
  return {
    title: `download ${target.repoType === 'dataset' ? 'the dataset' : 'the model'} ${target.repo}`,
    node: nodeName(headNode(spec)),
    argv,
    env: {},
    envFromWorker: envFromWorker(spec),
  };
}

export function castCommand(spec: Spec): StepCommand {
  const paths = modelPaths(spec);
  return {
    title: 'cast FP8 to BF16',
    node: nodeName(headNode(spec)),
    cwd: spec.slime.dir,
    argv: [
      spec.slime.python,
      'tools/fp8_cast_bf16.py',
      '--input-fp8-hf-path',
      paths.download,
      '--output-bf16-hf-path',
      paths.bf16,
    ],
    env: {},
    envFromWorker: {},
  };
}

/** The conversion gang: one torchrun per node, same master, one node rank each. */
export function convertCommands(spec: Spec, nodes: NodeSpec[] = spec.cluster.nodes): StepCommand[] {
  const c = spec.conversion;
  const members = nodes.slice(0, c.nodes);
  const master = nodeIp(headNode(spec, members));
  const paths = modelPaths(spec);
  return members.map((node, rank) => ({
    title: `convert to torch_dist (node rank ${rank})`,
    node: nodeName(node),
    cwd: spec.slime.dir,
    modelScript: spec.model.modelScript,
    env: { PYTHONPATH: spec.slime.megatronPath, MASTER_ADDR: master, NODE_RANK: String(rank) },
    envFromWorker: {},
    argv: [
      'torchrun',
      '--nproc-per-node',
      String(c.nprocPerNode),
      '--master-addr',
      master,
      '--master-port',
      String(c.masterPort),
      `--nnodes=${c.nodes}`,
      '--node-rank',
      String(rank),
      'tools/convert_hf_to_torch_dist.py',
      MODEL_ARGS,
      ...conversionArgs(spec),
      '--hf-checkpoint',
      paths.bf16,
      '--save',
      paths.torchDist,
    ],
  }));
}

export function rayHeadCommand(spec: Spec, head: NodeSpec = headNode(spec)): StepCommand {
  const r = spec.rayHead;
  const argv = ['ray', 'start', '--head', '--node-ip-address', nodeIp(head), '--num-gpus', String(head.gpus)];
  if (r.port !== 6379) argv.push('--port', String(r.port));
  // The dashboard serves Ray's Jobs API without authentication: by default only on the head's own address.
  const host = r.dashboardHost ?? nodeIp(head);
  argv.push('--disable-usage-stats', `--dashboard-host=${host}`, `--dashboard-port=${r.dashboardPort}`);
  return { title: 'start the Ray head', node: nodeName(head), argv, env: {}, envFromWorker: {} };
}

export function rayWorkerCommands(spec: Spec, nodes: NodeSpec[] = spec.cluster.nodes): StepCommand[] {
  const head = headNode(spec, nodes);
  const address = `${nodeIp(head)}:${spec.rayHead.port}`;
  return nodes.slice(1).map((node) => ({
    title: `join the Ray cluster (${nodeName(node)})`,
    node: nodeName(node),
    argv: [
      'ray',
      'start',
      `--address=${address}`,
      '--num-gpus',
      String(node.gpus),
      '--node-ip-address',
      nodeIp(node),
      '--disable-usage-stats',
    ],
    env: {},
    envFromWorker: {},
  }));
}

export interface TrainJob {
  /** train.py's argv (after `python3`), with the MODEL_ARGS marker first */
  argv: string[];
  /** the Ray job's runtime env vars */
  envVars: Record<string, string>;
  /** the shell command the Ray job runs (what `ray job submit -- ...` would run), every value quoted */
  entrypoint: string;
  dashboardUrl: string;
}

/**
 * A fixed sh program (no spec text inside it) that loads the job's secrets from the 0600 file named by $1 on the
 * head node, deletes the file, and runs the rest of its arguments: the values reach the trainer's environment without
 * passing through Ray's runtime_env, the job's entrypoint or argv.
 */
const JOB_SECRETS_LOADER =
  'f=$1; shift; if [ ! -f "$f" ]; then echo "keel: the secret file $f of this job is missing (keel writes it before ' +
  'submitting and the job deletes it when it starts; a job started twice finds it gone)" >&2; exit 97; fi; ' +
  '. "$f"; rm -f -- "$f"; exec "$@"';

export function trainJob(
  spec: Spec,
  options: { head?: NodeSpec; numRollout?: number; secretFile?: string } = {},
): TrainJob {
  const head = options.head ?? headNode(spec);
  const groups = trainArgGroups(spec, { numRollout: options.numRollout });
  const argv = [MODEL_ARGS, ...groupOrder.flatMap((g) => groups[g])];
  const master = nodeIp(head);
  const envVars: Record<string, string> = {
    no_proxy: `localhost,127.0.0.1,0.0.0.0,${master}`,
    MASTER_ADDR: master,
    PYTHONPATH: spec.slime.megatronPath,
    ...spec.rayHead.jobEnv,
  };
  const runArgv = withModelArgs({
    title: 'train',
    node: nodeName(head),
    argv: [spec.slime.python, 'train.py', ...argv],
    env: {},
    envFromWorker: {},
    modelScript: spec.model.modelScript,
  });
  // The control worker reaches the dashboard at the head's address (also when it listens on every interface).
  const bound = spec.rayHead.dashboardHost;
  const dashboardHost = bound === undefined || bound === '0.0.0.0' || bound === '::' ? master : bound;
  return {
    argv,
    envVars,
    entrypoint: `cd ${quote([spec.slime.dir])} && ${quote(
      options.secretFile === undefined
        ? runArgv
        : ['sh', '-c', JOB_SECRETS_LOADER, 'keel-job-secrets', options.secretFile, ...runArgv],
    )}`,
    dashboardUrl: `http://${dashboardHost}:${spec.rayHead.dashboardPort}`,
  };
}
