// Row 4: secrets pasted into a spec are refused wherever they are (flags, headers, job env, command argv), with the
// fix; and the training job gets its secrets by name (rayHead.secretEnv) through a 0600 file on the head node that
// its entrypoint loads and deletes -- never through Ray's runtime_env, the entrypoint or argv.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { execa } from 'execa';
import { jobSecretFile, placeJobSecrets } from '../../activities/job-secrets.js';
import { plan } from '../../src/plan/index.js';
import { secretIn } from '../../src/plan/secrets.js';
import { trainJob } from '../../src/recipe/commands.js';
import { renderScript } from '../../src/recipe/script.js';
import { absolutize } from '../../src/spec/paths.js';
import { presetNames, resolveSpecOrThrow, type Spec } from '../../src/spec/index.js';

const repoRoot = new URL('../..', import.meta.url).pathname;
const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

// Made-up credentials of the published shapes (none of them is real).
const wandbHex = 'a3f1c2d4e5b6978812345678901234567890abcd';
const hfToken = 'hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789';
const ghToken = 'ghp_0123456789abcdefghijABCDEFGHIJklmnopqr';
const awsKeyId = 'AKIAIOSFODNN7EXAMPLE';
const awsSecret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

function secretFindings(overrides: Record<string, unknown>): string[] {
  const spec = resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides });
  return plan(spec)
    .findings.filter((f) => f.severity === 'error' && /secrets never go into a spec/.test(f.message))
    .map((f) => `${f.path}: ${f.message}`);
}

