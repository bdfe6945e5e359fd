// Hostile and careless specs: text that would end a heredoc in `keel render`'s script, hostfiles that are not
// hostfiles, huge specs, durations of 0 or of eons, keys that every JavaScript object has, counts that would make the
// planner enumerate. Each is refused with an error naming its path (or rendered as inert data); nothing runs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { execa } from 'execa';
import { plan } from '../../src/plan/index.js';
import { renderScript } from '../../src/recipe/script.js';
import { loadSpec, parseHostfile } from '../../src/spec/load.js';
import { deepMerge, resolveSpecInput, type Spec } from '../../src/spec/index.js';

const repoRoot = new URL('../..', import.meta.url).pathname;
const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});
async function scratch(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'keel-hardening-spec-'));
  roots.push(root);
  return root;
}

function problemsOf(raw: unknown): string[] {
  const r = resolveSpecInput(raw);
  assert.equal(r.ok, false, 'expected the spec to be refused');
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
}

function validTiny(overrides: Record<string, unknown> = {}): Spec {
  const r = resolveSpecInput({ preset: 'tiny-local', overrides });
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems));
  return r.spec;
}

const payload = 'org/x\nKEEL\ntouch MARKER #';

describe('row 1: spec text never becomes shell code in `keel render`', () => {
  it('model.repo with a newline is refused by validation, naming the field', () => {
    const found = problemsOf({ preset: 'tiny-local', overrides: { model: { repo: payload } } });
    assert.equal(found.length, 1);
    assert.match(found[0]!, /^model\.repo: contains a control character/);
  });
  for (const field of [
    { storage: { baseDir: '/data\n/x' } },
    { slime: { dir: 'a\rb' } },
    { extraArgs: ['--x\u0000'] },
    { cluster: { stateDir: '/s\u001b[2J' } },
  ]) {
    it(`variant: a control character in ${JSON.stringify(field)} is refused`, () => {
      const found = problemsOf({ preset: 'tiny-local', overrides: field });
      assert.match(found[0]!, /contains a control character/);
    });
  }

  /** Run a rendered script with stand-ins for ssh (runs what it is given with bash) and hf (records its argv). */
  async function runRendered(script: string): Promise<{ dir: string; hfArgs: string[][] }> {
    const dir = await scratch();
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(
      join(bin, 'ssh'),
      '#!/bin/sh\n# stand-in for ssh: the last argument names the remote program; stdin is its script\nexec bash -s\n',
    );
    await writeFile(
      join(bin, 'hf'),
      `#!/bin/sh\nf=${dir}/hf-$$.args; for a in "$@"; do printf '%s\\0' "$a" >> "$f"; done\n`,
    );
    await chmod(join(bin, 'ssh'), 0o755);
    await chmod(join(bin, 'hf'), 0o755);
    await writeFile(join(dir, 'run.sh'), script);
    execFileSync('bash', [join(dir, 'run.sh')], { cwd: dir, env: { PATH: `${bin}:/usr/bin:/bin`, HOME: dir } });
    const hfArgs: string[][] = [];
    for (const name of await readdir(dir))
      if (name.startsWith('hf-')) hfArgs.push((await readFile(join(dir, name), 'utf8')).split('\0').slice(0, -1));
    return { dir, hfArgs };
  }

  it('a repo that slipped past validation stays one argument of hf over ssh: no heredoc is ended, nothing runs', async () => {
    const spec = validTiny();
    spec.cluster.executor = { kind: 'ssh', user: 'root', port: 22, strictHostKeyChecking: true, connectTimeoutSec: 5 };
    spec.steps = { download: { kind: 'hf-download', needs: [], verifySha256: false, repoType: 'model' } };
    spec.model.repo = payload;
    const script = renderScript(spec);
    const { dir, hfArgs } = await runRendered(script);
    assert.equal(existsSync(join(dir, 'MARKER')), false, 'touch never ran');
    assert.equal(hfArgs.length, 1);
    assert.equal(hfArgs[0]![1], payload, 'the repo reached hf unchanged, as one argument');
  });
  it('variant: a command step argv with a newline renders as $-quoted data and runs as one argument', async () => {
    const spec = validTiny();
    const argv = ['hf', 'line one\nKEEL\ntouch MARKER #', "it's"];
    spec.steps = { say: { kind: 'command', needs: [], argv, env: { NOTE: 'a\nb' } } };
    const script = renderScript(spec);
    assert.ok(!script.split('\n').some((line) => line.startsWith('touch')), script);
    const { dir, hfArgs } = await runRendered(script);
    assert.equal(existsSync(join(dir, 'MARKER')), false);
    assert.deepEqual(hfArgs, [argv.slice(1)]);
  });
});

