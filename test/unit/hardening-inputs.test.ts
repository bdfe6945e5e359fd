// Hardening round 2, inputs: what a trainer's log, a tracker, a spec file, a Ray dashboard or an Update may carry.
// Each row's attack gets a clear error naming the field, or a safe result; properties over random inputs check that
// the parsers never produce a value a search attribute cannot hold.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { formatStatus } from '../../src/cli/commands/run.js';
import { RayApiError, RayHttp } from '../../src/cluster/ray-http.js';
import { compareWithListing, gitBlobId } from '../../src/hub/index.js';
import { ReplyTooLargeError } from '../../src/net/bounded-body.js';
import { secretIn } from '../../src/plan/secrets.js';
import { CheckpointTrackerError, readTracker } from '../../src/progress/checkpoints.js';
import { parseSlimeLogLine } from '../../src/progress/slime-log.js';
import { loadSpec } from '../../src/spec/load.js';
import { resolveSpecInput } from '../../src/spec/index.js';
import { addNodesArgs, firstProblem } from '../../workflows/inputs.js';

const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});
const workspace = async () => {
  const root = await mkdtemp(join(tmpdir(), 'keel-hardening-inputs-'));
  roots.push(root);
  return root;
};

describe('row 5: no log line or tracker yields a value a search attribute cannot hold', () => {
  it('a perf line with a 21-digit rollout is not slime output; a small one still is', () => {
    assert.equal(parseSlimeLogLine("perf 100000000000000000000: {'perf/rollout_time': 1.0}"), undefined);
    assert.deepEqual(parseSlimeLogLine("perf 12: {'perf/rollout_time': 1.0}"), {
      type: 'rollout-done',
      rollout: 12,
      metrics: { 'perf/rollout_time': 1 },
    });
  });

  it('a 400-digit tracker is unreadable (an error naming the file), never Infinity', async () => {
    const save = await workspace();
    await writeFile(join(save, 'latest_checkpointed_iteration.txt'), '9'.repeat(400));
    await assert.rejects(readTracker(save), (error: Error) => {
      assert.ok(error instanceof CheckpointTrackerError);
      assert.match(error.message, /unreadable checkpoint tracker .*latest_checkpointed_iteration\.txt/);
      return true;
    });
  });

  it('property: any log line parses to ids that are safe integers', () => {
    const line = fc.oneof(
      fc.string(),
      fc
        .tuple(fc.constantFrom('perf', 'rollout', 'step', 'eval'), fc.bigInt({ min: 0n, max: 10n ** 400n }))
        .map(([word, id]) => `${word} ${id}: {'perf/rollout_time': 1.0, 'eval/aime': 0.5}`),
      fc.bigInt({ min: 0n, max: 10n ** 40n }).map((id) => `successfully saved checkpoint from iteration ${id} to /x`),
    );
    fc.assert(
      fc.property(line, (text) => {
        const event = parseSlimeLogLine(text) as Record<string, unknown> | undefined;
        for (const key of ['rollout', 'step', 'iteration', 'engine', 'count'])
          if (event?.[key] !== undefined) assert.ok(Number.isSafeInteger(event[key]), `${key} ${String(event[key])}`);
      }),
      { seed: 21, numRuns: 500 },
    );
  });

  it('property: any tracker content reads as a safe integer, release, nothing, or an error naming the file', async () => {
    const save = await workspace();
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.bigInt({ min: 0n, max: 10n ** 400n }).map(String)), async (text) => {
        await writeFile(join(save, 'latest_checkpointed_iteration.txt'), text);
        const tracker = await readTracker(save).catch((error: unknown) => {
          assert.ok(error instanceof CheckpointTrackerError);
          return undefined;
        });
        assert.ok(tracker === undefined || tracker === 'release' || Number.isSafeInteger(tracker));
      }),
      { seed: 21, numRuns: 200 },
    );
  });

  it('a 3000-character preset name is refused by validate, naming the field', () => {
    const result = resolveSpecInput({ preset: 'tiny-local', overrides: { preset: 'p'.repeat(3000) } });
    assert.equal(result.ok, false);
    if (!result.ok)
      assert.ok(result.problems.some((p) => p.path === 'preset' && /at most 100 characters/.test(p.message)));
  });
});

