// The input probe on 4 ssh nodes whose storage is not shared: each node's sshd sees a directory of its own at the
// same path (a mount namespace per node), as node-local /root/... paths are on a real cluster. One node lacks a
// dataset file: the probe names the node and the path, before anything is submitted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities/index.js';
import { deepMerge, presets, resolveSpecOrThrow, type Spec } from '../../src/spec/index.js';
import { tempDir } from '../support/pipeline.js';
import {
  nodeLocalMountsUnavailableReason,
  sshUnavailableReason,
  startSshCluster,
  type SshCluster,
} from '../support/sshd.js';
import { repoRoot } from '../support/temporal.js';

const skip = sshUnavailableReason() ?? nodeLocalMountsUnavailableReason();

describe('probe: training inputs on every node, storage not shared', { skip, timeout: 180_000 }, () => {
  let root: string;
  let ssh: SshCluster;
  let spec: Spec;
  const local = (node: number) => join(root, `node-${node}`);

  before(async () => {
    root = await tempDir('keel-inputs-');
    const target = join(root, 'node-local');
    await mkdir(target);
    for (let i = 1; i <= 4; i++) {
      await mkdir(local(i));
      await writeFile(join(local(i), 'train.jsonl'), '{"prompt": "1+2=", "label": "3"}\n');
      await writeFile(join(local(i), 'eval.jsonl'), '{"prompt": "2+2=", "label": "4"}\n');
    }
    const shared = join(root, 'shared');
    for (const dir of ['hf', 'torch_dist/release']) await mkdir(join(shared, dir), { recursive: true });
    await writeFile(join(shared, 'hf', 'config.json'), '{}');
    await writeFile(join(shared, 'torch_dist', 'release', '.metadata'), 'x');
    ssh = await startSshCluster({
      count: 4,
      baseAddress: '127.0.3.1',
      nodeLocalMount: { target, sources: [1, 2, 3, 4].map(local) },
    });
    const raw = deepMerge(presets['tiny-local'], {
      name: 'inputs',
      cluster: {
        nodes: ssh.nodes.map((n) => ({ host: n.host, port: n.port, gpus: 2 })),
        spares: null,
        stateDir: join(root, 'state', '{node}'),
        executor: {
          kind: 'ssh',
          user: ssh.user,
          identityFile: ssh.identityFile,
          knownHostsFile: ssh.knownHostsFile,
        },
      },
      storage: { baseDir: shared },
      rollout: { promptData: join(target, 'train.jsonl') },
      eval: { evalPromptData: [{ name: 'toy', path: join(target, 'eval.jsonl') }] },
      ckpt: { hfCheckpoint: 'hf', refLoad: 'torch_dist' },
    }) as Record<string, unknown>;
    raw.steps = { inputs: { kind: 'probe', inputs: true } };
    spec = resolveSpecOrThrow(raw);
  });
  after(async () => {
    await ssh?.stop();
    await rm(root, { recursive: true, force: true });
  });

  const probe = () => {
    const { probeNodes } = createActivities({ cwd: repoRoot, env: process.env });
    return new MockActivityEnvironment().run(probeNodes, {
      spec,
      stepId: 'inputs',
      runKey: 'inputs',
      attempt: 1,
    });
  };

  it('passes when every node holds the same files', async () => {
    const reports = (await probe()) as unknown[];
    assert.equal(reports.length, 4);
  });

  it('names the node and the path when one node lacks a dataset file, and a node whose copy differs', async () => {
    await rm(join(local(3), 'eval.jsonl'));
    await writeFile(join(local(2), 'train.jsonl'), '{"prompt": "1+2=", "label": "4"}\n');
    const error = await probe().then(
      () => assert.fail('expected the probe to fail'),
      (e: unknown) => e as { message: string; type?: string; nonRetryable?: boolean },
    );
    assert.equal(error.type, 'BadInput');
    assert.equal(error.nonRetryable, true);
    const target = join(root, 'node-local');
    assert.match(error.message, /^training inputs are not the same on every node:\n/);
    assert.ok(
      error.message.includes(`  127.0.3.3: ${target}/eval.jsonl (eval data 'toy' (eval.evalPromptData[0])) is missing`),
      error.message,
    );
    assert.match(
      error.message,
      new RegExp(
        `  127\\.0\\.3\\.2: ${target}/train\\.jsonl \\(prompt data \\(rollout\\.promptData\\)\\) differs from the other nodes: a file of 33 bytes, sha256 [0-9a-f]{12}, elsewhere a file of 33 bytes`,
      ),
    );
    assert.equal(error.message.match(/127\.0\.3\.[14]/g), null, 'nodes 1 and 4 hold everything');
  });
});
