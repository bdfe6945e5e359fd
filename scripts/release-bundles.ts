// `tsx scripts/release-bundles.ts [tag...]`: the workflow bundle of each tagged release, as its worker ran it, written
// gzipped to test/fixtures/releases/<tag>.js.gz for the upgrade test (test/faults/upgrade.test.ts). The test needs no
// git history: the bundles are committed, and this script is how they are made again (docs/upgrading.md).
//
// Each tag's source is taken with `git archive` into .keel/releases/<tag>/ (inside the repository, so the bundler
// resolves the SDK from this checkout's node_modules; every release so far pins the same SDK, 1.24.0) and bundled with
// the SDK's bundleWorkflowCode, as the release's own `npm run bundle` did.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { bundleWorkflowCode } from '@temporalio/worker';

/** The releases whose runs the current keel takes over, tested by the upgrade test. */
export const supportedReleases = ['v0.3.0', 'v0.4.0', 'v0.5.0'] as const;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const fixtures = join(repoRoot, 'test', 'fixtures', 'releases');

async function bundleRelease(tag: string): Promise<void> {
  const source = join(repoRoot, '.keel', 'releases', tag);
  await rm(source, { recursive: true, force: true });
  await mkdir(source, { recursive: true });
  const sdk = (await execa('git', ['show', `${tag}:package.json`], { cwd: repoRoot })).stdout;
  const pinned = (JSON.parse(sdk) as { dependencies: Record<string, string> }).dependencies['@temporalio/workflow'];
  const ours = (
    JSON.parse((await execa('git', ['show', 'HEAD:package.json'], { cwd: repoRoot })).stdout) as {
      dependencies: Record<string, string>;
    }
  ).dependencies['@temporalio/workflow'];
  if (pinned !== ours) {
    throw new Error(
      `${tag} pins @temporalio/workflow ${pinned}, this checkout ${ours}: bundle it from its own checkout`,
    );
  }
  await execa('bash', ['-c', `git archive ${tag} workflows src activities | tar -x -C '${source}'`], { cwd: repoRoot });
  const { code } = await bundleWorkflowCode({
    workflowsPath: join(source, 'workflows', 'index.ts'),
    logger: { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop },
  });
  // The inline source map is two thirds of the bundle and only maps stack traces: the fixture has an empty one (a
  // worker requires one to be there).
  const emptyMap = Buffer.from(JSON.stringify({ version: 3, sources: [], names: [], mappings: '' })).toString('base64');
  const stripped = code.replace(
    /\n\/\/# sourceMappingURL=data:[^\n]*\n?$/,
    `\n//# sourceMappingURL=data:application/json;charset=utf-8;base64,${emptyMap}\n`,
  );
  if (stripped === code)
    throw new Error(`${tag}: no inline source map at the end of the bundle (has the SDK changed?)`);
  const gz = gzipSync(stripped, { level: 9 });
  await mkdir(fixtures, { recursive: true });
  await writeFile(join(fixtures, `${tag}.js.gz`), gz);
  await rm(source, { recursive: true, force: true });
  console.log(`${tag}: ${(code.length / 1024).toFixed(0)} kB, ${(gz.length / 1024).toFixed(0)} kB gzipped`);
}

const noop = (): void => undefined;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const tags = process.argv.slice(2);
  for (const tag of tags.length > 0 ? tags : supportedReleases) await bundleRelease(tag);
}
