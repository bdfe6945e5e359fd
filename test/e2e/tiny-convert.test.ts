// The tiny HF -> torch_dist converter (workloads/tiny/tools/convert_hf_to_torch_dist.py) under the real torchrun:
// two "nodes" on this host (two torchrun processes, node ranks 0/1, master 127.0.0.1) write a release/ that keel's
// own completion check accepts, holding exactly the BF16 weights; bad flags fail the way Megatron's do.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createHash } from 'node:crypto';
import { createActivities } from '../../activities/index.js';
import { checkTorchDistRelease } from '../../src/progress/checkpoints.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';
import { repoRoot } from '../support/temporal.js';
import { freePort } from '../support/ray-cluster.js';
import {
  converterScript,
  convertWithTorchrun,
  listDir,
  python,
  run,
  runPython,
  tinyModelArgs,
  writeRandomBf16Model,
} from '../support/tiny-train.js';

const parallelArgs = [
  ...['--tensor-model-parallel-size', '1', '--pipeline-model-parallel-size', '2'],
  ...['--expert-tensor-parallel-size', '1', '--expert-model-parallel-size', '1'],
  ...['--decoder-first-pipeline-num-layers', '2', '--decoder-last-pipeline-num-layers', '2'],
];

// Two pipeline stages of two layers; with 4 nodes each stage also splits its experts over 2 expert-parallel ranks.
const layouts = [
  { nodes: 2, name: 'PP2', parallelArgs },
  {
    nodes: 4,
    name: 'PP2 x EP2',
    parallelArgs: parallelArgs.map((arg, i, all) => (all[i - 1] === '--expert-model-parallel-size' ? '2' : arg)),
  },
];

