// Row 10: hub listings and saved manifests name files by paths from outside. A path that leaves the download
// directory (`..`, absolute, /dev/zero) is refused with the listing named; a listed file that is not a regular file is
// reported instead of read. Served by a real HTTP server on loopback speaking the Hub's listing API.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compareWithListing, listRepoFiles, manifestName, readManifest } from '../../src/hub/index.js';

let root: string;
let server: Server;
let endpoint: string;
let siblings: unknown[] = [];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'keel-hardening-hub-'));
  server = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ sha: 'abc', siblings }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(root, { recursive: true, force: true });
});

const hostileNames = ['../outside.txt', '/dev/zero', 'a/../../b', 'dir//file', './x', 'a\\..\\b', 'x\ny'];

describe('row 10: file names from a hub listing or a saved manifest', () => {
  for (const name of hostileNames) {
    it(`a Hub listing naming ${JSON.stringify(name)} is refused, naming the listing and the file`, async () => {
      siblings = [
        { rfilename: 'config.json', size: 2 },
        { rfilename: name, size: 10 },
      ];
      await assert.rejects(
        listRepoFiles({ endpoint, repo: 'org/model', revision: 'main' }),
        (error: Error) =>
          error.message.startsWith('the Hub listing of org/model@main: file list.files[1].path: ') &&
          error.message.includes(JSON.stringify(name)) &&
          /refused \(a listed file must be inside the download directory\)/.test(error.message),
      );
    });
  }
  it('variant: a listing of ordinary nested paths is accepted', async () => {
    siblings = [
      { rfilename: 'config.json', size: 2 },
      { rfilename: 'original/tokenizer.model', size: 5, lfs: { sha256: 'a'.repeat(64), size: 5 } },
    ];
    const listing = await listRepoFiles({ endpoint, repo: 'org/model', revision: 'main' });
    assert.deepEqual(
      listing.files.map((f) => f.path),
      ['config.json', 'original/tokenizer.model'],
    );
  });
  for (const name of ['../outside.txt', '/dev/zero']) {
    it(`a saved manifest naming ${name} is refused (never resolved outside, never hashed)`, async () => {
      const dir = join(root, `manifest-${name.replace(/\W/g, '')}`);
      await mkdir(dir, { recursive: true });
      await writeFile(
        join(dir, manifestName),
        JSON.stringify({ revision: 'main', files: [{ path: name, size: 1, sha256: 'b'.repeat(64) }] }),
      );
      await assert.rejects(readManifest(dir), (error: Error) => {
        assert.ok(error.message.startsWith(join(dir, manifestName)), error.message);
        assert.match(error.message, /file list\.files\[0\]\.path: .* refused/);
        return true;
      });
      const started = Date.now();
      await assert.rejects(
        compareWithListing(dir, { revision: 'main', files: [{ path: name, size: 1, sha256: 'b'.repeat(64) }] }, true),
        /refused/,
      );
      assert.ok(Date.now() - started < 10_000, 'refused at once, not hashed');
    });
  }
  it('a listed file that is a symlink to /dev/zero inside the directory is reported, not hashed', async () => {
    const dir = join(root, 'symlinked');
    await mkdir(dir, { recursive: true });
    await symlink('/dev/zero', join(dir, 'weights.bin'));
    const problems = await compareWithListing(
      dir,
      { revision: 'main', files: [{ path: 'weights.bin', size: 0, sha256: 'c'.repeat(64) }] },
      true,
    );
    assert.deepEqual(problems, ['weights.bin is not a regular file']);
  });
});
