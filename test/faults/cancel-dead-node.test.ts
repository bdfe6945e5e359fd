// A cancel that ends CANCELED with one node dead. A real pipeline on four ssh nodes (the tiny-local layout's) (real sshd on loopback
// addresses) runs a gang step, one program per node; then node 4 dies: its sshd is stopped and, inside the test's own
// network namespace, every packet to its address is dropped (tc netem) or, where the kernel has no netem, its port
// accepts and never answers: either way an ssh to it waits out its timeout, as it would for a host that is gone. The run is cancelled: it ends CANCELED within 2 minutes, and nothing keel
// launched is left on the two live nodes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { WorkflowFailedError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { commandSpec, createTestWorker, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';
import { startDevServer } from '../support/temporal.js';
import { sshUnavailableReason, startSshCluster, type SshCluster } from '../support/sshd.js';

const dropUnavailable =
  process.env.KEEL_PRIVATE_NETNS === '1'
    ? undefined
    : 'needs the private network namespace of scripts/loopback-only.sh';

/** Drop every packet sent to `ip` on loopback (this namespace only); returns the undo. */
function dropPacketsTo(ip: string): () => void {
  const tc = (...args: string[]) => execFileSync('tc', args, { stdio: 'pipe' });
  // four bands: 1:1-1:3 take traffic as the default priomap does, 1:4 (filtered to) loses everything
  tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'prio', 'bands', '4');
  tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:4', 'handle', '40:', 'netem', 'loss', '100%');
  tc(
    'filter',
    'add',
    'dev',
    'lo',
    'parent',
    '1:0',
    'protocol',
    'ip',
    'u32',
    'match',
    'ip',
    'dst',
    `${ip}/32`,
    'flowid',
    '1:4',
  );
  return () => tc('qdisc', 'del', 'dev', 'lo', 'root');
}

/** A listener on `host:port` that accepts connections and never sends a byte; returns the undo. */
async function hangOn(host: string, port: number): Promise<() => void> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  };
}

const program = 'sleep 600; true';

/** Pids on this host of the test's program tagged `tag` (every node of this test runs on this host). */
async function processesTagged(tag: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    // the program itself (`sh -c SCRIPT TAG`), not its wrapper, whose arguments hold the same words further on
    const argv = cmdline.split('\0');
    if (argv[1] === '-c' && argv[2] === program && argv[3] === tag) pids.push(Number(entry));
  }
  return pids;
}

/** Whether an sshd process is among `pid`'s ancestors. */
async function underSshd(pid: number): Promise<boolean> {
  for (let at = pid; at > 1;) {
    const stat = await readFile(`/proc/${at}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) return false;
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    if (comm.startsWith('sshd')) return true;
    at = Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]);
  }
  return false;
}

describe('cancel with a dead node', { skip: sshUnavailableReason() ?? dropUnavailable, timeout: 300_000 }, () => {
  let env: TestWorkflowEnvironment;
  let ssh: SshCluster;
  let worker: Worker | undefined;
  let undoDrop: (() => void) | undefined;
  const leftovers: number[] = [];

  before(async () => {
    env = await startDevServer();
    ssh = await startSshCluster({ count: 4, baseAddress: '127.0.4.1' });
  });
  after(async () => {
    undoDrop?.();
    // the dead node's program could not be stopped by keel (its node was gone): the test ends it
    for (const pid of leftovers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await ssh?.stop();
    await env?.teardown();
  });

  it('ends CANCELED within 2 minutes; nothing launched is left on the live nodes', async () => {
    const dir = await tempDir('keel-cancel-dead-');
    const tag = `keel-cancel-dead-${process.pid}-${Date.now()}`;
    const spec = commandSpec({
      name: 'cancel-dead-node',
      dir,
      steps: { work: { kind: 'gang', nodes: 4, argv: ['sh', '-c', program, tag] } },
      overrides: {
        cluster: {
          nodes: ssh.nodes.map((n, i) => ({ host: n.host, port: n.port, gpus: 2, name: `node-${i + 1}` })),
          spares: null,
          stateDir: join(dir, 'nodes', '{node}'),
          executor: { kind: 'ssh', user: ssh.user, identityFile: ssh.identityFile, knownHostsFile: ssh.knownHostsFile },
        },
      },
    });
    const queue = uniqueQueue('keel-cancel-dead');
    worker = await createTestWorker(env, queue);
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: queue,
        workflowId: `cancel-dead-${Date.now()}`,
        args: [spec],
      });
      // one program per node, running and detached from its ssh session (keel's launch script has returned): until
      // then a program is still a descendant of its node's sshd, and stopping that sshd would end it with the session
      const running = await eventually(
        async () => {
          const pids = await processesTagged(tag);
          if (pids.length !== 4) return undefined;
          for (const pid of pids) if (await underSshd(pid)) return undefined;
          return pids;
        },
        60_000,
        'the gang running on all four nodes, detached from its ssh sessions',
      );
      // Node 4 dies: no sshd, and its address drops every packet.
      await ssh.stopNode(3);
      try {
        undoDrop = dropPacketsTo(ssh.nodes[3]!.host);
      } catch (error) {
        // Without the kernel's netem here, node 4's port is taken by a listener that accepts and never answers: an
        // ssh to it waits out its timeout for the server's greeting, as it would for a host that hangs.
        console.log(`  note: packets to node 4 are not dropped (${(error as Error).message.split('\n')[0]}); it hangs`);
        undoDrop = await hangOn(ssh.nodes[3]!.host, ssh.nodes[3]!.port);
      }

      const cancelledAt = Date.now();
      await handle.cancel();
      await assert.rejects(handle.result(), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError);
        assert.ok(error.cause instanceof CancelledFailure, String(error.cause));
        return true;
      });
      const took = Date.now() - cancelledAt;
      assert.equal((await handle.describe()).status.name, 'CANCELLED');
      console.log(`  cancelled with node 4 dead: CANCELED after ${(took / 1000).toFixed(1)} s`);
      assert.ok(took < 120_000, `the cancel took ${took} ms`);

      // The live nodes' programs were stopped; the dead node's is the only one left (nothing could reach it).
      const left = await processesTagged(tag);
      leftovers.push(...left);
      assert.equal(left.length, 1, `one program left (the dead node's), found ${left.length} of ${running.length}`);
      const rankOf = (pid: number) =>
        readFile(`/proc/${pid}/environ`, 'utf8')
          .then((e) => e.split('\0').find((v) => v.startsWith('NODE_RANK=')))
          .catch(() => undefined);
      assert.equal(await rankOf(left[0]!), 'NODE_RANK=3', "the program left is the dead node's (rank 3)");
    });
  });
});
