// A keel worker's deployment version (Worker Versioning, docs/upgrading.md): the build id is keel's version and the
// bundle's hash; `keel worker` refuses a deployment flag it cannot use before connecting anywhere; the committed
// release bundles the upgrade test runs are there and loadable by a worker (an inline source map is required).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { execa } from 'execa';
import { supportedReleases } from '../../scripts/release-bundles.js';
import { keelVersion, workerBuildId } from '../../src/worker-version.js';

const repoRoot = new URL('../..', import.meta.url).pathname;

describe('worker deployment versions', () => {
  it("a build id is keel's version and the bundle's hash", async () => {
    const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.equal(keelVersion, pkg.version);
    const id = workerBuildId('bundle A');
    assert.match(id, new RegExp(`^${pkg.version.replaceAll('.', '\\.')}-[0-9a-f]{12}$`));
    assert.equal(workerBuildId('bundle A'), id, 'the same code, the same version');
    assert.notEqual(workerBuildId('bundle B'), id, 'other code, another version');
  });

  it('keel worker --help documents the deployment flags', async () => {
    const r = await execa('node', ['bin/keel.js', 'worker', '--help'], { cwd: repoRoot });
    assert.match(r.stdout, /--deployment-name <name>/);
    assert.match(r.stdout, /--set-current/);
  });

  for (const [args, message] of [
    [['--set-current'], /--set-current needs --deployment-name/],
    [['--deployment-name', 'keel.prod'], /--deployment-name "keel.prod" must be at most 200 characters, no dot/],
  ] as const) {
    it(`keel worker ${args.join(' ')} is refused before it connects`, async () => {
      const env: NodeJS.ProcessEnv = { ...process.env, KEEL_TEMPORAL_ADDRESS: '127.0.0.1:1' };
      delete env.KEEL_DEPLOYMENT_NAME;
      const r = await execa('node', ['--import', 'tsx', 'src/cli/main.ts', 'worker', ...args], {
        cwd: repoRoot,
        env,
        extendEnv: false,
        reject: false,
        timeout: 60_000,
      });
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }

  for (const tag of [...supportedReleases, 'v0.1.0']) {
    it(`the committed ${tag} workflow bundle is a worker's bundle`, async () => {
      const code = gunzipSync(
        await readFile(join(repoRoot, 'test', 'fixtures', 'releases', `${tag}.js.gz`)),
      ).toString();
      assert.match(code, /__TEMPORAL__ = __webpack_exports__/);
      assert.match(code, /\n\/\/# sourceMappingURL=data:application\/json;charset=utf-8;base64,[A-Za-z0-9+/=]+\n$/);
      for (const workflow of ['pipeline', 'training', 'retrain'])
        assert.match(code, new RegExp(`function ${workflow}\\(`));
    });
  }
});
