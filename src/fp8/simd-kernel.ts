// The cast's inner loop as a WebAssembly SIMD function, assembled here from opcodes (no toolchain, no binary in the
// repository). Per 16 FP8 codes: widen to 4 x i32x4; magnitude bits << 20 read as fp32 and multiplied by 2^120 give the
// E4M3 value exactly (subnormals included); one f32x4.mul by the block scale (IEEE fp32); sign by xor; RNE to bf16;
// NaN codes (0x7F/0xFF) and NaN products -> 0x7FFF. Columns past the last multiple of 16 go through the scalar path
// (e4m3.ts), which defines the result; the unit tests hold both to the same bits for every code.
import { dequantBits, dequantColumnsScalar } from './e4m3.js';

const i32 = 0x7f;
const v128 = 0x7b;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    if ((value === 0 && !(byte & 0x40)) || (value === -1 && byte & 0x40)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const vector = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const simd = (op: number) => [0xfd, ...uleb(op)];
const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  add: [0x6a],
  mul: [0x6c],
  shl: [0x74],
  shrU: [0x76],
  geU: [0x4f],
  brIf: (depth: number) => [0x0d, depth],
  br: (depth: number) => [0x0c, depth],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  f32Load: [0x2a, 2, 0],
  v128Load: (offset: number) => [...simd(0x00), 0, ...uleb(offset)],
  shuffle: (lanes: number[]) => [...simd(0x0d), ...lanes],
  swizzle: simd(0x0e),
  i8x16Splat: simd(0x0f),
  i16x8Splat: simd(0x10),
  i8x16Eq: simd(0x23),
  i16x8Eq: simd(0x2d),
  i16x8Shl: simd(0x8b),
  i16x8Add: simd(0x8e),
  i16x8SubSatU: simd(0x93),
  v128Store: (offset: number) => [...simd(0x0b), 0, ...uleb(offset)],
  i32x4Splat: simd(0x11),
  f32x4Splat: simd(0x13),
  i32x4Eq: simd(0x37),
  f32x4Ne: simd(0x42),
  and: simd(0x4e),
  or: simd(0x50),
  xor: simd(0x51),
  bitselect: simd(0x52),
  narrowU: simd(0x86),
  extLow8: simd(0x89),
  extHigh8: simd(0x8a),
  extLow16: simd(0xa9),
  extHigh16: simd(0xaa),
  i32x4Shl: simd(0xab),
  i32x4ShrU: simd(0xad),
  i32x4Add: simd(0xae),
  f32x4Mul: simd(0xe6),
};

// Both kernels take (input, output, rows, columns16, columns, scales or tables, scaleColumns): `rows` full rows of
// `columns` codes whose first row starts a 128-row block; columns past `columns16` are left to the scalar path.
const [pIn, pOut, pRows, pCols16, pCols, pScales, pScaleCols] = [0, 1, 2, 3, 4, 5, 6];
const [row, col, inRow, outRow, scaleRow] = [7, 8, 9, 10, 11];

/** The row and column loops around `body` (which sees inRow, outRow, scaleRow = block-row base of the scales or tables,
 * col); `blockBytes` is the bytes per block in the scale/table region (4 for a scale, 64 for a table). */
