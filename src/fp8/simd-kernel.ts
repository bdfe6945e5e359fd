// The cast's inner loop as a WebAssembly SIMD function, assembled here from opcodes (no toolchain, no binary in the
// repository). Per 16 FP8 codes: widen to 4 x i32x4; magnitude bits << 20 read as fp32 and multiplied by 2^120 give the
// E4M3 value exactly (subnormals included); one f32x4.mul by the block scale (IEEE fp32); sign by xor; RNE to bf16;
// NaN codes (0x7F/0xFF) and NaN products -> 0x7FFF. Columns past the last multiple of 16 go through the scalar path
// (e4m3.ts), which defines the result; the unit tests hold both to the same bits for every code.
import { dequantColumnsScalar } from './e4m3.js';

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
  v128Load: [...simd(0x00), 0, 0],
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

// Parameters: input, output, rows, columns16 (columns rounded down to 16), columns, scales, scaleColumns.
const [pIn, pOut, pRows, pCols16, pCols, pScales, pScaleCols] = [0, 1, 2, 3, 4, 5, 6];
// Locals: i32 row, column, inRow, outRow, scaleRow; v128 scale, bytes, group, mag, product, bits, m7f, m80, k2p120,
// k7fff, k1.
const [row, col, inRow, outRow, scaleRow] = [7, 8, 9, 10, 11];
const [scale, bytes, group, mag, product, bits, m7f, m80, k2p120, k7fff, k1] = [
  12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
];

/** bf16 of one i32x4 group of codes (taken from the stack), left on the stack. */
function convertGroup(): number[] {
  return [
    ...op.set(group),
    ...op.get(group),
    ...op.get(m7f),
    ...op.and,
    ...op.tee(mag),
    ...op.i32(20),
    ...op.i32x4Shl,
    ...op.get(k2p120),
    ...op.f32x4Mul,
    ...op.get(scale),
    ...op.f32x4Mul,
    ...op.tee(product),
    ...op.get(group),
    ...op.get(m80),
    ...op.and,
    ...op.i32(24),
    ...op.i32x4Shl,
    ...op.xor,
    ...op.tee(bits),
    ...op.get(k7fff),
    ...op.i32x4Add,
    ...op.get(bits),
    ...op.i32(16),
    ...op.i32x4ShrU,
    ...op.get(k1),
    ...op.and,
    ...op.i32x4Add,
    ...op.i32(16),
    ...op.i32x4ShrU,
    ...op.set(bits),
    ...op.get(k7fff),
    ...op.get(bits),
    ...op.get(mag),
    ...op.get(m7f),
    ...op.i32x4Eq,
    ...op.get(product),
    ...op.get(product),
    ...op.f32x4Ne,
    ...op.or,
    ...op.bitselect,
  ];
}

const splatI32 = (value: number, local: number) => [...op.i32(value), ...op.i32x4Splat, ...op.set(local)];

function kernelBody(): number[] {
  const code = [
    ...splatI32(0x7f, m7f),
    ...splatI32(0x80, m80),
    ...splatI32(0x7b800000, k2p120), // 2^120 as fp32 bits
    ...splatI32(0x7fff, k7fff),
    ...splatI32(1, k1),
    ...op.i32(0),
    ...op.set(row),
    ...op.block,
    ...op.loop,
    ...op.get(row),
    ...op.get(pRows),
    ...op.geU,
    ...op.brIf(1),
    ...op.get(pIn),
    ...op.get(row),
    ...op.get(pCols),
    ...op.mul,
    ...op.add,
    ...op.set(inRow),
    ...op.get(pOut),
    ...op.get(row),
    ...op.get(pCols),
    ...op.mul,
    ...op.i32(1),
    ...op.shl,
    ...op.add,
    ...op.set(outRow),
    ...op.get(pScales),
    ...op.get(row),
    ...op.i32(7),
    ...op.shrU,
    ...op.get(pScaleCols),
    ...op.mul,
    ...op.i32(2),
    ...op.shl,
    ...op.add,
    ...op.set(scaleRow),
    ...op.i32(0),
    ...op.set(col),
    ...op.block,
    ...op.loop,
    ...op.get(col),
    ...op.get(pCols16),
    ...op.geU,
    ...op.brIf(1),
    ...op.get(scaleRow),
    ...op.get(col),
    ...op.i32(7),
    ...op.shrU,
    ...op.i32(2),
    ...op.shl,
    ...op.add,
    ...op.f32Load,
    ...op.f32x4Splat,
    ...op.set(scale),
    ...op.get(inRow),
    ...op.get(col),
    ...op.add,
    ...op.v128Load,
    ...op.set(bytes),
    ...op.get(outRow),
    ...op.get(col),
    ...op.i32(1),
    ...op.shl,
    ...op.add,
    ...op.get(bytes),
    ...op.extLow8,
    ...op.extLow16,
    ...convertGroup(),
    ...op.get(bytes),
    ...op.extLow8,
    ...op.extHigh16,
    ...convertGroup(),
    ...op.narrowU,
    ...op.v128Store(0),
    ...op.get(outRow),
    ...op.get(col),
    ...op.i32(1),
    ...op.shl,
    ...op.add,
    ...op.get(bytes),
    ...op.extHigh8,
    ...op.extLow16,
    ...convertGroup(),
    ...op.get(bytes),
    ...op.extHigh8,
    ...op.extHigh16,
    ...convertGroup(),
    ...op.narrowU,
    ...op.v128Store(16),
    ...op.get(col),
    ...op.i32(16),
    ...op.add,
    ...op.set(col),
    ...op.br(0),
    ...op.end,
    ...op.end,
    ...op.get(row),
    ...op.i32(1),
    ...op.add,
    ...op.set(row),
    ...op.br(0),
    ...op.end,
    ...op.end,
    ...op.end,
  ];
  const locals = vector([
    [5, i32],
    [11, v128],
  ]);
  return [...uleb(locals.length + code.length), ...locals, ...code];
}

