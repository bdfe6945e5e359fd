// The native FP8 -> BF16 cast engine (src/fp8/index.ts), loaded when a step asks for `engine: native`.
// The completeness check is src/fp8/check.ts.
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
}

const modulePath = '../src/fp8/index.js';

async function load(): Promise<Fp8Module> {
  return (await import(modulePath)) as Fp8Module;
}

export async function castFp8Checkpoint(options: Parameters<Fp8Module['castFp8Checkpoint']>[0]) {
  return (await load()).castFp8Checkpoint(options);
}

export { checkFp8CastComplete } from '../src/fp8/check.js';
