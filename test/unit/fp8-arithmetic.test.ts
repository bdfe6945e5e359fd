// The cast's arithmetic: the E4M3 table, RNE to bf16, and both SIMD kernels against the scalar definition.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bf16Bits, dequantBits, dequantColumnsScalar, e4m3Values } from '../../src/fp8/e4m3.js';
import { DequantKernel, tableKernelApplies } from '../../src/fp8/simd-kernel.js';
import { rowsPerTask } from '../../src/fp8/chunks.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (bits: number) => ((u32[0] = bits), f32[0]!);

describe('E4M3 and bf16', () => {
  it('decodes float8_e4m3fn codes', () => {
    assert.equal(e4m3Values[0x7e], 448);
    assert.equal(e4m3Values[0xfe], -448);
    assert.equal(e4m3Values[0x01], 2 ** -9); // smallest subnormal
    assert.equal(e4m3Values[0x07], 7 * 2 ** -9); // largest subnormal
    assert.equal(e4m3Values[0x08], 2 ** -6); // smallest normal
    assert.equal(e4m3Values[0x38], 1);
    assert.ok(Object.is(e4m3Values[0x80], -0));
    assert.ok(Number.isNaN(e4m3Values[0x7f]) && Number.isNaN(e4m3Values[0xff]));
    assert.equal(e4m3Values.filter((v) => Number.isNaN(v)).length, 2); // no infinities, two NaNs
  });
  it('rounds fp32 to bf16 to nearest, ties to even; NaN -> 0x7FFF', () => {
    assert.equal(bf16Bits(1), 0x3f80);
    assert.equal(bf16Bits(fromBits(0x3f808000)), 0x3f80); // tie, even stays
    assert.equal(bf16Bits(fromBits(0x3f818000)), 0x3f82); // tie, odd rounds up
    assert.equal(bf16Bits(fromBits(0x3f808001)), 0x3f81); // above the tie
    assert.equal(bf16Bits(fromBits(0x7f7fffff)), 0x7f80); // overflows to +inf
    assert.equal(bf16Bits(-0), 0x8000);
    assert.equal(bf16Bits(NaN), 0x7fff);
    assert.equal(dequantBits(0x7f, 1), 0x7fff);
    assert.equal(dequantBits(0xff, 1), 0x7fff);
  });
  it('takes the product in fp32 before rounding to bf16', () => {
    // 1.125 * (1 + 2^-23) is 1.125 + 1.125 * 2^-23: fp32 rounds it to 1.125 + 2^-23 (even), then bf16 to 1.125.
    const scale = fromBits(0x3f800001);
    assert.equal(dequantBits(0x39, scale), bf16Bits(Math.fround(1.125 * scale)));
  });
});

/** fp32 scales across the range: random bit patterns plus zero, subnormals, extremes, infinities, NaN. */
function scaleSamples(count: number): number[] {
  const specials = [0, -0, 1e-45, -1e-40, 2 ** -126, 2 ** -120, 2 ** -121, 2 ** 118, 2 ** 119, 3.4e38, Infinity, NaN];
  let state = 12345;
  const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0), state);
  return [...specials, ...Array.from({ length: count }, () => fromBits(random()))];
}

describe('SIMD kernels', () => {
  const kernel = new DequantKernel();
  it('compiles with WebAssembly SIMD here', () => assert.ok(kernel.simd));

  for (const exact of [false, true]) {
    it(`${exact ? 'exact' : 'table'} kernel equals the scalar definition for every code and edge blocks`, () => {
      const scales = scaleSamples(500).filter((s) => exact || tableKernelApplies(s));
      assert.ok(scales.length > 100);
      const rows = 130; // two block rows, the second partial
      const columns = 128 * 3 + 45; // partial last block, a tail past the last multiple of 16
      const scaleColumns = 4;
      for (let first = 0; first < scales.length; first += 8) {
        kernel.reserve(rows * columns, 8);
        for (let i = 0; i < rows * columns; i++) kernel.input[i] = (i * 37 + (i >> 8) + first) & 0xff;
        for (let b = 0; b < 8; b++) kernel.scales[b] = scales[(first + b) % scales.length]!;
        kernel.run(rows, columns, scaleColumns, { exact });
        const expected = new Uint16Array(rows * columns);
        dequantColumnsScalar(kernel.input, expected, rows, columns, 0, kernel.scales, scaleColumns);
        const got = kernel.output.subarray(0, rows * columns);
        const at = got.findIndex((bits, i) => bits !== expected[i]);
        assert.equal(at, -1, `element ${at}: code ${kernel.input[at]}, got ${got[at]}, expected ${expected[at]}`);
      }
    });
  }

  it('stays exact when one kernel is reused for tasks of growing and shrinking sizes, output shifted', () => {
    const reused = new DequantKernel();
    // [rows, block columns]: fewer codes but more scales than the last reservation, within its rounding, and more
    for (const [rows, blockColumns] of [
      [40, 3],
      [1, 4],
      [3, 1],
      [2, 5],
      [1, 8],
      [9, 2],
      [1, 16],
      [4, 9],
    ] as const) {
      const columns = blockColumns * 128 - 60;
      reused.reserve(rows * columns, blockColumns);
      reused.shiftOutput((rows * 2050) % 4096); // where an O_DIRECT write at some file offset needs the result
      for (let i = 0; i < rows * columns; i++) reused.input[i] = (i * 11 + blockColumns) & 0xff;
      for (let b = 0; b < blockColumns; b++) reused.scales[b] = 2 ** -8 * (b + 1);
      reused.run(rows, columns, blockColumns);
      const expected = new Uint16Array(rows * columns);
      dequantColumnsScalar(reused.input, expected, rows, columns, 0, reused.scales, blockColumns);
      assert.deepEqual(reused.output.subarray(0, rows * columns), expected, `${blockColumns} block columns`);
    }
  });

  it('uses the table kernel only where it is exact', () => {
    assert.ok(tableKernelApplies(1e-3) && tableKernelApplies(-(2 ** 118)) && tableKernelApplies(2 ** -120));
    for (const s of [0, 2 ** -121, 2 ** 119, 1e-45, Infinity, NaN]) assert.ok(!tableKernelApplies(s), String(s));
  });
});

describe('task sizes', () => {
  it('cuts FP8 weights into whole block rows, or power-of-two parts of one block row', () => {
    assert.equal(rowsPerTask(1000, 1 << 20), 1024); // 8 block rows of 128 KB
    assert.equal(rowsPerTask(7168, 1 << 20), 128);
    assert.equal(rowsPerTask(16384, 1 << 20), 64);
    assert.equal(rowsPerTask(1000, 4096), 4);
    assert.equal(rowsPerTask(1 << 20, 1000), 1);
  });
});
