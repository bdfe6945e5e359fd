// keel demo, and keel local up|down|kill-node|hang-node|revive-node: the local cluster and fault injection.
import { Option, type Command } from 'commander';
import { logFormats } from '../../log.js';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { deepMerge } from '../../spec/resolve.js';
import { parseSet } from '../../spec/load.js';
import { signalNode } from '../../local/node-processes.js';
import { readClusterState, startLocalCluster, writeClusterState } from '../../local/cluster.js';
import { startLocalSlurm } from '../../local/slurm.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const localRoot = join(repoRoot, '.keel', 'local');
const stateFile = join(localRoot, 'cluster.json');

function overridesFrom(sets: string[] = []): Record<string, unknown> {
  let out: unknown = {};
  for (const s of sets) out = deepMerge(out, parseSet(s));
  return out as Record<string, unknown>;
}

interface DemoCommandOptions {
  ssh?: boolean;
  slurm?: boolean;
  set?: string[];
  seed: string;
  keepUi?: boolean;
  logFile?: string;
  logFormat?: string;
}

export function registerLocalCommands(program: Command): void {
  program
    .command('demo')
    .description('run the tiny-local pipeline end to end on a local cluster, with the Temporal Web UI up')
    .option('--ssh', 'run the nodes behind real sshd instances (ssh executor)')
    .option('--slurm', 'run the nodes under a real local Slurm cluster (slurm executor; needs root and Debian slurm)')
    .option('--set <path=value...>', 'override a field of the tiny-local spec, e.g. --set rollout.numRollout=140')
    .option('--seed <n>', 'seed of the tiny model generator', '0')
    .option('--keep-ui', 'keep the Temporal server and Web UI up after the run, until Ctrl-C')
    .option(
      '--log-file <file>',
      "where the control worker's logs go (JSON lines; default .keel/logs/demo-<UTC time>.log, printed at start)",
    )
    .addOption(
      new Option(
        '--log-format <format>',
        "the worker's logs in this format on stderr (level warn), or in the --log-file",
      ).choices(logFormats),
    )
    .addHelpText(
      'after',
      "\nThe terminal shows the progress and what went wrong in words; the worker's own log lines (keel's and the" +
        "\nTemporal SDK's) go to the log file. KEEL_LOG_LEVEL sets their level (default info in a file, warn on stderr).",
    )
    .action(async (options: DemoCommandOptions) => {
      const { runDemo } = await import('../../local/demo.js');
      process.exitCode = await runDemo({
        repoRoot,
        ssh: options.ssh,
        slurm: options.slurm,
        overrides: overridesFrom(options.set),
        seed: Number(options.seed),
        keepUi: options.keepUi,
        logs: { logFormat: options.logFormat, logFile: options.logFile },
      });
    });

  const local = program.command('local').description('the local cluster: N loopback nodes on this machine');
  local
    .command('up')
    .description('start the local cluster (hub, sshd per node with --ssh) and keep it up until Ctrl-C')
    .option('--nodes <n>', 'nodes', '4')
    .option('--spares <n>', 'spare nodes', '1')
    .option('--ssh', 'one sshd per node')
    .option(
      '--slurm',
      'a real Slurm cluster over the nodes (slurmctld, munged, one slurmd per node): the slurm executor',
    )
    .action(async (options: { nodes: string; spares: string; ssh?: boolean; slurm?: boolean }) => {
      if (options.ssh && options.slurm) throw new Error('--ssh and --slurm exclude each other: choose one executor');
      const cluster = await startLocalCluster({
        root: localRoot,
        repoRoot,
        nodes: Number(options.nodes),
        spares: Number(options.spares),
        ssh: options.ssh,
        log: (l) => console.log(l),
      });
      const slurm = options.slurm
        ? await startLocalSlurm({
            dir: join(localRoot, 'slurm'),
            nodes: cluster.nodes.length + cluster.spares.length,
            gpusPerNode: 2,
            log: (l) => console.log(l),
          }).catch(async (error: unknown) => {
            await cluster.stop();
            throw error;
          })
        : undefined;
      await writeClusterState(stateFile, cluster);
      console.log(
        `local cluster up: ${cluster.nodes.map((n) => n.host).join(', ')} (spares ${cluster.spares.map((n) => n.host).join(', ') || 'none'})`,
      );
      console.log(`export KEEL_HF_ENDPOINT=${cluster.hubEndpoint}`);
      const overrides = cluster.specOverrides() as { cluster: Record<string, unknown> };
      if (slurm) {
        console.log(`export SLURM_CONF=${slurm.conf}   # for sinfo, squeue, scancel`);
        overrides.cluster.executor = { kind: 'slurm', slurmConf: slurm.conf };
        overrides.cluster.stateDir = join(localRoot, 'nodes', '{node}');
      }
      console.log('spec overrides:', JSON.stringify(overrides));
      const stop = async () => {
        await slurm?.stop();
        await cluster.stop();
        await rm(stateFile, { force: true });
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      await new Promise(() => undefined);
    });

  const faults: [string, string, NodeJS.Signals][] = [
    ['kill-node', 'kill every process of node I (as if it lost power)', 'SIGKILL'],
    ['hang-node', 'freeze every process of node I (SIGSTOP)', 'SIGSTOP'],
    ['revive-node', 'resume a hung node (SIGCONT); a killed node comes back when the run heals the cluster', 'SIGCONT'],
  ];
  for (const [name, description, signal] of faults) {
    local
      .command(name)
      .description(description)
      .argument('<index>', 'node index (0 = 127.0.1.1)')
      .action(async (index: string) => {
        const state = await readClusterState(stateFile);
        const node = [...state.nodes, ...state.spares][Number(index)];
        if (!node) throw new Error(`no node ${index}`);
        const pids = await signalNode(node.stateDir, signal);
        console.log(`${name} ${node.host}: ${signal} to ${pids.length} process(es)`);
      });
  }
}
