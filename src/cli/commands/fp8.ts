// keel fp8-cast --in DIR --out DIR: the native FP8 -> BF16 cast of a checkpoint directory (no GPU, no Python),
// resumable shard by shard, with a progress bar on a terminal (one line per finished shard otherwise).
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { castFp8Checkpoint, type CastProgress } from '../../fp8/index.js';

interface Fp8CastOptions {
  in: string;
  out: string;
  threads?: string;
  verify?: boolean;
  keepQuantizationConfig?: boolean;
  allowMissingScale?: boolean;
  likeSlime?: boolean;
  directIo: boolean;
}

const gb = (bytes: number) => (bytes / 1e9).toFixed(2);

export function registerFp8Commands(program: Command): void {
  program
    .command('fp8-cast')
    .description('cast an FP8 (128x128 block scales) checkpoint to BF16 natively: no GPU, resumable, bit-exact')
    .requiredOption('--in <dir>', 'input checkpoint directory (model.safetensors.index.json + shards)')
    .requiredOption('--out <dir>', 'output directory; a cast stopped before the end resumes with its unfinished shards')
    .option('--threads <n>', 'worker threads (default: the cores available)')
    .option('--verify', 're-read every output tensor and compare it with the cast of the input')
    .option(
      '--keep-quantization-config',
      "copy config.json unchanged (slime's behaviour) instead of removing quantization_config",
    )
    .option(
      '--allow-missing-scale',
      "copy an FP8 tensor without a scale unchanged with a warning (slime's behaviour) instead of failing",
    )
    .option(
      '--like-slime',
      "write exactly what slime's tools/fp8_cast_bf16.py writes, every file (config.json unchanged, no shard metadata, its index)",
    )
    .option('--no-direct-io', 'write the output through the page cache only (default: whole 4096-byte blocks O_DIRECT)')
    .action(async (options: Fp8CastOptions) => {
      const threads = options.threads === undefined ? undefined : Number(options.threads);
      if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) {
        console.error(`keel fp8-cast: --threads must be a positive integer, not '${options.threads}'`);
        process.exit(2);
      }
      const tty = Boolean(process.stderr.isTTY);
      const bar = tty
        ? new cliProgress.SingleBar(
            {
              format: ' cast |{bar}| {percentage}% {gbDone}/{gbTotal} GB  {shards} shards  {rate} GB/s',
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      const started = performance.now();
      let reported = 0;
      const onProgress = (p: CastProgress) => {
        const seconds = (performance.now() - started) / 1000;
        const payload = {
          gbDone: gb(p.bytesDone),
          gbTotal: gb(p.bytesTotal),
          shards: `${p.shardsDone.length}/${p.shardsTotal}`,
          rate: seconds > 0 ? gb(p.bytesDone / seconds) : '0.00',
        };
        if (bar) {
          if (!bar.isActive) bar.start(p.bytesTotal, p.bytesDone, payload);
          bar.update(p.bytesDone, payload);
        } else {
          for (; reported < p.shardsDone.length; reported++)
            console.log(`${p.shardsDone[reported]} done (${payload.shards}, ${payload.gbDone}/${payload.gbTotal} GB)`);
        }
      };
      const controller = new AbortController();
      const stop = () => controller.abort(new Error('interrupted: finished shards are kept, a new run resumes'));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const result = await castFp8Checkpoint({
          inputDir: options.in,
          outputDir: options.out,
          threads,
          verify: options.verify,
          keepQuantizationConfig: options.keepQuantizationConfig,
          allowMissingScale: options.allowMissingScale,
          likeSlime: options.likeSlime,
          directIo: options.directIo,
          signal: controller.signal,
          onProgress,
          onWarning: (message) => (bar ? bar.stop() : undefined, console.warn(`warning: ${message}`)),
        });
        bar?.stop();
        const cast = result.shards - result.skippedShards.length;
        console.log(
          `${options.out}: ${result.shards} shards (${cast} cast, ${result.skippedShards.length} already done), ` +
            `${gb(result.bytesIn)} GB in, ${gb(result.bytesOut)} GB out (${gb(result.directBytes)} GB O_DIRECT), ` +
            `${result.seconds.toFixed(1)} s` +
            (options.verify ? ', verified' : ''),
        );
      } catch (error) {
        bar?.stop();
        console.error(`keel fp8-cast: ${(error as Error).message}`);
        process.exit(1);
      }
    });
}
