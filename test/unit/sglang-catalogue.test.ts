// SGLang as slime sees it, read from the real sglang and sglang-router wheels at the versions slime's image pins
// (scripts/sglang-pins.txt; scripts/sglang-wheels.sh downloads them without dependencies, nothing is installed):
// ServerArgs' dataclass fields and add_cli_args calls as --sglang-*, the router's as --router-*. The probe's on-node
// path (the activity, sending the script as `python -c`, --sglang-auto finding the installed packages) runs the same
// code against the same wheels laid out as installed packages.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { clusterCatalogue } from '../../activities/flag-check.js';
import { loadCatalogue, parseCatalogue } from '../../src/plan/catalogue.js';
import { trainFlags, type ArgCatalogue } from '../../src/plan/flags.js';
import { absolutize } from '../../src/spec/paths.js';
import { deepMerge, presets, resolveSpecOrThrow } from '../../src/spec/index.js';
import { tempDir } from '../support/pipeline.js';
import { repoRoot } from '../support/temporal.js';

const script = join(repoRoot, 'scripts', 'slime_args_catalogue.py');
const python = join(repoRoot, '.venv', 'bin', 'python3');
let wheels: { sglang: string; router: string };
let fromWheels: ArgCatalogue;

/** R1's own --sglang-* flags, as keel renders them. */
const r1SglangFlags = () =>
  trainFlags(resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides: {} }), undefined)
    .map((f) => f.flag)
    .filter((f) => f.startsWith('--sglang-'));

before(() => {
  const [sglang, router] = execFileSync('bash', [join(repoRoot, 'scripts', 'sglang-wheels.sh')])
    .toString()
    .trim()
    .split('\n');
  wheels = { sglang: sglang!, router: router! };
  const argv = [script, '--slime', join(repoRoot, 'workloads/tiny'), '--sglang-wheel', wheels.sglang];
  const text = execFileSync(python, [...argv, '--sglang-router-wheel', wheels.router]).toString();
  fromWheels = parseCatalogue(text, 'catalogue from the wheels');
});

describe('the SGLang catalogue from the real wheels (sglang 0.5.15.post1, sglang-router 0.3.2)', () => {
  it('reads both packages at the pinned versions', () => {
    assert.match(wheels.sglang, /sglang-0\.5\.15\.post1-/);
    assert.match(wheels.router, /sglang_router-0\.3\.2-/);
    assert.equal(fromWheels.sources.sglang?.version, '0.5.15.post1');
    assert.equal(fromWheels.sources['sglang-router']?.version, '0.3.2');
    assert.equal(fromWheels.sglangIncluded, true);
  });
  it('finds every one of R1 --sglang-* flags, typed as ServerArgs declares them', () => {
    const flags = r1SglangFlags();
    assert.ok(flags.length >= 8, flags.join(' '));
    assert.deepEqual(
      flags.filter((f) => !fromWheels.options[f]),
      [],
    );
    assert.equal(fromWheels.options['--sglang-mem-fraction-static']?.type, 'float');
    assert.equal(fromWheels.options['--sglang-enable-dp-attention']?.nargs, 0);
    assert.deepEqual(fromWheels.options['--sglang-deepep-mode']?.choices, ['auto', 'normal', 'low_latency']);
  });
  it('holds hundreds of ServerArgs fields, not just the add_argument calls, minus what slime sets itself', () => {
    const sglang = Object.entries(fromWheels.options).filter(([, o]) => o.src === 'sglang');
    assert.ok(sglang.length > 400, `${sglang.length} --sglang-* options`);
    for (const skipped of ['--sglang-model-path', '--sglang-tp-size', '--sglang-port', '--sglang-config']) {
      assert.equal(fromWheels.options[skipped], undefined, skipped);
    }
    assert.equal(fromWheels.options['--sglang-cuda-graph-bs']?.nargs, '+', 'a deprecated alias from add_cli_args');
  });
  it("the router's flags carry slime's --router- prefix; --worker-urls is not prefixed by the router itself", () => {
    assert.equal(fromWheels.options['--router-balance-abs-threshold']?.type, 'int');
    assert.equal(fromWheels.options['--router-policy']?.parser, 'sglang');
    assert.ok(fromWheels.options['--worker-urls']);
    assert.equal(fromWheels.options['--router-host'], undefined, 'exclude_host_port');
  });
  it('the shipped catalogue for slime 624b824a agrees on every R1 flag and reads slime its wiring', async () => {
    const shipped = await loadCatalogue();
    assert.equal(shipped.sglang?.from, 'slime/backends/sglang_utils/arguments.py');
    assert.equal(shipped.sglang?.allowAbbrev, true);
    assert.deepEqual(shipped.sglang?.router, { prefix: 'router-', excludeHostPort: true });
    for (const flag of r1SglangFlags()) {
      const { src, type, nargs, choices } = shipped.options[flag] ?? {};
      const w = fromWheels.options[flag]!;
      assert.deepEqual(
        { src, type, nargs, choices },
        { src: w.src, type: w.type, nargs: w.nargs, choices: w.choices },
        flag,
      );
    }
  });
});

describe("the probe's on-node path: the same script, sglang found where the node's Python would import it", () => {
  it('builds the same SGLang catalogue from the installed packages', async () => {
    const site = await tempDir('keel-site-');
    // the packages as pip would lay them out (only the files the catalogue reads, and the packages' __init__.py)
    const unpack = `import sys, zipfile
for wheel in sys.argv[2:]:
    z = zipfile.ZipFile(wheel)
    z.extractall(sys.argv[1], [n for n in z.namelist() if n.split('/')[-1] in
        ('__init__.py', 'server_args.py', 'router_args.py', 'version.py', '_version.py') and n.count('/') <= 2])`;
    execFileSync(python, ['-c', unpack, site, wheels.sglang, wheels.router]);
    const raw = deepMerge(presets['tiny-local'], {
      cluster: { env: { PATH: '.venv/bin:/usr/local/bin:/usr/bin:/bin', PYTHONPATH: site } },
    });
    const spec = absolutize(resolveSpecOrThrow(raw), repoRoot);
    const onNode = (await new MockActivityEnvironment().run(clusterCatalogue, spec)) as ArgCatalogue | undefined;
    assert.ok(onNode, 'the on-node catalogue was read');
    assert.equal(onNode.sources.sglang?.version, '0.5.15.post1');
    assert.equal(onNode.sources['sglang-router']?.version, '0.3.2');
    const sglangOptions = (c: ArgCatalogue) =>
      Object.entries(c.options)
        .filter(([, o]) => o.src === 'sglang' || o.src === 'sglang-router')
        .map(([flag, o]) => [flag, o.type, o.nargs, o.choices]);
    assert.deepEqual(sglangOptions(onNode), sglangOptions(fromWheels));
  });
});
