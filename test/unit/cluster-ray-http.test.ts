// The dashboard HTTP layer against a real local server: no browser-like headers (Ray refuses POSTs that carry
// Sec-Fetch-*), per-request timeouts, caller cancellation and readable errors.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { RayApiError, RayHttp, RayUnreachableError } from '../../src/cluster/ray-http.js';
import { freePort } from '../support/ray-cluster.js';

let server: http.Server;
let url: string;
const seen: http.IncomingHttpHeaders[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.headers);
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      if (req.url === '/hang') return; // never answers
      if (req.url === '/fail') {
        res
          .writeHead(500)
          .end('Traceback (most recent call last):\n  ...\nValueError: Job with submission_id x already exists.');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ method: req.method, body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

test('POSTs JSON without any header that makes Ray take it for a browser', async () => {
  const client = new RayHttp({ url });
  assert.deepEqual(await client.json('/api/jobs/', { method: 'POST', body: { entrypoint: 'python x.py' } }), {
    method: 'POST',
    body: '{"entrypoint":"python x.py"}',
  });
  const headers = seen.at(-1)!;
  assert.equal(headers['content-type'], 'application/json');
  for (const name of Object.keys(headers)) assert.doesNotMatch(name, /^(sec-fetch-|origin$|referer$|access-control-)/);
  assert.doesNotMatch(headers['user-agent'] ?? '', /^Mozilla/);
});

test('a non-2xx answer is a RayApiError naming the status and the kind of reply, never its text', async () => {
  const error = await new RayHttp({ url }).text('/fail').catch((caught: unknown) => caught);
  assert.ok(error instanceof RayApiError);
  assert.equal(error.status, 500);
  assert.match(error.message, /HTTP 500: a text reply of \d+ bytes$/);
  assert.doesNotMatch(error.message, /ValueError/);
  assert.match(error.body, /already exists/, 'the body stays available to the code that classifies it');
});

test('a request that gets no answer times out as RayUnreachableError', async () => {
  const error = await new RayHttp({ url, timeoutMs: 200 }).text('/hang').catch((caught: unknown) => caught);
  assert.ok(error instanceof RayUnreachableError, String(error));
  assert.match(error.message, /timed out/);
});

test('the caller can cancel; a closed port is unreachable', async () => {
  const controller = new AbortController();
  const pending = new RayHttp({ url }).text('/hang', { signal: controller.signal });
  controller.abort(new Error('activity cancelled'));
  await assert.rejects(pending, /activity cancelled/);
  const closed = `http://127.0.0.1:${await freePort('127.0.0.1')}`;
  await assert.rejects(new RayHttp({ url: closed }).text('/api/version'), RayUnreachableError);
});
