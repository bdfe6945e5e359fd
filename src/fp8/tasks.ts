// The unit of work a worker thread does: one chunk of one tensor (whole 128-row blocks of an FP8 weight, or a byte
// range of a copied tensor), read from the input shard and written at its place in the output file -- or, to verify,
// recomputed and compared with what the output file holds.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { DequantKernel } from './simd-kernel.js';

export interface CastTask {
  kind: 'cast';
  inputFile: string;
  outputFile: string;
  tensor: string;
  /** rows of this chunk, starting at `firstRow` (a multiple of 128) */
  firstRow: number;
  rows: number;
  columns: number;
  inputOffset: number;
  outputOffset: number;
  /** the scale rows of this chunk's blocks, `scaleColumns` per row */
  scales: Float32Array;
  scaleColumns: number;
  verify: boolean;
}

export interface CopyTask {
  kind: 'copy';
  inputFile: string;
  outputFile: string;
  tensor: string;
  bytes: number;
  inputOffset: number;
  outputOffset: number;
  verify: boolean;
}

export type Task = CastTask | CopyTask;

export class TaskError extends Error {
  override name = 'TaskError';
}

function readFully(fd: number, target: Uint8Array, position: number, file: string, tensor: string): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, target.length - done, position + done);
    if (n === 0)
      throw new TaskError(`${file}: tensor ${tensor} is cut short at byte ${position + done} (the file was truncated)`);
    done += n;
  }
}

function writeFully(fd: number, source: Uint8Array, position: number): void {
  let done = 0;
  while (done < source.length) done += writeSync(fd, source, done, source.length - done, position + done);
}

/** Runs tasks on this thread with reusable buffers. */
export class TaskRunner {
  private kernel: DequantKernel;
  private scratch = Buffer.alloc(0);

  constructor(useSimd = true) {
    this.kernel = new DequantKernel(useSimd);
  }

  private buffer(bytes: number): Buffer {
    if (this.scratch.length < bytes) this.scratch = Buffer.allocUnsafe(bytes);
    return this.scratch.subarray(0, bytes);
  }

  /** Open files, most recent last: tasks come in runs on the same shard, so a few stay open between tasks. */
  private files: { file: string; flags: string; fd: number }[] = [];

  private open(file: string, flags: string, tensor: string): number {
    const at = this.files.findIndex((f) => f.file === file && f.flags === flags);
    if (at >= 0) {
      const [entry] = this.files.splice(at, 1);
      this.files.push(entry!);
      return entry!.fd;
    }
    let fd: number;
    try {
      fd = openSync(file, flags);
    } catch (error) {
      throw new TaskError(`${file}: cannot open for tensor ${tensor} (${(error as Error).message})`);
    }
    this.files.push({ file, flags, fd });
    if (this.files.length > 4) closeSync(this.files.shift()!.fd);
    return fd;
  }

  /** Close every file (before the pool reports a shard done, nothing of it stays open). */
  closeFiles(): void {
    for (const { fd } of this.files.splice(0)) closeSync(fd);
  }

  run(task: Task): void {
    try {
      const input = this.open(task.inputFile, 'r', task.tensor);
      const output = this.open(task.outputFile, task.verify ? 'r' : 'r+', task.tensor);
      if (task.kind === 'cast') this.cast(task, input, output);
      else this.copy(task, input, output);
    } catch (error) {
      this.closeFiles();
      throw error;
    }
  }

  private cast(task: CastTask, input: number, output: number): void {
    const codes = task.rows * task.columns;
    const kernel = this.kernel;
    kernel.reserve(codes, task.scales.length);
    kernel.scales.set(task.scales);
    readFully(input, kernel.input.subarray(0, codes), task.inputOffset, task.inputFile, task.tensor);
    kernel.run(task.rows, task.columns, task.scaleColumns);
    const result = new Uint8Array(kernel.output.buffer, kernel.output.byteOffset, codes * 2);
    if (!task.verify) return writeFully(output, result, task.outputOffset);
    const written = this.buffer(codes * 2);
    readFully(output, written, task.outputOffset, task.outputFile, task.tensor);
    if (written.equals(result)) return;
    const writtenBits = new Uint16Array(written.buffer, written.byteOffset, codes);
    const at = writtenBits.findIndex((bits, i) => bits !== kernel.output[i]);
    const row = task.firstRow + Math.floor(at / task.columns);
    throw new TaskError(
      `${task.outputFile}: tensor ${task.tensor} differs from the cast of ${task.inputFile} at [${row}, ${at % task.columns}]` +
        ` (0x${writtenBits[at]!.toString(16)} written, 0x${kernel.output[at]!.toString(16)} expected)`,
    );
  }

  private copy(task: CopyTask, input: number, output: number): void {
    const data = this.buffer(task.bytes);
    readFully(input, data, task.inputOffset, task.inputFile, task.tensor);
    if (!task.verify) return writeFully(output, data, task.outputOffset);
    const written = Buffer.allocUnsafe(task.bytes);
    readFully(output, written, task.outputOffset, task.outputFile, task.tensor);
    if (!written.equals(data))
      throw new TaskError(`${task.outputFile}: tensor ${task.tensor} is not a byte-for-byte copy of ${task.inputFile}`);
  }
}
