// Bytes read per supervision poll do not grow with the job's log. Two real Ray jobs on a real local Ray node, side by
// side: one has written 1 MB of log, the other 100 MB; both then log a line every 100 ms. Supervision's own reader
// (the driver's log file read by byte range through the executor) polls each in turn from the end of what it has
// read; the bench prints the bytes each poll read, at 1 MB and at 100 MB, their ratio, and for contrast what one poll
// of the Jobs API's log endpoint (the whole log) transfers. Then the same over HTTP, as when the driver's node is not
// one keel knows: the reader's fallback asks the dashboard for the log's last lines only.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalExecutor } from '../../src/exec/index.js';
import { JobLogReader, jobDriverLogPath, type JobLogChunk } from '../../src/cluster/job-log.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { LogProgress } from '../../src/progress/supervision-cursor.js';
import { tempDir } from '../support/pipeline.js';
import { startRayCluster, type LocalRayCluster } from '../support/ray-cluster.js';

const megabyte = 1_000_000;
const sizes = [1 * megabyte, 100 * megabyte];
const polls = 10;
const pollMs = 500;

/** Writes `bytes` of trainer-like lines at once, then one line every 100 ms until `stop` exists. */
function entrypoint(bytes: number, stop: string): string {
  const script = [
    'import os, sys, time',
    "line = \"(TinyTrainRayActor pid=7) perf 0: {'perf/step_time': 1.5, 'perf/tokens_per_gpu_per_sec': 1234.5}\\n\"",
    `n = ${bytes} // len(line)`,
    'sys.stdout.write(line * n); sys.stdout.flush()',
    'r = 0',
    `while not os.path.exists(${JSON.stringify(stop)}):`,
    "    print(f\"(TinyTrainRayActor pid=7) rollout {r}: {{'rollout/raw_reward': 0.5, 'rollout/log_probs': -0.3}}\", flush=True)",
    '    r += 1; time.sleep(0.1)',
  ].join('\n');
  return `python -c '${script.replaceAll("'", "'\\''")}'`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export async function run(): Promise<void> {
  const dir = await tempDir('keel-bench-joblog-');
  const stop = join(dir, 'stop');
  let cluster: LocalRayCluster | undefined;
  try {
    cluster = await startRayCluster({ nodes: [{ ip: '127.0.3.1', gpus: 0 }] });
    const head = cluster.nodes[0]!;
    const node = { host: head.ip, name: 'head' };
    const executor = new LocalExecutor({ stateDir: join(dir, 'state') });
    const jobs = new RayJobsClient({ url: cluster.dashboardUrl, timeoutMs: 120_000 });
    const ids = sizes.map((size) => `keel-bench-log-${size / megabyte}mb-${process.pid}`);
    for (const [i, id] of ids.entries()) {
      await jobs.submitJob({ entrypoint: entrypoint(sizes[i]!, stop), submissionId: id });
    }
    const readers = ids.map(
      (id) =>
        new JobLogReader({
          jobs,
          executor,
          submissionId: id,
          // The one node of this cluster runs every driver; its temp dir is the one Ray was started with.
          locate: async () => ({ node, path: jobDriverLogPath(head.tempDir, id) }),
        }),
    );
    // Wait until each job has written its bulk; supervision has followed it that far (its cursor is at the end).
    const progress = await Promise.all(
      ids.map(async (id, i) => {
        for (let waited = 0; ; waited += 500) {
          const job = await jobs.getJob(id);
          const range = await executor.readFileRange(node, jobDriverLogPath(head.tempDir, id), 0, 1);
          if (range && range.size >= sizes[i]!) {
            const cursor = new LogProgress(id, undefined, { resumeVerified: true, now: Date.now(), rewardsAfter: -1 });
            cursor.offset = range.size;
            return { job, cursor };
          }
          if (waited > 180_000) throw new Error(`job ${id} did not write ${sizes[i]} bytes (status ${job?.status})`);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }),
    );

    // Side by side: each round polls the 1 MB job, then the 100 MB job.
    const bytes: number[][] = sizes.map(() => []);
    const lines: number[][] = sizes.map(() => []);
    for (let round = 0; round < polls; round++) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      for (const [i, reader] of readers.entries()) {
        const { job, cursor } = progress[i]!;
        const chunk: JobLogChunk = await reader.read(job, cursor.offset);
        assert.equal(chunk.via, 'file', 'the reader read the driver log file');
        cursor.push(chunk.text, chunk.nextOffset, Date.now());
        bytes[i]!.push(chunk.bytesRead);
        lines[i]!.push(chunk.text.split('\n').length - 1);
      }
    }
    // The HTTP fallback (the driver's node is not one keel knows): the log's last lines, placed by the cursor's anchor.
    const httpReaders = ids.map(
      (id) => new JobLogReader({ jobs, executor, submissionId: id, locate: async () => undefined }),
    );
    const httpBytes: number[][] = sizes.map(() => []);
    const httpLines: number[][] = sizes.map(() => []);
    for (let round = 0; round < polls; round++) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      for (const [i, reader] of httpReaders.entries()) {
        const { cursor } = progress[i]!;
        const job = await jobs.getJob(ids[i]!);
        const chunk: JobLogChunk = await reader.read(job, cursor.offset, undefined, cursor.tail);
        assert.equal(chunk.via, 'http', 'the reader read over HTTP');
        assert.ok(!chunk.gap && !chunk.restarted, 'the new lines were placed after what was read');
        cursor.push(chunk.text, chunk.nextOffset, Date.now());
        httpBytes[i]!.push(chunk.bytesRead);
        httpLines[i]!.push(chunk.text.split('\n').length - 1);
      }
    }
    // the offsets the HTTP reads arrived at are the files' sizes then (the file reader carries on from them)
    for (const [i, id] of ids.entries()) {
      const range = await executor.readFileRange(
        node,
        jobDriverLogPath(head.tempDir, id),
        progress[i]!.cursor.offset,
        1 << 20,
      );
      assert.ok(range && range.size >= progress[i]!.cursor.offset, 'the HTTP offset is within the file');
    }
    const whole = await Promise.all(
      ids.map((id) =>
        jobs.getLogs(id, 0).then(
          (logs) => `${logs.bytesRead} bytes per poll`,
          (error: unknown) => `refused (${(error as Error).message.split('\n')[0]})`,
        ),
      ),
    );

    const perPoll = bytes.map(median);
    for (const [i, size] of sizes.entries()) {
      console.log(
        `  job log ${String(size / megabyte).padStart(3)} MB: ${perPoll[i]} bytes read per poll (median of ${polls}, ` +
          `${median(lines[i]!)} new lines; range ${Math.min(...bytes[i]!)}-${Math.max(...bytes[i]!)}); ` +
          `the Jobs API's log endpoint: ${whole[i]}`,
      );
    }
    const httpPerPoll = httpBytes.map(median);
    for (const [i, size] of sizes.entries()) {
      console.log(
        `  job log ${String(size / megabyte).padStart(3)} MB over HTTP (last lines): ${httpPerPoll[i]} bytes per poll ` +
          `(median of ${polls}, ${median(httpLines[i]!)} new lines; range ${Math.min(...httpBytes[i]!)}-${Math.max(...httpBytes[i]!)})`,
      );
    }
    const httpRatio = httpPerPoll[1]! / httpPerPoll[0]!;
    console.log(`  bytes per poll over HTTP, 100 MB log / 1 MB log: ${httpRatio.toFixed(2)} (target: within 2x)`);
    assert.ok(httpRatio <= 2 && httpRatio >= 0.5, `HTTP bytes per poll differ by ${httpRatio.toFixed(2)}x`);
    const ratio = perPoll[1]! / perPoll[0]!;
    console.log(`  bytes per poll, 100 MB log / 1 MB log: ${ratio.toFixed(2)} (target: within 2x)`);
    assert.ok(ratio <= 2 && ratio >= 0.5, `bytes per poll differ by ${ratio.toFixed(2)}x between 1 MB and 100 MB`);
    assert.ok(Math.min(...perPoll) > 0, 'every poll read the new lines');
  } finally {
    await writeFile(stop, '');
    await cluster?.stop();
  }
}
