// The native FP8 -> BF16 cast engine (src/fp8), loaded when first used.
// TODO(keel): import src/fp8 statically once it lands; until then this module loads it at run time.
export interface CastProgress {
  shardsDone: string[];
  shardsTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

interface Fp8Module {
  castFp8Checkpoint(options: {
    inputDir: string;
    outputDir: string;
    threads?: number;
    signal?: AbortSignal;
    onProgress?: (p: CastProgress) => void;
  }): Promise<{ shards: number; skippedShards: string[]; seconds: number }>;
  checkFp8CastComplete(inputDir: string, outputDir: string): Promise<{ complete: boolean; reason?: string }>;
}

const modulePath = '../src/fp8/index.js';

async function load(): Promise<Fp8Module> {
  return (await import(modulePath)) as Fp8Module;
}

export async function castFp8Checkpoint(options: Parameters<Fp8Module['castFp8Checkpoint']>[0]) {
  return (await load()).castFp8Checkpoint(options);
}

export async function checkFp8CastComplete(inputDir: string, outputDir: string) {
  return (await load()).checkFp8CastComplete(inputDir, outputDir);
}