describe('row 11: hostfiles', () => {
  for (const [text, expected] of [
    ['10.0.0.1 slot=abc\n', /hostfile line 1: "slot=abc" is not 'slot=N' or 'slots=N'/],
    ['10.0.0.1 slots=16x\n', /hostfile line 1: "slots=16x" is not/],
    ['10.0.0.1 max_slots=2\n', /hostfile line 1: "max_slots=2" is not .*max_slots and other fields are not read/],
    ['10.0.0.1 slot=8\n$(x) slot=8\n', /hostfile line 2: host "\$\(x\)" must be a host name or an IP address/],
    ['10.0.0.1 slot=8\u0000\n', /hostfile line 1: contains a control character/],
    ['10.0.0.1 slot=99999\n', /hostfile line 1: "slot=99999" is not/],
    ['10.0.0.1 slot=2000\n', /slot=2000 is over 1024 GPUs per node/],
    ['10.0.0.1 slot=8 extra\n', /hostfile line 1: expected 'ip slot=N'/],
    ['# only comments\n\n', /the hostfile lists no hosts/],
    ['-oProxyCommand=x slot=8\n', /host "-oProxyCommand=x" must be a host name/],
  ] as const) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseHostfile(text), expected);
    });
  }
  it('accepts IPv4, IPv6 and host names with slot= or slots=, and comments', () => {
    assert.deepEqual(parseHostfile('node-1.example slots=4 # four\nfe80::1 slot=2\n\t10.0.0.3\r\n'), [
      { host: 'node-1.example', gpus: 4 },
      { host: 'fe80::1', gpus: 2 },
      { host: '10.0.0.3', gpus: 8 },
    ]);
  });
  it('/etc/passwd as the hostfile is refused at cluster.hostfile, naming the first bad line', async () => {
    const r = await loadSpec({ preset: 'tiny-local', sets: ['cluster.hostfile=/etc/passwd'] });
    assert.equal(r.ok, false);
    const [problem] = r.ok ? [] : r.problems;
    assert.equal(problem?.path, 'cluster.hostfile');
    assert.match(problem!.message, /\/etc\/passwd: hostfile line 1: /);
  });
  it('a directory or a FIFO as the hostfile is refused without waiting', async () => {
    const dir = await scratch();
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    for (const file of [dir, join(dir, 'fifo')]) {
      const r = await loadSpec({ preset: 'tiny-local', sets: [`cluster.hostfile=${file}`] });
      assert.equal(r.ok, false);
      assert.match(
        r.ok ? '' : `${r.problems[0]!.path}: ${r.problems[0]!.message}`,
        /^cluster\.hostfile: .*not a regular file|EISDIR/,
      );
    }
  });
  it('variant: a host name with shell metacharacters in cluster.nodes is refused', () => {
    const found = problemsOf({ preset: 'tiny-local', overrides: { cluster: { nodes: [{ host: 'a;reboot' }] } } });
    assert.match(found[0]!, /^cluster\.nodes\[0\]\.host: must be a host name or an IP address/);
  });
});

describe('row 12: size', () => {
  it('a 50 MB spec file is refused by its size, before it is parsed', async () => {
    const dir = await scratch();
    const file = join(dir, 'big.yaml');
    await writeFile(file, `preset: tiny-local\noverrides:\n  extraArgs:\n${'    - "--x"\n'.repeat(4_500_000)}`);
    const started = performance.now();
    const r = await loadSpec({ file });
    const ms = performance.now() - started;
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.problems[0]!.message, /big\.yaml: \d+ bytes, over the limit of 1048576 for a spec/);
    assert.ok(ms < 5000, `refused in ${ms} ms`);
  });
  it('variant: a spec object over 1 MiB as JSON (the Web UI, the client) is refused', () => {
    const found = problemsOf({ preset: 'tiny-local', overrides: { extraArgs: Array(300_000).fill('--flag') } });
    assert.match(found[0]!, /^\(spec\): is \d+ bytes as JSON, over the limit of 1048576/);
  });
  it('variant: lists are bounded (nodes, argv, needs)', () => {
    const nodes = Array.from({ length: 10_001 }, (_, i) => ({ host: `n${i}` }));
    assert.match(
      problemsOf({ preset: 'tiny-local', overrides: { cluster: { nodes } } })[0]!,
      /^cluster\.nodes: at most 10000/,
    );
  });
});