describe('tiny torch_dist converter (real torchrun, several nodes on one host)', () => {
  let root: string;
  let hfDir: string;

  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'keel-tiny-convert-'));
    hfDir = path.join(root, 'bf16');
    await writeRandomBf16Model(hfDir);
  });
  after(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  for (const layout of layouts) {
    it(`${layout.nodes} nodes, ${layout.name}: a complete release/ with one shard per rank and the HF weights`, async () => {
      const saveDir = path.join(root, `torch_dist-${layout.nodes}`);
      const results = await convertWithTorchrun({
        hfDir,
        saveDir,
        nodes: layout.nodes,
        masterPort: await freePort('127.0.0.1'),
        parallelArgs: layout.parallelArgs,
      });
      results.forEach((result, rank) =>
        assert.equal(result.code, 0, `node ${rank} failed:\n${result.stderr.slice(-3000)}`),
      );
      const rank0 = results[0]!.stdout;
      assert.match(rank0, /saving checkpoint at iteration {7}1 to .* in torch_dist format/);
      assert.match(rank0, /successfully saved checkpoint from iteration {7}1 to /);

      const check = await checkTorchDistRelease(saveDir);
      assert.deepEqual(check.problems, []);
      assert.equal(check.complete, true);
      assert.equal(
        (await fs.readFile(path.join(saveDir, 'latest_checkpointed_iteration.txt'), 'utf8')).trim(),
        'release',
      );
      const files = await listDir(path.join(saveDir, 'release'));
      assert.deepEqual(
        files.filter((name) => name.endsWith('.distcp')),
        Array.from({ length: layout.nodes }, (_, rank) => `__${rank}_0.distcp`),
      );
      assert.ok(!files.includes('.metadata.tmp'));
      assert.deepEqual(await listDir(saveDir), ['latest_checkpointed_iteration.txt', 'release']);
      const metadata = JSON.parse(await fs.readFile(path.join(saveDir, 'release', 'metadata.json'), 'utf8')) as {
        sharded_backend: string;
      };
      assert.equal(metadata.sharded_backend, 'torch_dist');

      // Read the DCP checkpoint back (no process group) and compare every tensor with the HF shards.
      const report = JSON.parse(
        await runPython(
          [
            'import sys, json, torch, torch.distributed.checkpoint as dcp, tiny_model',
            'hf = tiny_model.read_state_dict(sys.argv[1])',
            'meta = dcp.FileSystemReader(sys.argv[2]).read_metadata().state_dict_metadata',
            'state = {k: torch.empty(v.size, dtype=v.properties.dtype) for k, v in meta.items()}',
            'dcp.load(state, checkpoint_id=sys.argv[2], no_dist=True)',
            'diff = max(float((state[k].float() - hf[k]).abs().max()) for k in hf)',
            "print(json.dumps({'hf': sorted(hf), 'dcp': sorted(state), 'maxdiff': diff,",
            "                  'dtypes': sorted({str(v.dtype) for v in state.values()})}))",
          ].join('\n'),
          [hfDir, path.join(saveDir, 'release')],
        ),
      ) as { hf: string[]; dcp: string[]; maxdiff: number; dtypes: string[] };
      assert.ok(report.hf.length > 20);
      assert.deepEqual(report.dcp, report.hf);
      assert.equal(report.maxdiff, 0);
      assert.deepEqual(report.dtypes, ['torch.bfloat16']);
    });
  }

  it("keel's convert step clears a failed attempt's iter_0000001/ and a stale release/: the retry equals a clean conversion", async () => {
    // Without keel, the stand-in (like slime's tool) nests into an existing release/ and leaves it stale.
    const stale = path.join(root, 'td-stale');
    await fs.mkdir(path.join(stale, 'release'), { recursive: true });
    await fs.writeFile(path.join(stale, 'release', '__5_0.distcp'), 'stale shard');
    const [plain] = await convertWithTorchrun({
      hfDir,
      saveDir: stale,
      nodes: 2,
      masterPort: await freePort('127.0.0.1'),
      parallelArgs,
    });
    assert.equal(plain?.code, 0, plain?.stderr.slice(-2000));
    assert.ok((await listDir(path.join(stale, 'release'))).includes('iter_0000001'), 'nested into the stale release/');
    assert.equal((await checkTorchDistRelease(stale)).complete, false);

    const crashFlag = path.join(root, 'crash-once');
    const torchDist = path.join(root, 'td-step');
    const spec = resolveSpecOrThrow({
      preset: 'tiny-local',
      overrides: {
        name: 'convert-retry',
        storage: { baseDir: path.join(root, 'shared') },
        cluster: {
          stateDir: path.join(root, 'nodes', '{node}'),
          env: { PATH: '.venv/bin:/usr/local/bin:/usr/bin:/bin', TINY_CONVERT_CRASH_ONCE: crashFlag },
        },
        model: { bf16Dir: hfDir, torchDistDir: torchDist },
        conversion: { nodes: 2, masterPort: await freePort('127.0.0.1'), pipelineModelParallelSize: 2 },
      },
    });
    const { convertCheckpoint } = createActivities({ cwd: repoRoot, env: process.env });
    const attempt = (n: number): Promise<Record<string, unknown>> =>
      // each call is a new attempt of the step: a new activity, scheduled now (a Temporal retry of one attempt keeps
      // its first schedule time and re-attaches to what that attempt launched)
      new MockActivityEnvironment({ scheduledTimestampMs: Date.now() }).run(convertCheckpoint, {
        spec,
        stepId: 'convert',
        runKey: 'convert-retry',
        attempt: n,
      }) as Promise<Record<string, unknown>>;
    const tree = async (dir: string) => {
      const files: Record<string, string> = {};
      for (const name of await fs.readdir(dir, { recursive: true })) {
        const file = path.join(dir, name);
        if ((await fs.stat(file)).isFile())
          files[name] = createHash('sha256')
            .update(await fs.readFile(file))
            .digest('hex');
      }
      return files;
    };

    // A clean conversion by the step, kept aside as the reference (same paths, so the same side files).
    assert.equal((await attempt(1)).clearedLeftovers, true);
    assert.equal((await checkTorchDistRelease(torchDist)).complete, true);
    const clean = await tree(path.join(torchDist, 'release'));
    await fs.rename(torchDist, `${torchDist}-clean`);

    // A stale, incomplete release/ from before, then an attempt that dies after writing a partial iter_0000001/.
    await fs.mkdir(path.join(torchDist, 'release'), { recursive: true });
    await fs.writeFile(path.join(torchDist, 'release', '__5_0.distcp'), 'stale shard');
    await fs.writeFile(crashFlag, '');
    await assert.rejects(attempt(1), /injected crash/);
    assert.ok((await listDir(path.join(torchDist, 'iter_0000001'))).includes('__99_0.distcp'));

    // The retry clears iter_0000001/, release/ and the tracker first; its release/ equals the clean one, file by file.
    assert.equal((await attempt(2)).clearedLeftovers, true);
    assert.deepEqual(await listDir(torchDist), ['latest_checkpointed_iteration.txt', 'release']);
    // Every file byte for byte, except DCP's .metadata (a pickle that carries a fresh save id): read both back instead.
    const retried = await tree(path.join(torchDist, 'release'));
    assert.deepEqual(Object.keys(retried).sort(), Object.keys(clean).sort());
    assert.deepEqual({ ...retried, '.metadata': '' }, { ...clean, '.metadata': '' });
    assert.ok(Object.keys(clean).includes('.metadata') && Object.keys(clean).includes('__1_0.distcp'));
    const same = await runPython(
      [
        'import sys, torch, torch.distributed.checkpoint as dcp',
        'def load(d):',
        '    meta = dcp.FileSystemReader(d).read_metadata().state_dict_metadata',
        '    state = {k: torch.empty(v.size, dtype=v.properties.dtype) for k, v in meta.items()}',
        '    dcp.load(state, checkpoint_id=d, no_dist=True)',
        '    return state',
        'a, b = load(sys.argv[1]), load(sys.argv[2])',
        'print(len(a), sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a))',
      ].join('\n'),
      [path.join(torchDist, 'release'), path.join(`${torchDist}-clean`, 'release')],
    );
    assert.match(same.trim(), /^\d{2,} True$/);
  });

  it('a model flag that contradicts config.json fails every node with a clear message', async () => {
    const modelArgs = (await tinyModelArgs()).map((arg, i, all) => (all[i - 1] === '--hidden-size' ? '96' : arg));
    const saveDir = path.join(root, 'mismatch');
    const results = await convertWithTorchrun({
      hfDir,
      saveDir,
      nodes: 2,
      masterPort: await freePort('127.0.0.1'),
      parallelArgs,
      modelArgs,
    });
    for (const result of results) {
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /--hidden-size 96 does not match the checkpoint/);
    }
    assert.deepEqual(await listDir(saveDir), []);
  });

  it('unknown or abbreviated flags are argparse errors (exit 2); a layout Megatron refuses exits 1', async () => {
    const modelArgs = await tinyModelArgs();
    const common = ['--hf-checkpoint', hfDir, '--save', path.join(root, 'never')];
    const typo = await run([python, converterScript, ...modelArgs, ...common, '--pipeline-model-paralel-size', '2']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unrecognized arguments: --pipeline-model-paralel-size/);
    const abbreviated = await run([python, converterScript, ...modelArgs, ...common, '--pipeline-model-parallel', '2']);
    assert.equal(abbreviated.code, 2);

    const layout = await run(
      [python, converterScript, ...modelArgs, ...common, '--pipeline-model-parallel-size', '3'],
      {
        env: { RANK: '0', WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1' },
      },
    );
    assert.equal(layout.code, 1);
    assert.match(layout.stderr, /do not divide evenly/);
  });
});
