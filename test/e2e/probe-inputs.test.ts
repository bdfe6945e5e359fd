// The input probe on 4 ssh nodes whose storage is not shared: each node's sshd sees a directory of its own at the
// same path (a mount namespace per node), as node-local /root/... paths are on a real cluster. The slime checkout is a
// git clone on every node: Python run in it on some nodes (the conversion's __pycache__) leaves it the same, a real
// change on one node is named. One node lacks a dataset file: the probe names the node and the path, before anything
// is submitted. And a worker that does not see storage.baseDir as the nodes do is refused before any download.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, cp, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
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
  let target: string;
  const local = (node: number) => join(root, `node-${node}`);

  before(async () => {
    root = await tempDir('keel-inputs-');
    target = join(root, 'node-local');
    await mkdir(target);
    for (let i = 1; i <= 4; i++) {
      await mkdir(local(i));
      await writeFile(join(local(i), 'train.jsonl'), '{"prompt": "1+2=", "label": "3"}\n');
      await writeFile(join(local(i), 'eval.jsonl'), '{"prompt": "2+2=", "label": "4"}\n');
    }
    // the slime checkout: a git clone of the stand-in's files, copied to every node (the same commit everywhere)
    const checkout = join(root, 'slime-src');
    await mkdir(checkout);
    for (const file of ['train.py', 'slime_contract.py'])
      await cp(join(repoRoot, 'workloads/tiny', file), join(checkout, file));
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', checkout, '-c', 'user.name=keel', '-c', 'user.email=keel@localhost', ...args]);
    git('init', '-q');
    git('add', '.');
    git('commit', '-q', '-m', 'slime');
    for (let i = 1; i <= 4; i++) await cp(checkout, join(local(i), 'slime'), { recursive: true });
    // nodes that share a directory the worker does not see: node-local/nodes-store -> one directory on every node
    const nodesStore = join(root, 'nodes-store');
    await mkdir(nodesStore);
    for (let i = 1; i <= 4; i++) await symlink(nodesStore, join(local(i), 'nodes-store'));
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
      slime: { dir: join(target, 'slime') },
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

  const probe = (with_: Spec = spec) => {
    const { probeNodes } = createActivities({ cwd: repoRoot, env: process.env });
    return new MockActivityEnvironment().run(probeNodes, {
      spec: with_,
      stepId: 'inputs',
      runKey: 'inputs',
      attempt: 1,
    });
  };

  it('passes when every node holds the same files', async () => {
    const reports = (await probe()) as unknown[];
    assert.equal(reports.length, 4);
  });

  const failure = (run: Promise<unknown>) =>
    run.then(
      () => assert.fail('expected the probe to fail'),
      (e: unknown) => e as { message: string; type?: string; nonRetryable?: boolean },
    );

  it('Python run in the slime checkout on 2 of 4 nodes (__pycache__) leaves the inputs the same', async () => {
    const env = { ...process.env };
    delete env.PYTHONDONTWRITEBYTECODE; // Python as a node runs it: writing bytecode next to what it imports
    for (const i of [1, 3]) {
      execFileSync(
        join(repoRoot, '.venv', 'bin', 'python3'),
        ['-c', 'import sys; sys.path.insert(0, sys.argv[1]); import slime_contract', join(local(i), 'slime')],
        { env },
      );
      // no .gitignore in the checkout: keel itself leaves __pycache__ out
      assert.ok((await readdir(join(local(i), 'slime', '__pycache__'))).length > 0);
    }
    const reports = (await probe()) as unknown[];
    assert.equal(reports.length, 4);
  });

  it('a real change to a file of the slime checkout on one node is an error naming the node and the file', async () => {
    await appendFile(join(local(4), 'slime', 'slime_contract.py'), '\n# edited on this node only\n');
    const error = await failure(probe());
    assert.equal(error.type, 'BadInput');
    assert.match(
      error.message,
      new RegExp(
        `  127\\.0\\.3\\.4: ${target}/slime \\(the slime checkout \\(slime\\.dir\\)\\) differs from the other nodes: a git checkout at commit [0-9a-f]{12} with 1 local change \\(slime_contract\\.py\\), elsewhere a clean git checkout at commit [0-9a-f]{12}`,
      ),
    );
    assert.equal(error.message.match(/127\.0\.3\.[123]/g), null, error.message);
    execFileSync('git', ['-C', join(local(4), 'slime'), 'checkout', '-q', '--', 'slime_contract.py']);
  });

  it('a worker that does not see storage.baseDir as the nodes do is refused, naming the path', async () => {
    // the nodes share node-local/nodes-store (one directory behind a symlink on each); the worker has no such path
    const store = join(target, 'nodes-store');
    const error = await failure(probe({ ...spec, storage: { ...spec.storage, baseDir: store } }));
    assert.equal(error.type, 'ConfigError');
    assert.equal(error.nonRetryable, true);
    assert.match(
      error.message,
      new RegExp(
        `^the keel worker does not see storage\\.baseDir ${store} as the nodes do: ${store}/\\.keel/probe-[0-9a-f-]+, written on 127\\.0\\.3\\.1, is not there\\.`,
      ),
    );
  });

  it("a module training needs that a node cannot import is named with the node and Python's error", async () => {
    const error = await failure(probe({ ...spec, slime: { ...spec.slime, imports: ['json', 'deep_ep'] } }));
    assert.equal(error.type, 'NodeUnhealthy');
    for (const node of ['127.0.3.1', '127.0.3.2', '127.0.3.3', '127.0.3.4']) {
      assert.ok(
        error.message.includes(
          `  ${node}: cannot import deep_ep (slime.imports) in ${target}/slime: ModuleNotFoundError: No module named 'deep_ep'`,
        ),
        error.message,
      );
    }
    assert.doesNotMatch(error.message, /cannot import json/);
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