describe('row 13 and issue 13: durations and counts have bounds', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { policies: { heartbeatTimeout: '0s' } },
      /^policies\.heartbeatTimeout: must be at least 1s \(0 does not turn it off\)$/,
    ],
    [{ policies: { heartbeatTimeout: '0ms' } }, /^policies\.heartbeatTimeout: must be at least 1s/],
    [{ policies: { hang: { rollout: '99999999999999999999d' } } }, /^policies\.hang\.rollout: must be at most 30d$/],
    [{ policies: { hang: { startup: '0m' } } }, /^policies\.hang\.startup: must be at least 1s/],
    [{ policies: { crashLoop: { window: '400d' } } }, /^policies\.crashLoop\.window: must be at most 365d$/],
    [{ policies: { initialRetryInterval: '0s' } }, /^policies\.initialRetryInterval: must be at least 100ms/],
    [{ rollout: { numRollout: 9007199254740991 } }, /^rollout\.numRollout: must be at most 1000000/],
    [{ perf: { pipelineModelParallelSize: 1e9 } }, /^perf\.pipelineModelParallelSize: Too big/],
    [{ ckpt: { saveInterval: 1e12 } }, /^ckpt\.saveInterval: Too big/],
    [{ cluster: { nodes: [{ host: 'a', gpus: 1e6 }] } }, /^cluster\.nodes\[0\]\.gpus: Too big/],
  ];
  for (const [overrides, expected] of cases) {
    it(`refuses ${JSON.stringify(overrides)}`, () => {
      const started = performance.now();
      const found = problemsOf({ preset: 'tiny-local', overrides });
      assert.ok(performance.now() - started < 1000);
      assert.ok(
        found.some((p) => expected.test(p)),
        found.join('\n'),
      );
    });
  }
  it('the largest accepted run is planned by counting: a million rollouts in milliseconds', () => {
    const spec = validTiny({ rollout: { numRollout: 1_000_000 }, ckpt: { saveInterval: 1 } });
    const started = performance.now();
    const report = plan(spec);
    assert.ok(performance.now() - started < 1000);
    assert.equal(report.schedule.checkpoints, 1_000_000);
    assert.equal(report.schedule.firstCheckpoint, 0);
    assert.equal(report.schedule.lastCheckpoint, 999_999);
  });
  it('the checkpoint schedule counts as slime saves (every interval, and the last rollout)', () => {
    const at = (numRollout: number, saveInterval: number) =>
      plan(validTiny({ rollout: { numRollout }, ckpt: { saveInterval } })).schedule;
    assert.deepEqual(at(100, 20), { checkpoints: 5, firstCheckpoint: 19, lastCheckpoint: 99, evals: 5 });
    assert.deepEqual(at(105, 20), { checkpoints: 6, firstCheckpoint: 19, lastCheckpoint: 104, evals: 5 });
    assert.deepEqual(at(7, 20), { checkpoints: 1, firstCheckpoint: 6, lastCheckpoint: 6, evals: 0 });
  });
});

describe('issue 13: keys every JavaScript object has', () => {
  it('steps.cast.needs: [download, constructor] fails with a path-qualified error in well under a second', () => {
    const started = performance.now();
    const found = problemsOf({
      preset: 'tiny-local',
      overrides: { steps: { cast: { needs: ['download', 'constructor'] } } },
    });
    assert.ok(performance.now() - started < 1000);
    assert.equal(found.length, 1);
    assert.match(found[0]!, /^steps\.cast\.needs\[1\]: unknown step 'constructor'/);
  });
  for (const key of ['toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
    it(`variant: needs: [${key}] is an unknown step`, () => {
      const found = problemsOf({ preset: 'tiny-local', overrides: { steps: { cast: { needs: [key] } } } });
      assert.match(found[0]!, new RegExp(`^steps\\.cast\\.needs\\[0\\]: unknown step '${key}'`));
    });
  }
  it('a step with the id constructor is refused', () => {
    const found = problemsOf({ preset: 'tiny-local', overrides: { steps: { constructor: { kind: 'probe' } } } });
    assert.match(found[0]!, /^steps\.constructor: "constructor" is not allowed as a key/);
  });
  it('__proto__ keys anywhere are refused, not silently dropped (JSON from the Web UI or a file)', () => {
    for (const text of [
      '{"preset":"tiny-local","overrides":{"__proto__":{"x":1}}}',
      '{"preset":"tiny-local","overrides":{"cluster":{"env":{"__proto__":"x"}}}}',
      '{"preset":"tiny-local","overrides":{"rayHead":{"jobEnv":{"constructor":"x"}}}}',
    ]) {
      const found = problemsOf(JSON.parse(text));
      assert.match(found[0]!, /is not allowed as a key/, text);
    }
    assert.equal(({} as { x?: unknown }).x, undefined, 'no prototype was polluted');
  });
  it('variant: overlays merged at the edge refuse them too', () => {
    assert.throws(
      () => deepMerge({}, JSON.parse('{"__proto__":{"polluted":1}}')),
      /'__proto__' is not allowed as a key/,
    );
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
  });
});

describe('row 14: keel presets NAME', () => {
  for (const name of ['constructor', '__proto__']) {
    it(`keel presets ${name}: exit 2 naming the presets, no stack trace`, async () => {
      const r = await execa('node', ['bin/keel.js', 'presets', name], { cwd: repoRoot, reject: false });
      assert.equal(r.exitCode, 2);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(`unknown preset "${name}" .*\\(presets: deepseek-r1-128xh100, qwen3-4b-1node, tiny-local\\)`),
      );
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
    });
  }
});