describe('row 4: the plan refuses secrets anywhere in a spec', () => {
  const rows: [string, Record<string, unknown>, RegExp][] = [
    [
      '--wandb-key=<40 hex>',
      { extraArgs: [`--wandb-key=${wandbHex}`] },
      /^extraArgs\[0\]: this value looks like a W&B API key/,
    ],
    [
      'Bearer hf_... in a command header',
      { steps: { notify: { kind: 'command', argv: ['curl', '-H', `Authorization: Bearer ${hfToken}`, 'x'] } } },
      /^steps\.notify\.argv\[2\]: this value looks like a Hugging Face token/,
    ],
    [
      'an AWS key id in jobEnv',
      { rayHead: { jobEnv: { AWS_ACCESS_KEY_ID: awsKeyId } } },
      /^rayHead\.jobEnv\.AWS_ACCESS_KEY_ID: this value looks like an AWS access key id/,
    ],
    [
      'an AWS secret key in jobEnv',
      { rayHead: { jobEnv: { AWS_SECRET_ACCESS_KEY: awsSecret } } },
      /^rayHead\.jobEnv\.AWS_SECRET_ACCESS_KEY: this value looks like an AWS secret access key/,
    ],
    [
      'ghp_... in extraArgs',
      { extraArgs: ['--github-token', ghToken] },
      /^extraArgs\[1\]: this value looks like a GitHub token/,
    ],
    [
      'hf_... as a value',
      { extraArgs: ['--hub-token', hfToken] },
      /^extraArgs\[1\]: this value looks like a Hugging Face token/,
    ],
    [
      'a private key in a step env',
      { steps: { k: { kind: 'command', argv: ['true'], env: { KEY: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc' } } } },
      /^steps\.k\.env\.KEY: this value looks like a private key/,
    ],
    [
      '--wandb-key <40 hex> as two items',
      { extraArgs: ['--wandb-key', wandbHex] },
      /^extraArgs\[1\]: this value looks like a W&B API key/,
    ],
    [
      'a password in a URL',
      { rollout: { promptData: 'https://user:pa55word@data.example/dapo.jsonl' } },
      /^rollout\.promptData: this value looks like a URL with a password in it/,
    ],
    [
      'WANDB_API_KEY=... inside one argv word',
      { steps: { w: { kind: 'command', argv: ['env', 'WANDB_API_KEY=Xy7pQ2rS9tU4vW1zA8bC', 'python'] } } },
      /^steps\.w\.argv\[1\]: this value looks like a credential \(WANDB_API_KEY\)/,
    ],
  ];
  for (const [name, overrides, expected] of rows) {
    it(`${name}: refused, naming the field and the fix`, () => {
      const found = secretFindings(overrides);
      assert.ok(
        found.some((f) => expected.test(f)),
        found.join('\n') || 'no finding',
      );
      const spec = resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides });
      const finding = plan(spec).findings.find((f) => expected.test(`${f.path}: ${f.message}`))!;
      assert.match(finding.fix!, /rayHead\.secretEnv: \[WANDB_API_KEY\]/);
    });
  }
  it('no false alarm on the presets, paths, names of variables, flags and revisions', () => {
    for (const preset of presetNames) {
      const spec = resolveSpecOrThrow({ preset });
      assert.deepEqual(
        plan(spec).findings.filter((f) => /secrets never/.test(f.message)),
        [],
        preset,
      );
    }
    for (const benign of [
      '/root/slime/scripts/models/deepseek-v3.sh',
      'HF_TOKEN',
      '--max-tokens-per-gpu=16384',
      'slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std',
      'deepseek-ai/DeepSeek-R1',
      'https://huggingface.co',
      '--wandb-project=r1-repro',
      'token_budget=2048',
    ])
      assert.equal(secretIn(benign), undefined, benign);
    assert.deepEqual(secretFindings({ model: { revision: '0123456789abcdef0123456789abcdef01234567' } }), []);
  });
});

describe('rayHead.secretEnv: the training job gets secrets by name', () => {
  async function tinySpecWithSecret(): Promise<{ spec: Spec; dir: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'keel-hardening-secrets-'));
    roots.push(dir);
    const spec = absolutize(
      resolveSpecOrThrow({
        preset: 'tiny-local',
        overrides: {
          rayHead: { secretEnv: ['WANDB_API_KEY'] },
          cluster: { stateDir: join(dir, 'state', '{node}') },
        },
      }),
      repoRoot,
    );
    return { spec, dir };
  }

  it('the value goes to a 0600 file on the head node; the entrypoint names only the file and deletes it', async () => {
    const { spec, dir } = await tinySpecWithSecret();
    const head = spec.cluster.nodes[0]!;
    const value = `wandb-value-${process.pid}-Zq8`;
    const file = jobSecretFile(spec, head, 'keel-run/train gen 1')!;
    assert.ok(file.startsWith(join(dir, 'state', head.host, 'job-secrets')), file);
    await placeJobSecrets(spec, head, file, { WANDB_API_KEY: value });
    assert.equal((await stat(file)).mode & 0o777, 0o600);

    // The trainer: a stand-in interpreter that records what it sees (the real entrypoint otherwise, cd and all).
    const seen = join(dir, 'seen');
    const python = join(dir, 'python-stand-in');
    await writeFile(python, `#!/bin/sh\nprintf '%s' "$WANDB_API_KEY" > ${seen}\n`);
    await chmod(python, 0o755);
    const job = trainJob({ ...spec, slime: { ...spec.slime, python } }, { head, secretFile: file });
    for (const text of [job.entrypoint, JSON.stringify(job.envVars), job.argv.join(' ')])
      assert.ok(!text.includes(value) && !text.includes('WANDB_API_KEY'), text.slice(0, 200));
    const result = await execa('sh', ['-c', job.entrypoint], { reject: false, env: { PATH: process.env.PATH! } });
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(await readFile(seen, 'utf8'), value, 'the trainer saw the value');
    await assert.rejects(stat(file), /ENOENT/, 'the file is gone once the job started');

    // A second start of the same job finds no file: it stops with a clear error rather than run without its secrets.
    const again = await execa('sh', ['-c', job.entrypoint], { reject: false, env: { PATH: process.env.PATH! } });
    assert.equal(again.exitCode, 97);
    assert.match(again.stderr, /the secret file .* of this job is missing/);
  });

  it('a name the worker does not have fails as a configuration error naming the field', async () => {
    const { spec } = await tinySpecWithSecret();
    const head = spec.cluster.nodes[0]!;
    await assert.rejects(placeJobSecrets(spec, head, jobSecretFile(spec, head, 'x')!, {}), (error: Error) => {
      assert.match(
        error.message,
        /rayHead\.secretEnv names WANDB_API_KEY, which is not set in the worker's environment/,
      );
      return true;
    });
  });

  it('no secrets named: the entrypoint is unchanged', async () => {
    const spec = resolveSpecOrThrow({ preset: 'tiny-local' });
    assert.equal(jobSecretFile(spec, spec.cluster.nodes[0]!, 'x'), undefined);
    assert.doesNotMatch(trainJob(spec).entrypoint, /keel-job-secrets/);
    assert.match(renderScript(spec), /ray job submit/);
  });
});
