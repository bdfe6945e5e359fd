// The arithmetic of the cast (docs/slime.md, "FP8 -> BF16 cast"): float8_e4m3fn -> fp32 through a 256-entry table,
// the product with the block scale in fp32, then round-to-nearest-even to bf16; NaN -> 0x7FFF (what the GPU reference
// writes). This scalar path is the definition; the SIMD kernel (simd-kernel.ts) must agree with it bit for bit.

/** float8_e4m3fn code -> its value (exact in fp32): `s eeee mmm`, bias 7, no infinities, 0x7F/0xFF NaN. */
export const e4m3Values: Float32Array = (() => {
  const values = new Float32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 3) & 0xf;
    const mantissa = code & 0x7;
    if ((code & 0x7f) === 0x7f) values[code] = NaN;
    else if (exponent === 0) values[code] = sign * mantissa * 2 ** -9;
    else values[code] = sign * (1 + mantissa / 8) * 2 ** (exponent - 7);
  }
  return values;
})();

export const bf16NaN = 0x7fff;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round a number to fp32, then to bf16 bits with round-to-nearest-even; NaN -> 0x7FFF. */
export function bf16Bits(value: number): number {
  f32[0] = value;
  if (Number.isNaN(f32[0])) return bf16NaN;
  const bits = u32[0]!;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits of `fp32(code) * scale`, the product in fp32: a double product of a 4-bit and a 24-bit significand is
 * exact, so `Math.fround` of it is the fp32 product. */
export function dequantBits(code: number, scale: number): number {
  return bf16Bits(Math.fround(e4m3Values[code]! * Math.fround(scale)));
}

/** The 256 bf16 results for one block scale: the whole block is then a table lookup per element. */
export function blockTable(scale: number, table = new Uint16Array(256)): Uint16Array {
  for (let code = 0; code < 256; code++) table[code] = dequantBits(code, scale);
  return table;
}

/**
 * Scalar dequant of columns [fromColumn, columns) of `rows` rows (row-major, `columns` wide) whose first row is a
 * multiple of 128; `scales` holds the scale rows of those rows' blocks (`scaleColumns` per row).
 */
export function dequantColumnsScalar(
  input: Uint8Array,
  output: Uint16Array,
  rows: number,
  columns: number,
  fromColumn: number,
  scales: Float32Array,
  scaleColumns: number,
): void {
  const table = new Uint16Array(256);
  for (let blockRow = 0; blockRow * 128 < rows; blockRow++) {
    const rowEnd = Math.min(rows, (blockRow + 1) * 128);
    for (let blockColumn = Math.floor(fromColumn / 128); blockColumn * 128 < columns; blockColumn++) {
      blockTable(scales[blockRow * scaleColumns + blockColumn]!, table);
      const columnStart = Math.max(fromColumn, blockColumn * 128);
      const columnEnd = Math.min(columns, (blockColumn + 1) * 128);
      for (let row = blockRow * 128; row < rowEnd; row++) {
        const base = row * columns;
        for (let k = base + columnStart; k < base + columnEnd; k++) output[k] = table[input[k]!]!;
      }
    }
  }
}
