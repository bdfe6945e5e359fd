// The native FP8 -> BF16 cast engine (src/fp8/), used when a fp8-cast step asks for `engine: native`, and the
// completeness check of a cast output (src/fp8/check.ts).
export { castFp8Checkpoint, type CastProgress } from '../src/fp8/index.js';
export { checkFp8CastComplete } from '../src/fp8/check.js';
