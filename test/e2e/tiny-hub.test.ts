// The loopback hub (workloads/tiny/hub.py) serves a generated model so that the real `hf download` fetches every
// file byte for byte, lists sizes and sha256, and resumes a dropped transfer with an HTTP Range request.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ensureTestModel, hfDownload, startTinyHub, type TinyHub } from '../support/tiny-model.js';

const REPO = 'keel-test/tiny-v3-fp8';
const BIG_REPO = 'keel-test/big-file';
const CHUNK = 10 * 1024 * 1024; // huggingface_hub reads the body in 10 MiB chunks; a resume starts at a chunk edge

let work = '';
let modelDir = '';
let hub: TinyHub | undefined;

before(async () => {
  modelDir = await ensureTestModel();
  work = await mkdtemp(path.join(os.tmpdir(), 'keel-tiny-hub-'));
  await mkdir(path.join(work, 'hub', 'keel-test'), { recursive: true });
  await cp(modelDir, path.join(work, 'hub', REPO), { recursive: true });
  hub = await startTinyHub(path.join(work, 'hub'));
});
after(async () => {
  await hub?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(path.join(dir, entry.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

test('model info lists every file with its size, and sha256 for the weight shards', async () => {
  const res = await fetch(`${hub!.endpoint}/api/models/${REPO}/revision/main`);
  assert.equal(res.status, 200);
  const info = (await res.json()) as {
    sha: string;
    siblings: { rfilename: string; size: number; lfs?: { sha256: string; size: number } }[];
  };
  assert.match(info.sha, /^[0-9a-f]{40}$/);
  const files = await listFiles(modelDir);
  assert.deepEqual(info.siblings.map((s) => s.rfilename).sort(), files);
  for (const s of info.siblings) {
    const data = await readFile(path.join(modelDir, s.rfilename));
    assert.equal(s.size, data.length, s.rfilename);
    if (s.rfilename.endsWith('.safetensors')) assert.equal(s.lfs?.sha256, sha256(data), s.rfilename);
  }
  const missing = await fetch(`${hub!.endpoint}/api/models/keel-test/nope`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('x-error-code'), 'RepoNotFound');
});

test('hf download fetches every file byte for byte', async () => {
  const local = path.join(work, 'download');
  await hfDownload(hub!.endpoint, REPO, local, path.join(work, 'hf-home'));
  const files = await listFiles(modelDir);
  assert.deepEqual(await listFiles(local), files);
  for (const f of files) {
    assert.ok((await readFile(path.join(local, f))).equals(await readFile(path.join(modelDir, f))), f);
  }
  const requests = await hub!.stats();
  assert.ok(requests.some((r) => r.path === `/api/models/${REPO}/revision/main`));
  const shardGets = requests.filter((r) => r.method === 'GET' && r.path.endsWith('.safetensors') && r.status === 200);
  assert.equal(shardGets.length, files.filter((f) => f.endsWith('.safetensors')).length);
});

test('a transfer dropped mid-file is resumed with a Range request for the missing bytes only', async () => {
  const size = 2 * CHUNK + 12345;
  const content = randomBytes(size);
  await mkdir(path.join(work, 'hub', BIG_REPO), { recursive: true });
  await writeFile(path.join(work, 'hub', BIG_REPO, 'blob.safetensors'), content);
  await writeFile(path.join(work, 'hub', BIG_REPO, 'config.json'), '{}\n');
  const before = (await hub!.stats()).length;
  await hub!.armDrop(`${BIG_REPO}/blob.safetensors`, CHUNK + 4096);

  const local = path.join(work, 'download-big');
  const result = await hfDownload(hub!.endpoint, BIG_REPO, local, path.join(work, 'hf-home'));
  assert.match(result.all ?? '', /resume/i);
  assert.ok((await readFile(path.join(local, 'blob.safetensors'))).equals(content));

  const gets = (await hub!.stats())
    .slice(before)
    .filter((r) => r.method === 'GET' && r.path.endsWith('/blob.safetensors'));
  assert.equal(gets.length, 2, JSON.stringify(gets));
  const [first, second] = gets as [(typeof gets)[0], (typeof gets)[0]];
  assert.equal(first.range, null);
  assert.equal(first.bytes, CHUNK + 4096, 'the first transfer was cut');
  assert.equal(second.status, 206);
  assert.equal(second.range, `bytes=${CHUNK}-`);
  assert.equal(second.bytes, size - CHUNK, 'the resume fetched only the bytes the client did not have');
});

test('a re-run fetches a truncated local file again in full (hf does not resume across runs)', async () => {
  const local = path.join(work, 'download');
  const shard = (await listFiles(local)).find((f) => f.endsWith('.safetensors'))!;
  const original = await readFile(path.join(modelDir, shard));
  await truncate(path.join(local, shard), 1000);
  const before = (await hub!.stats()).length;
  await hfDownload(hub!.endpoint, REPO, local, path.join(work, 'hf-home'));
  assert.ok((await readFile(path.join(local, shard))).equals(original));
  const gets = (await hub!.stats()).slice(before).filter((r) => r.method === 'GET' && r.path.includes('/resolve/'));
  assert.deepEqual(
    gets.map((r) => [r.path.split('/').pop(), r.range, r.bytes]),
    [[shard, null, original.length]],
  );
});