function rowLoops(blockBytes: number, body: number[]): number[] {
  const log2 = Math.log2(blockBytes);
  // prettier-ignore
  return [
    ...op.i32(0), ...op.set(row),
    ...op.block, ...op.loop,
    ...op.get(row), ...op.get(pRows), ...op.geU, ...op.brIf(1),
    ...op.get(pIn), ...op.get(row), ...op.get(pCols), ...op.mul, ...op.add, ...op.set(inRow),
    ...op.get(pOut), ...op.get(row), ...op.get(pCols), ...op.mul, ...op.i32(1), ...op.shl, ...op.add, ...op.set(outRow),
    ...op.get(pScales), ...op.get(row), ...op.i32(7), ...op.shrU, ...op.get(pScaleCols), ...op.mul,
    ...op.i32(log2), ...op.shl, ...op.add, ...op.set(scaleRow),
    ...op.i32(0), ...op.set(col),
    ...op.block, ...op.loop,
    ...op.get(col), ...op.get(pCols16), ...op.geU, ...op.brIf(1),
    ...body,
    ...op.get(col), ...op.i32(16), ...op.add, ...op.set(col),
    ...op.br(0), ...op.end, ...op.end,
    ...op.get(row), ...op.i32(1), ...op.add, ...op.set(row),
    ...op.br(0), ...op.end, ...op.end,
  ];
}

/** Address of this block's scale (4 bytes) or table (64 bytes): scaleRow + (col >> 7) * blockBytes. */
const blockAddress = (blockBytes: number) => [
  ...op.get(scaleRow),
  ...op.get(col),
  ...op.i32(7),
  ...op.shrU,
  ...op.i32(Math.log2(blockBytes)),
  ...op.shl,
  ...op.add,
];

// The exact kernel: any scale (zero, subnormal, huge, NaN). v128 locals after the i32 ones.
const [scale, bytes, group, mag, product, bits, m7f, m80, k2p120, k7fff, k1] = [
  12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
];

/** bf16 of one i32x4 group of codes (taken from the stack), left on the stack. */
function convertGroup(): number[] {
  // prettier-ignore
  return [
    ...op.set(group),
    // product = fp32(code & 0x7f as E4M3, exact) * scale, one fp32 rounding
    ...op.get(group), ...op.get(m7f), ...op.and, ...op.tee(mag),
    ...op.i32(20), ...op.i32x4Shl, ...op.get(k2p120), ...op.f32x4Mul, ...op.get(scale), ...op.f32x4Mul, ...op.tee(product),
    // sign of the code, then round to nearest even: (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
    ...op.get(group), ...op.get(m80), ...op.and, ...op.i32(24), ...op.i32x4Shl, ...op.xor, ...op.tee(bits),
    ...op.get(k7fff), ...op.i32x4Add,
    ...op.get(bits), ...op.i32(16), ...op.i32x4ShrU, ...op.get(k1), ...op.and, ...op.i32x4Add,
    ...op.i32(16), ...op.i32x4ShrU, ...op.set(bits),
    // NaN codes and NaN products -> 0x7fff
    ...op.get(k7fff), ...op.get(bits),
    ...op.get(mag), ...op.get(m7f), ...op.i32x4Eq, ...op.get(product), ...op.get(product), ...op.f32x4Ne, ...op.or,
    ...op.bitselect,
  ];
}

const splat = (splatOp: number[], value: number, local: number) => [...op.i32(value), ...splatOp, ...op.set(local)];

function exactKernel(): number[] {
  // prettier-ignore
  const code = [
    ...splat(op.i32x4Splat, 0x7f, m7f), ...splat(op.i32x4Splat, 0x80, m80),
    ...splat(op.i32x4Splat, 0x7b800000, k2p120), // 2^120 as fp32 bits
    ...splat(op.i32x4Splat, 0x7fff, k7fff), ...splat(op.i32x4Splat, 1, k1),
    ...rowLoops(4, [
      ...blockAddress(4), ...op.f32Load, ...op.f32x4Splat, ...op.set(scale),
      ...op.get(inRow), ...op.get(col), ...op.add, ...op.v128Load(0), ...op.set(bytes),
      ...op.get(outRow), ...op.get(col), ...op.i32(1), ...op.shl, ...op.add,
      ...op.get(bytes), ...op.extLow8, ...op.extLow16, ...convertGroup(),
      ...op.get(bytes), ...op.extLow8, ...op.extHigh16, ...convertGroup(),
      ...op.narrowU, ...op.v128Store(0),
      ...op.get(outRow), ...op.get(col), ...op.i32(1), ...op.shl, ...op.add,
      ...op.get(bytes), ...op.extHigh8, ...op.extLow16, ...convertGroup(),
      ...op.get(bytes), ...op.extHigh8, ...op.extHigh16, ...convertGroup(),
      ...op.narrowU, ...op.v128Store(16),
    ]),
    ...op.end,
  ];
  return functionBody(
    [
      [5, i32],
      [11, v128],
    ],
    code,
  );
}

