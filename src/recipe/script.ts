// `keel render`: an equivalent bash script of a spec's steps, in DAG order, every value quoted.
import { quote } from 'shell-quote';
import type { Spec } from '../spec/schema.js';
import {
  castCommand,
  convertCommands,
  downloadCommand,
  MODEL_ARGS,
  rayHeadCommand,
  rayWorkerCommands,
  trainJob,
  type StepCommand,
} from './commands.js';
import { topologicalOrder } from './dag.js';
import { controlCharacter } from '../spec/names.js';
import { trainingInputs } from './inputs.js';
import { holderSbatchArgv } from '../cluster/slurm.js';

/** The holder job that keeps the allocation, and its nodes in order (cluster.nodes, then spares). */
function allocationLines(spec: Spec): string[] {
  if (spec.cluster.executor.kind !== 'slurm') return [];
  const nodes = spec.cluster.nodes.length + spec.cluster.spares.length;
  const sbatch = holderSbatchArgv({
    executor: spec.cluster.executor,
    runKey: spec.name,
    nodes,
    gpusPerNode: spec.cluster.gpusPerNode,
  });
  return [
    `# the allocation: ${nodes} nodes (${spec.cluster.nodes.length} + ${spec.cluster.spares.length} spare) held by a batch job`,
    '# named after the run (keel adopts it by name after a restart); every command below is a step inside it',
    `JOBID=$(${sbatch.map(q).join(' ')})`,
    'until [ "$(squeue --noheader --jobs="$JOBID" --format=%T)" = RUNNING ]; do sleep 5; done',
    'mapfile -t NODES < <(scontrol show hostnames "$(squeue --noheader --jobs="$JOBID" --format=%N)")',
    `# the spec's nodes (${spec.cluster.nodes
      .slice(0, 2)
      .map((n) => n.name ?? n.host)
      .join(', ')}, ...) stand for NODES[0], NODES[1], ...: keel puts in each one's NodeAddr (scontrol show node)`,
    'trap \'scancel --signal=TERM --full "$JOBID"; sleep 30; scancel "$JOBID"\' EXIT',
  ];
}

/**
 * Quote only what needs it (shell-quote does the quoting), so the script stays readable. A value with a control
 * character (a newline above all) is written as bash's $'...' with escapes: no rendered line ever holds a raw newline,
 * so no value can end the line it is on, or the heredoc an ssh command sits in.
 */
export function q(value: string): string {
  if (/^[A-Za-z0-9_\-.,/:=@%+]+$/.test(value)) return value;
  if (!controlCharacter.test(value)) return quote([value]);
  const escaped = [...value]
    .map((c) => {
      const code = c.charCodeAt(0);
      if (c === '\\' || c === "'") return `\\${c}`;
      if (code < 0x20 || code === 0x7f) return `\\x${code.toString(16).padStart(2, '0')}`;
      return c;
    })
    .join('');
  return `$'${escaped}'`;
}

/** One command as a person would type it on its node: cd, source the model script, env assignments, argv. */
export function renderCommand(command: StepCommand): string {
  const parts: string[] = [];
  if (command.cwd) parts.push(`cd ${q(command.cwd)}`);
  if (command.modelScript) parts.push(`source ${q(command.modelScript)}`);
  const env = Object.entries(command.env).map(([k, v]) => `${k}=${q(v)}`);
  for (const [name, from] of Object.entries(command.envFromWorker)) env.push(`${name}="$${from}"`);
  const argv = command.argv.map((a) => (a === MODEL_ARGS ? '"${MODEL_ARGS[@]}"' : q(a))).join(' ');
  parts.push([...env, argv].join(' '));
  return parts.join(' && ');
}

function onNode(spec: Spec, command: StepCommand, background: boolean): string {
  const line = renderCommand(command);
  // A subshell, so that `cd` and `source` do not leak into the lines after it.
  if (spec.cluster.executor.kind === 'local') return `(${line})${background ? ' &' : ''}`;
  if (line.includes('\n')) throw new Error(`a rendered command holds a newline: ${JSON.stringify(line)}`);
  if (spec.cluster.executor.kind === 'slurm') {
    // A step of the allocation on the node in the spec's place of this node (the allocation's nodes, in order).
    const place = spec.cluster.nodes.findIndex((n) => (n.name ?? n.host) === command.node);
    const srun = ['srun', '--overlap', '--jobid="$JOBID"', '--nodes=1', '--ntasks=1'];
    srun.push(`--nodelist="\${NODES[${Math.max(0, place)}]}"`, 'bash', '-s');
    return `${srun.join(' ')} <<'KEEL'${background ? ' &' : ''}\n${line}\nKEEL`;
  }
  const ex = spec.cluster.executor;
  const node = spec.cluster.nodes.find((n) => (n.name ?? n.host) === command.node);
  const host = node?.host ?? command.node;
  const sshArgs = ['ssh', '-o', 'BatchMode=yes'];
  const port = node?.port ?? ex.port;
  if (port !== 22) sshArgs.push('-p', String(port));
  if (ex.identityFile) sshArgs.push('-i', ex.identityFile);
  sshArgs.push('--', `${ex.user}@${host}`, 'bash', '-s');
  // The command goes to the remote bash on stdin (a quoted heredoc), so it is quoted exactly once.
  return `${sshArgs.map(q).join(' ')} <<'KEEL'${background ? ' &' : ''}\n${line}\nKEEL`;
}