describe('row 7: the dashboard address and reply', () => {
  it('rayHead.dashboardHost must be an address, never the metadata service', () => {
    for (const host of [
      '169.254.169.254/latest/user-data#',
      '169.254.169.254',
      'metadata.google.internal',
      'fe80::1',
    ]) {
      const result = resolveSpecInput({ preset: 'tiny-local', overrides: { rayHead: { dashboardHost: host } } });
      assert.equal(result.ok, false, host);
      if (!result.ok) assert.equal(result.problems[0]!.path, 'rayHead.dashboardHost', host);
    }
    for (const host of ['0.0.0.0', '10.1.2.3', 'head-0']) {
      const result = resolveSpecInput({ preset: 'tiny-local', overrides: { rayHead: { dashboardHost: host } } });
      assert.equal(result.ok, true, host);
    }
  });

  it('a cluster node at a link-local address is refused, naming the field', () => {
    const result = resolveSpecInput({
      preset: 'tiny-local',
      overrides: { cluster: { nodes: [{ host: '169.254.169.254' }] } },
    });
    assert.equal(result.ok, false);
    if (!result.ok) assert.match(result.problems[0]!.path, /^cluster\.nodes\[0\]\.host$/);
  });
});

describe('rows 4 and 7: a hostile dashboard', () => {
  it('an endless reply is refused at the cap, the reply text never reaches a message, and the worker lives', async () => {
    const server = http.createServer((req, res) => {
      if (req.url === '/endless') {
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 'a');
        const pump = () => {
          while (res.write(chunk));
        };
        res.on('drain', pump);
        pump();
        req.on('close', () => res.destroy());
        return;
      }
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('\x1b]0;owned\x07 ami-id: i-0123 secret-access-key: wJalrXUtnFEMI/K7MDENG\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const client = new RayHttp({ url, maxBodyBytes: 1024 * 1024, timeoutMs: 20_000 });
      await assert.rejects(client.text('/endless'), (error: Error) => {
        assert.ok(error instanceof ReplyTooLargeError);
        assert.match(
          error.message,
          /GET http:\/\/127\.0\.0\.1:\d+\/endless: the reply is larger than the 1048576 bytes/,
        );
        return true;
      });
      const refused = await client.text('/fail').catch((error: unknown) => error);
      assert.ok(refused instanceof RayApiError);
      assert.match(refused.message, /HTTP 500: a text reply of \d+ bytes$/);
      // eslint-disable-next-line no-control-regex -- the escape must be absent
      assert.doesNotMatch(refused.message, /secret|ami-id|\x1b/);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('row 10: the addNodes Update', () => {
  it('refuses path-like names, metadata hosts, and too many nodes, naming the field', () => {
    const problem = (args: unknown) => {
      const parsed = addNodesArgs.safeParse(args);
      return parsed.success ? undefined : firstProblem(parsed.error);
    };
    assert.match(
      problem({ nodes: [{ host: '10.0.0.1', name: '../../x' }] }) ?? '',
      /^nodes\[0\]\.name: must be a plain name/,
    );
    assert.match(problem({ nodes: [{ host: '169.254.169.254' }] }) ?? '', /^nodes\[0\]\.host: is a link-local address/);
    assert.match(problem({ nodes: [{ host: 'a;rm -rf /' }] }) ?? '', /^nodes\[0\]\.host: must be a host name/);
    assert.match(problem({ nodes: Array.from({ length: 65 }, () => ({ host: '10.0.0.1' })) }) ?? '', /at most 64/);
    assert.match(problem({ nodes: [] }) ?? '', /at least one node/);
    assert.match(problem(null) ?? '', /^argument: /);
    assert.equal(problem({ nodes: [{ host: '10.0.0.9', name: 'spare-9', gpus: 8 }] }), undefined);
  });
});

describe('row 11: keel status shows escapes, never sends them to the terminal', () => {
  it('a job message with ANSI and OSC sequences is printed escaped', () => {
    const text = formatStatus({
      workflowId: 'run-1',
      runStatus: 'RUNNING',
      pipeline: {
        name: 'r',
        phase: 'running',
        paused: false,
        steps: [{ id: 'train', kind: 'train', needs: [], state: 'failed', attempts: 1, reason: 'x\x1b[31m' }],
        warnings: [],
      },
      training: {
        phase: 'running',
        submissions: 1,
        restarts: 1,
        numRollout: 3,
        checkpoints: [],
        evals: [],
        failures: [{ at: '2026-01-01T00:00:00Z', kind: 'job-crashed', message: 'boom \x1b[2J\x1b]0;pwned\x07 done' }],
      },
    } as unknown as Parameters<typeof formatStatus>[0]);
    // eslint-disable-next-line no-control-regex -- control characters must be absent
    assert.ok(!/[\x00-\x08\x0b-\x1f\x7f]/.test(text), JSON.stringify(text));
    assert.match(text, /boom \\u\{1b\}\[2J\\u\{1b\}\]0;pwned\\u\{7\} done/);
  });
});

describe('row 14: JWT-shaped secrets', () => {
  it('a Temporal Cloud API key (a JWT) in the job env is found', () => {
    const jwt = `eyJhbGciOiJFUzI1NiIsImtpZCI6Ik${'x'.repeat(10)}.eyJhY2NvdW50X2lkIjoiYWJjIn0${'y'.repeat(20)}.${'z'.repeat(40)}`;
    assert.match(secretIn(jwt, 'TEMPORAL_AUTH') ?? '', /a JWT/);
    assert.match(secretIn(`--auth=${jwt}`) ?? '', /a JWT/);
    assert.equal(secretIn('eyJ-not-a-token'), undefined);
  });
});

describe('row 15: a key beside preset in a spec file', () => {
  it('is an error naming the key and the fix', async () => {
    const dir = await workspace();
    const file = join(dir, 'spec.yaml');
    await writeFile(file, 'preset: tiny-local\nrollout:\n  numRollout: 7\n');
    const result = await loadSpec({ file });
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.problems[0]!.path, 'rollout');
      assert.match(result.problems[0]!.message, /move it under overrides \(overrides\.rollout\)/);
    }
    await writeFile(file, 'preset: tiny-local\noverrides:\n  rollout:\n    numRollout: 7\n');
    const good = await loadSpec({ file });
    assert.ok(good.ok && good.spec.rollout.numRollout === 7);
  });
});

describe('row 12: no file existence or size oracle on the worker', () => {
  const withSteps = (steps: Record<string, unknown>) =>
    resolveSpecInput({ preset: 'tiny-local', overrides: { storage: { baseDir: '/srv/keel' }, steps } });
  it('a step `creates` or an hf-download `localDir` outside storage.baseDir is refused, naming the field', () => {
    for (const [field, step] of [
      ['creates', { kind: 'command', argv: ['true'], creates: '/root/.ssh/id_rsa' }],
      ['creates', { kind: 'command', argv: ['true'], creates: '../../etc/shadow' }],
      ['localDir', { kind: 'hf-download', localDir: '/' }],
    ] as const) {
      const result = withSteps({ x: step });
      assert.equal(result.ok, false, JSON.stringify(step));
      if (!result.ok) {
        const problem = result.problems.find((p) => p.path === `steps.x.${field}`);
        assert.ok(problem, JSON.stringify(result.problems));
        assert.match(problem.message, /is outside storage\.baseDir \(\/srv\/keel\)/);
      }
    }
    assert.equal(withSteps({ x: { kind: 'command', argv: ['true'], creates: 'out/done.txt' } }).ok, true);
    assert.equal(withSteps({ x: { kind: 'command', argv: ['true'], creates: '/srv/keel/done' } }).ok, true);
  });
});

describe('row 13: verifySha256 checks the files the Hub keeps outside LFS by their git blob id', () => {
  it('a matching file passes, a same-size edit is found, a file without any id is reported unverified', async () => {
    const dir = await workspace();
    await writeFile(join(dir, 'config.json'), '{"hidden_size": 64}\n');
    await writeFile(join(dir, 'modeling.py'), 'print(1)\n');
    const blobId = execFileSync('git', ['hash-object', join(dir, 'config.json')], { encoding: 'utf8' }).trim();
    const listing = {
      revision: 'main',
      files: [
        { path: 'config.json', size: 20, blobId },
        { path: 'modeling.py', size: 9 },
      ],
    };
    assert.equal(await gitBlobId(join(dir, 'config.json'), 20), blobId, 'the same id as git hash-object');
    assert.deepEqual(await compareWithListing(dir, listing, true), [
      'modeling.py is unverified: the listing gives neither a sha256 nor a git blob id for it',
    ]);
    await writeFile(join(dir, 'config.json'), '{"hidden_size": 65}\n');
    assert.deepEqual((await compareWithListing(dir, listing, true))[0], 'config.json does not match its git blob id');
    assert.deepEqual(await compareWithListing(dir, listing, false), [], 'sizes alone when verifySha256 is off');
  });
});