describe('row 2 (spec side): each env-var field names a variable of its kind', () => {
  it('model.hfEndpointEnv naming a secret variable is refused', () => {
    const found = problemsOf({
      preset: 'tiny-local',
      overrides: { model: { hfEndpointEnv: 'AWS_SECRET_ACCESS_KEY' } },
    });
    assert.deepEqual(found, [
      'model.hfEndpointEnv: must end in ENDPOINT or URL (e.g. HF_ENDPOINT): this field names a variable of that kind',
    ]);
  });
  it('model.hfTokenEnv and temporal.apiKeyEnv name token / key variables', () => {
    assert.match(
      problemsOf({ preset: 'tiny-local', overrides: { model: { hfTokenEnv: 'PATH' } } })[0]!,
      /must contain TOKEN/,
    );
    assert.match(
      problemsOf({ preset: 'tiny-local', overrides: { temporal: { apiKeyEnv: 'HOME' } } })[0]!,
      /must contain KEY or TOKEN/,
    );
  });
  it('rayHead.secretEnv takes upper-case names that do not steer how programs start', () => {
    for (const [name, expected] of [
      ['wandb_key', /must be an upper-case variable name/],
      ['LD_PRELOAD', /changes how programs start/],
      ['PYTHONPATH', /changes how programs start/],
      ['hf_abcdefghijklmnopqrstuvwxyz', /upper-case/],
    ] as const) {
      const found = problemsOf({ preset: 'tiny-local', overrides: { rayHead: { secretEnv: [name] } } });
      assert.match(found[0]!, /^rayHead\.secretEnv\[0\]: /);
      assert.match(found[0]!, expected);
    }
    assert.deepEqual(validTiny({ rayHead: { secretEnv: ['WANDB_API_KEY'] } }).rayHead.secretEnv, ['WANDB_API_KEY']);
  });
});

describe('variant: maps keyed by the trainer log', () => {
  it("a metric named __proto__ or constructor in slime's log is kept as a metric, and never replaces a prototype", async () => {
    const { parseSlimeLogLine } = await import('../../src/progress/slime-log.js');
    const event = parseSlimeLogLine(
      "rollout 3: {'__proto__': {'polluted': 1}, 'constructor': 2.5, 'rollout/raw_reward': 0.5}",
    );
    assert.ok(event && event.type === 'rollout-stats', JSON.stringify(event));
    assert.equal(event.metrics.constructor, 2.5);
    assert.deepEqual(
      Object.keys(event.metrics),
      ['constructor', 'rollout/raw_reward'],
      'the dict value is dropped, not the key',
    );
    assert.equal(event.metrics['rollout/raw_reward'], 0.5);
    assert.equal((event.metrics as { polluted?: unknown }).polluted, undefined);
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
  });
});

describe('variant: file names a spec gives for a download', () => {
  it('steps.*.files must be paths inside the repo', () => {
    const found = problemsOf({
      preset: 'tiny-local',
      overrides: { steps: { download: { files: ['config.json', '../../etc/passwd'] } } },
    });
    assert.match(found[0]!, /^steps\.download\.files\[1\]: a file of the repo: has an empty, '\.' or '\.\.' segment/);
  });
});

describe('variant: ssh options smuggled in as a user name', () => {
  it('cluster.executor.user must be a user name, and the rendered ssh line ends its options with --', () => {
    const found = problemsOf({
      preset: 'tiny-local',
      overrides: { cluster: { executor: { kind: 'ssh', user: '-oProxyCommand=touch /tmp/x' } } },
    });
    assert.match(found[0]!, /^cluster\.executor\.user: must be a user name/);
    const spec = validTiny({ cluster: { executor: { kind: 'ssh', user: 'keel' } } });
    assert.match(renderScript(spec), /ssh -o BatchMode=yes -- keel@127\.0\.1\.1 bash -s <<'KEEL'/);
  });
});