// The table kernel, for blocks whose scale keeps every product in the normal range (2^-120 <= |s| <= 2^118, which
// real checkpoints satisfy): there, bf16(fp32(v * s)) for a normal code (exponent e >= 1, mantissa m) is the bf16 of
// (1 + m/8) * 2^-6 * s with e - 1 added to its exponent field -- scaling by a power of two commutes with both
// roundings in the normal range. Per block, 8 such values and the 8 results of the subnormal codes (m * 2^-9 * s) form
// a 64-byte table (low bytes, high bytes, for normal and subnormal codes), looked up 16 codes at a time by swizzle.
const tables = 12; // i32: this block's table
const [x, m, isSub, lo, hi, wide, c7, c78, c80, c78w, c80w, c7fw, k7fffw, zero] = [
  13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
];
const interleaveLow = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const interleaveHigh = interleaveLow.map((lane) => lane + 8);

/** 8 bf16 results (codes 8k..8k+7 of one half) from the lo/hi planes, the exponent added, NaN codes -> 0x7fff. */
function tableHalf(interleave: number[], extend: number[]): number[] {
  // prettier-ignore
  return [
    ...op.get(k7fffw),
    ...op.get(lo), ...op.get(hi), ...op.shuffle(interleave),
    ...op.get(x), ...extend, ...op.tee(wide), ...op.get(c78w), ...op.and, ...op.i32(4), ...op.i16x8Shl,
    ...op.get(c80w), ...op.i16x8SubSatU, ...op.i16x8Add,
    ...op.get(wide), ...op.get(c7fw), ...op.and, ...op.get(c7fw), ...op.i16x8Eq,
    ...op.bitselect,
  ];
}

function tableKernel(): number[] {
  // prettier-ignore
  const code = [
    ...splat(op.i8x16Splat, 7, c7), ...splat(op.i8x16Splat, 0x78, c78), ...splat(op.i8x16Splat, 0x80, c80),
    ...splat(op.i16x8Splat, 0x78, c78w), ...splat(op.i16x8Splat, 0x80, c80w), ...splat(op.i16x8Splat, 0x7f, c7fw),
    ...splat(op.i16x8Splat, 0x7fff, k7fffw), ...splat(op.i32x4Splat, 0, zero),
    ...rowLoops(64, [
      ...blockAddress(64), ...op.set(tables),
      ...op.get(inRow), ...op.get(col), ...op.add, ...op.v128Load(0), ...op.tee(x),
      ...op.get(c7), ...op.and, ...op.set(m),
      ...op.get(x), ...op.get(c78), ...op.and, ...op.get(zero), ...op.i8x16Eq, ...op.set(isSub),
      ...op.get(tables), ...op.v128Load(32), ...op.get(m), ...op.swizzle,
      ...op.get(tables), ...op.v128Load(0), ...op.get(m), ...op.swizzle, ...op.get(isSub), ...op.bitselect, ...op.set(lo),
      ...op.get(tables), ...op.v128Load(48), ...op.get(m), ...op.swizzle,
      ...op.get(tables), ...op.v128Load(16), ...op.get(m), ...op.swizzle, ...op.get(isSub), ...op.bitselect,
      ...op.get(x), ...op.get(c80), ...op.and, ...op.xor, ...op.set(hi),
      ...op.get(outRow), ...op.get(col), ...op.i32(1), ...op.shl, ...op.add,
      ...tableHalf(interleaveLow, op.extLow8), ...op.v128Store(0),
      ...op.get(outRow), ...op.get(col), ...op.i32(1), ...op.shl, ...op.add,
      ...tableHalf(interleaveHigh, op.extHigh8), ...op.v128Store(16),
    ]),
    ...op.end,
  ];
  return functionBody(
    [
      [6, i32],
      [15, v128],
    ],
    code,
  );
}

