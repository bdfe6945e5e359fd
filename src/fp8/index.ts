// The native FP8 -> BF16 cast engine (docs/slime.md, "FP8 -> BF16 cast"): no GPU, no Python, resumable.
export { castFp8Checkpoint, stateFileName, type CastOptions, type CastProgress, type CastResult } from './cast.js';
export { planCast, CastInputError, type CastPlan } from './plan.js';
export { checkFp8CastComplete, indexFileName } from './check.js';
export { readHeader, layoutFile, SafetensorsError } from './safetensors.js';
export { bf16Bits, dequantBits, e4m3Values } from './e4m3.js';