function group(spec: Spec, commands: StepCommand[]): string[] {
  if (commands.length === 1) return [onNode(spec, commands[0]!, false)];
  return [...commands.map((c) => onNode(spec, c, true)), 'wait'];
}

export function renderScript(spec: Spec): string {
  const lines: string[] = [
    '#!/usr/bin/env bash',
    `# ${spec.name}${spec.preset ? ` (preset ${spec.preset})` : ''}: the commands keel runs, step by step.`,
    '# keel runs them as durable activities (retries, skips finished steps, resumes training); this script is for',
    '# reading and for running by hand.',
    'set -euo pipefail',
    `BASE_DIR=${q(spec.storage.baseDir)}`,
    '',
  ];
  if (spec.cluster.executor.kind === 'slurm') lines.push(...allocationLines(spec), '');
  for (const id of topologicalOrder(spec)) {
    const step = spec.steps[id]!;
    lines.push(`# --- step ${id} (${step.kind})${step.needs.length ? `, after ${step.needs.join(', ')}` : ''}`);
    switch (step.kind) {
      case 'probe':
        lines.push('# probe: every node reachable, GPUs healthy (nvidia-smi), host memory, disk, shared BASE_DIR;');
        lines.push('#        every train.py flag against the parsers of the slime checkout on the head node');
        if (step.inputs) {
          lines.push('#        and on every node, the same input paths training reads:');
          for (const input of trainingInputs(spec)) lines.push(`#          ${input.path} (${input.what})`);
        }
        break;
      case 'hf-download':
        lines.push(...group(spec, [downloadCommand(spec, id)]));
        break;
      case 'fp8-cast':
        if (step.engine === 'native') {
          const c = castCommand(spec);
          const flags = [step.likeSlime ? ' --like-slime' : '', step.directIo ? '' : ' --no-direct-io'].join('');
          lines.push(`keel fp8-cast --in ${q(c.argv[3]!)} --out ${q(c.argv[5]!)}${flags}`);
        } else lines.push(...group(spec, [castCommand(spec)]));
        break;
      case 'torch-dist-convert':
        lines.push(...group(spec, convertCommands(spec)));
        break;
      case 'ray-cluster':
        if (spec.cluster.executor.kind === 'slurm') {
          // Under Slurm, Ray's head and workers are blocking steps: each lasts as long as its node's Ray.
          const blocking = (c: StepCommand): StepCommand => ({ ...c, argv: [...c.argv, '--block'] });
          lines.push(onNode(spec, blocking(rayHeadCommand(spec)), true));
          lines.push('sleep 10  # the head first');
          lines.push(...rayWorkerCommands(spec).map((c) => onNode(spec, blocking(c), true)));
          break;
        }
        lines.push(...group(spec, [rayHeadCommand(spec)]));
        lines.push(...group(spec, rayWorkerCommands(spec)));
        break;
      case 'train': {
        const job = trainJob(spec);
        const submit = [
          'ray',
          'job',
          'submit',
          `--address=${job.dashboardUrl}`,
          `--runtime-env-json=${JSON.stringify({ env_vars: job.envVars })}`,
          '--',
          spec.slime.python,
          'train.py',
        ];
        const command: StepCommand = {
          title: 'train',
          node: spec.cluster.nodes[0]?.name ?? spec.cluster.nodes[0]?.host ?? 'head',
          cwd: spec.slime.dir,
          modelScript: spec.model.modelScript,
          argv: [...submit, ...job.argv],
          env: {},
          envFromWorker: {},
        };
        if (spec.rayHead.secretEnv.length)
          lines.push(
            `# the job also gets ${spec.rayHead.secretEnv.join(', ')} from the worker's environment (rayHead.secretEnv): keel writes them to a 0600 file on the head node that the entrypoint loads and deletes`,
          );
        lines.push(...group(spec, [command]));
        break;
      }
      case 'command':
        lines.push(
          renderCommand({
            title: id,
            node: step.node ?? '',
            argv: step.argv,
            env: step.env,
            envFromWorker: {},
            cwd: step.cwd,
          }),
        );
        break;
      case 'gang':
        lines.push(`# gang of ${step.nodes} nodes (MASTER_ADDR, MASTER_PORT=${step.masterPort}, NODE_RANK per node)`);
        lines.push(
          renderCommand({ title: id, node: '', argv: step.argv, env: step.env, envFromWorker: {}, cwd: step.cwd }),
        );
        break;
    }
    lines.push('');
  }
  return lines.join('\n');
}