function functionBody(localGroups: [number, number][], code: number[]): number[] {
  const locals = vector(localGroups.map(([count, type]) => [...uleb(count), type]));
  return [...uleb(locals.length + code.length), ...locals, ...code];
}

const name = (text: string) => [...uleb(text.length), ...Buffer.from(text, 'ascii')];

export function kernelModule(): Uint8Array {
  const signature = [0x60, ...vector(Array.from({ length: 7 }, () => [i32])), 0];
  const exports = [
    [...name('memory'), 0x02, 0],
    [...name('exact'), 0x00, 0],
    [...name('table'), 0x00, 1],
  ];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vector([signature])),
    ...section(3, vector([[0], [0]])),
    ...section(5, vector([[0x00, 1]])),
    ...section(7, vector(exports)),
    ...section(10, vector([exactKernel(), tableKernel()])),
  ]);
}

// The WebAssembly global of Node, typed here for what the kernel uses (the project compiles without the DOM lib).
interface WasmMemory {
  buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

let compiled: object | undefined;

/** The kernel's compiled module, or undefined where WebAssembly SIMD is not available (the scalar path is used). */
function kernelCode(): object | undefined {
  if (compiled === undefined) {
    const bytes = kernelModule();
    if (!wasm?.validate(bytes)) return undefined;
    compiled = new wasm.Module(bytes);
  }
  return compiled;
}

/** Does every product of this scale stay in fp32's and bf16's normal range, so the table kernel is exact? */
export function tableKernelApplies(scale: number): boolean {
  const magnitude = Math.abs(scale);
  return magnitude >= 2 ** -120 && magnitude <= 2 ** 118;
}

/** Fill `table` (64 bytes at `offset`) for one block: low and high bytes of the normal (e = 1) and subnormal codes. */
function fillTable(table: Uint8Array, offset: number, scale: number): void {
  for (let mantissa = 0; mantissa < 8; mantissa++) {
    const normal = dequantBits(8 + mantissa, scale);
    const subnormal = dequantBits(mantissa, scale);
    table[offset + mantissa] = normal & 0xff;
    table[offset + 16 + mantissa] = normal >> 8;
    table[offset + 32 + mantissa] = subnormal & 0xff;
    table[offset + 48 + mantissa] = subnormal >> 8;
  }
}

type Kernel = (...args: number[]) => void;

/** The alignment of O_DIRECT writes: file offsets, lengths and memory addresses (4096 covers 512 and 4K sectors). */
export const outputAlignment = 4096;

/**
 * A dequant engine with its own memory: `input` (FP8 codes), `output` (bf16 bits) and `scales` are views into it,
 * sized by `reserve`; `run` converts `rows` full rows of `columns` codes whose first row starts a 128-row block.
 */
export class DequantKernel {
  private memory: WasmMemory | undefined;
  private kernels: { exact: Kernel; table: Kernel } | undefined;
  input = new Uint8Array(0);
  output = new Uint16Array(0);
  scales = new Float32Array(0);
  private tables = new Uint8Array(0);
  private layout = { input: 0, output: 0, scales: 0, tables: 0 };
  /** bytes of the output region past the aligned start at which `output` begins (see `shiftOutput`) */
  private shift = 0;
  private outputRegion = new Uint8Array(0);

  constructor(useSimd = true) {
    const module = useSimd ? kernelCode() : undefined;
    if (module) {
      const instance = new wasm!.Instance(module);
      this.memory = instance.exports.memory as WasmMemory;
      this.kernels = { exact: instance.exports.exact as Kernel, table: instance.exports.table as Kernel };
    }
  }

