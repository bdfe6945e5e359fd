// The HTTP fallback of the job-log reader reads only the log's last lines, placed after what was read by the anchor.
// The dashboard is a stand-in that keeps a log in memory and answers as Ray 2.60's `/api/v0/logs/file?lines=N` does
// (the last N lines, the whole log when it has fewer); the reader is keel's own. A real Ray serves the same endpoint
// in the bench (test/bench/job-log.bench.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { JobLogReader } from '../../src/cluster/job-log.js';
import type { RayJob, RayJobsClient } from '../../src/cluster/ray-jobs.js';
import type { Executor } from '../../src/exec/index.js';

function standInLog() {
  const state = { text: '', tailCalls: 0, wholeCalls: 0 };
  const jobs = {
    async tailLogLines(_id: string, _node: string, lines: number): Promise<string> {
      state.tailCalls++;
      // back from the end, `lines` newlines (one more when the log ends with one), as the agent seeks
      const text = state.text;
      let at = text.endsWith('\n') ? text.length - 1 : text.length;
      for (let n = 0; n < lines && at > 0; n++) at = text.lastIndexOf('\n', at - 1);
      return at <= 0 ? text : text.slice(at + 1);
    },
    async getLogs(_id: string, offset = 0) {
      state.wholeCalls++;
      const bytes = Buffer.from(state.text);
      return {
        text: bytes.subarray(offset).toString(),
        nextOffset: bytes.length,
        bytesRead: bytes.length,
        restarted: false,
      };
    },
  } as unknown as RayJobsClient;
  return { state, jobs };
}

const job: RayJob = {
  submissionId: 'j',
  status: 'RUNNING',
  entrypoint: 'x',
  metadata: {},
  runtimeEnv: {},
  driverNodeId: 'n1',
};

/** A reader that always falls back to HTTP (the driver's node is not one keel knows). */
const httpReader = (jobs: RayJobsClient) =>
  new JobLogReader({ jobs, executor: {} as Executor, submissionId: 'j', locate: async () => undefined });

const line = (i: number) => `(TinyTrainRayActor pid=7) rollout ${i}: {'rollout/raw_reward': 0.5}\n`;

/** Follow a log of `before` lines from its end for `polls` polls of `perPoll` new lines: bytes and text read. */
async function follow(before: number, polls: number, perPoll: number) {
  const { state, jobs } = standInLog();
  for (let i = 0; i < before; i++) state.text += line(i);
  const reader = httpReader(jobs);
  let offset = Buffer.byteLength(state.text);
  let anchor = state.text.slice(-1024);
  let read = '';
  const bytes: number[] = [];
  let n = before;
  for (let p = 0; p < polls; p++) {
    for (let i = 0; i < perPoll; i++) state.text += line(n++);
    const chunk = await reader.read(job, offset, undefined, anchor);
    assert.equal(chunk.via, 'http');
    read += chunk.text;
    offset = chunk.nextOffset;
    anchor = (anchor + chunk.text).slice(-1024);
    bytes.push(chunk.bytesRead);
  }
  return { state, read, offset, bytes, before };
}

describe('job log over HTTP: the last lines only', () => {
  it('reads the same bytes per poll from a log of 100 MB as from one of 1 MB, and exactly the new lines', async () => {
    const small = await follow(15_000, 10, 20);
    const large = await follow(1_500_000, 10, 20);
    for (const f of [small, large]) {
      const total = Buffer.byteLength(f.state.text);
      assert.equal(f.offset, total, 'the offset is the log file size');
      assert.equal(f.read, f.state.text.slice(f.state.text.length - f.read.length), 'the new lines, in order');
      assert.equal(f.read.split('\n').length - 1, 200, 'every new line once');
      assert.equal(f.state.wholeCalls, 0, 'the whole log was never asked for');
    }
    assert.ok(Buffer.byteLength(large.state.text) > 100_000_000, 'a log of 100 MB');
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
    // the same lines per poll (a rollout number of 7 digits is 2 bytes longer than one of 5)
    const ratio = median(large.bytes) / median(small.bytes);
    assert.ok(ratio < 1.1, `bytes per poll, 100 MB / 1 MB: ${ratio.toFixed(2)}`);
    assert.ok(median(large.bytes) < 64 * 1024, `a poll reads ${median(large.bytes)} bytes`);
  });

  it('a burst larger than a read is caught up by asking for more lines; past the largest read, a gap is reported', async () => {
    const burst = await follow(1000, 1, 3000);
    assert.equal(burst.read.split('\n').length - 1, 3000, 'a burst of 3000 lines is read whole');
    assert.equal(burst.offset, Buffer.byteLength(burst.state.text));
    const { state, jobs } = standInLog();
    for (let i = 0; i < 100; i++) state.text += line(i);
    const reader = httpReader(jobs);
    const offset = Buffer.byteLength(state.text);
    const anchor = state.text.slice(-1024);
    for (let i = 100; i < 30_100; i++) state.text += line(i);
    const chunk = await reader.read(job, offset, undefined, anchor);
    assert.equal(chunk.gap, true);
    assert.equal(chunk.text.split('\n').length - 1, 20_000, 'the last 20000 lines');
  });

  it('a log that no longer holds what was read (a new log) is read from its start', async () => {
    const { state, jobs } = standInLog();
    state.text = line(1) + line(2);
    const chunk = await httpReader(jobs).read(job, 5000, undefined, 'something read before from another log\n');
    assert.equal(chunk.restarted, true);
    assert.equal(chunk.text, state.text);
    assert.equal(chunk.nextOffset, Buffer.byteLength(state.text));
  });
});