const name = (text: string) => [...uleb(text.length), ...Buffer.from(text, 'ascii')];

function kernelModule(): Uint8Array {
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vector([[0x60, ...vector(Array.from({ length: 7 }, () => [i32])), 0]])),
    ...section(3, vector([[0]])),
    ...section(5, vector([[0x00, 1]])),
    ...section(
      7,
      vector([
        [...name('memory'), 0x02, 0],
        [...name('dequant'), 0x00, 0],
      ]),
    ),
    ...section(10, vector([kernelBody()])),
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

/**
 * A dequant engine with its own memory: `input` (FP8 codes), `output` (bf16 bits) and `scales` are views into it,
 * sized by `reserve`; `run` converts `rows` full rows of `columns` codes whose first row starts a 128-row block.
 */
export class DequantKernel {
  private memory: WasmMemory | undefined;
  private dequant: ((...args: number[]) => void) | undefined;
  input = new Uint8Array(0);
  output = new Uint16Array(0);
  scales = new Float32Array(0);
  private layout = { input: 0, output: 0, scales: 0 };

  constructor(useSimd = true) {
    const module = useSimd ? kernelCode() : undefined;
    if (module) {
      const instance = new wasm!.Instance(module);
      this.memory = instance.exports.memory as WasmMemory;
      this.dequant = instance.exports.dequant as (...args: number[]) => void;
    }
  }

  get simd(): boolean {
    return this.dequant !== undefined;
  }

  /** Make room for `codes` FP8 codes and `scaleCount` scales (views are replaced, never kept across calls). */
  reserve(codes: number, scaleCount: number): void {
    if (codes <= this.input.length && scaleCount <= this.scales.length) return;
    const scaleBytes = Math.ceil((scaleCount * 4) / 16) * 16;
    const inputBytes = Math.ceil(codes / 16) * 16;
    const total = scaleBytes + inputBytes + 2 * inputBytes;
    if (this.memory) {
      const pages = Math.ceil(total / 65536);
      const have = this.memory.buffer.byteLength / 65536;
      if (pages > have) this.memory.grow(pages - have);
      const buffer = this.memory.buffer;
      this.layout = { scales: 0, input: scaleBytes, output: scaleBytes + inputBytes };
      this.scales = new Float32Array(buffer, 0, scaleBytes / 4);
      this.input = new Uint8Array(buffer, scaleBytes, inputBytes);
      this.output = new Uint16Array(buffer, scaleBytes + inputBytes, inputBytes);
    } else {
      this.scales = new Float32Array(scaleBytes / 4);
      this.input = new Uint8Array(inputBytes);
      this.output = new Uint16Array(inputBytes);
    }
  }

  /** Dequantize `rows` x `columns` codes from `input` into `output` with `scaleColumns` scales per block row. */
  run(rows: number, columns: number, scaleColumns: number): void {
    const columns16 = this.dequant ? columns - (columns % 16) : 0;
    if (this.dequant && columns16 > 0) {
      const { input, output, scales } = this.layout;
      this.dequant(input, output, rows, columns16, columns, scales, scaleColumns);
    }
    if (columns16 < columns)
      dequantColumnsScalar(this.input, this.output, rows, columns, columns16, this.scales, scaleColumns);
  }
}