  get simd(): boolean {
    return this.kernels !== undefined;
  }

  /** Make room for `codes` FP8 codes and `scaleCount` scales (views are replaced, never kept across calls). */
  reserve(codes: number, scaleCount: number): void {
    if (codes <= this.input.length && scaleCount <= this.scales.length) return;
    const scaleBytes = Math.ceil((scaleCount * 4) / 16) * 16;
    const tableBytes = (scaleBytes / 4) * 64; // a table for every scale the scale view can hold
    const inputBytes = Math.ceil(codes / 16) * 16;
    const regionBytes = 2 * inputBytes + outputAlignment;
    if (this.memory) {
      const tables = scaleBytes;
      const input = tables + tableBytes;
      const output = Math.ceil((input + inputBytes) / outputAlignment) * outputAlignment;
      const pages = Math.ceil((output + regionBytes) / 65536);
      const have = this.memory.buffer.byteLength / 65536;
      if (pages > have) this.memory.grow(pages - have);
      const buffer = this.memory.buffer;
      this.layout = { scales: 0, tables, input, output };
      this.scales = new Float32Array(buffer, 0, scaleBytes / 4);
      this.tables = new Uint8Array(buffer, tables, tableBytes);
      this.input = new Uint8Array(buffer, input, inputBytes);
      this.outputRegion = new Uint8Array(buffer, output, regionBytes);
    } else {
      this.scales = new Float32Array(scaleBytes / 4);
      this.input = new Uint8Array(inputBytes);
      this.outputRegion = new Uint8Array(regionBytes);
    }
    this.shiftOutput(this.shift);
  }

  /**
   * Start `output` `shift` bytes (even, below 4096) past a 4096-aligned address of the kernel's memory (WebAssembly
   * memory starts on a page): a result bound for file offset f, with shift = f % 4096, then has its whole 4096-byte
   * blocks at aligned addresses, as O_DIRECT writes need. `outputBytes` views the same place as bytes.
   */
  shiftOutput(shift: number): void {
    if (shift % 2 || shift < 0 || shift >= outputAlignment) throw new Error(`bad output shift ${shift}`);
    this.shift = shift;
    const region = this.outputRegion;
    this.output = new Uint16Array(region.buffer, region.byteOffset + shift, (region.length - outputAlignment) / 2);
  }

  /** `length` bytes from `shift` bytes past the aligned start of the output region (any shift below 4096). */
  outputBytes(shift: number, length: number): Uint8Array {
    if (shift < 0 || shift >= outputAlignment || length > this.outputRegion.length - outputAlignment)
      throw new Error(`bad output view (${shift}, ${length})`);
    return this.outputRegion.subarray(shift, shift + length);
  }

  /** Dequantize `rows` x `columns` codes from `input` into `output` with `scaleColumns` scales per block row. */
  run(rows: number, columns: number, scaleColumns: number, options: { exact?: boolean } = {}): void {
    const columns16 = this.kernels ? columns - (columns % 16) : 0;
    if (this.kernels && columns16 > 0) {
      const blocks = Math.ceil(rows / 128) * scaleColumns;
      const scales = this.scales.subarray(0, blocks);
      const useTable = !options.exact && scales.every(tableKernelApplies);
      if (useTable) for (let b = 0; b < blocks; b++) fillTable(this.tables, b * 64, scales[b]!);
      const region = useTable ? this.layout.tables : this.layout.scales;
      const kernel = useTable ? this.kernels.table : this.kernels.exact;
      kernel(this.layout.input, this.layout.output + this.shift, rows, columns16, columns, region, scaleColumns);
    }
    if (columns16 < columns)
      dequantColumnsScalar(this.input, this.output, rows, columns, columns16, this.scales, scaleColumns);
  }
}
