// The unit of work a worker thread does: one chunk of one tensor (whole 128-row blocks of an FP8 weight, or a byte
// range of a copied tensor), read from the input shard and written at its place in the output file -- or, to verify,
// recomputed and compared with what the output file holds. Results are written with O_DIRECT for their whole
// 4096-byte blocks and through the page cache for the partial blocks at either end.
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs';
import { DequantKernel, outputAlignment } from './simd-kernel.js';

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
  /** write whole 4096-byte blocks with O_DIRECT (the rest through the page cache) */
  direct: boolean;
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
  direct: boolean;
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

/** O_DIRECT where the platform has it (Linux); elsewhere every write goes through the page cache. */
const directFlag = (constants as { O_DIRECT?: number }).O_DIRECT;

/** What a task answers: the bytes it wrote with O_DIRECT. */
export interface TaskResult {
  directBytes: number;
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
  /** Set when the file system refused O_DIRECT (tmpfs before Linux 6.6, some FUSE and network mounts): from then on
   * this thread writes through the page cache only. */
  private directRefused = false;

  private open(file: string, flags: 'r' | 'r+' | 'direct', tensor: string): number {
    const at = this.files.findIndex((f) => f.file === file && f.flags === flags);
    if (at >= 0) {
      const [entry] = this.files.splice(at, 1);
      this.files.push(entry!);
      return entry!.fd;
    }
    let fd: number;
    try {
      fd = openSync(file, flags === 'direct' ? constants.O_WRONLY | directFlag! : flags);
    } catch (error) {
      throw new TaskError(`${file}: cannot open for tensor ${tensor} (${(error as Error).message})`);
    }
    this.files.push({ file, flags, fd });
    // up to three shards at a time, each open to read, to write and to write with O_DIRECT
    if (this.files.length > 9) closeSync(this.files.shift()!.fd);
    return fd;
  }

  /** A descriptor of `file` opened with O_DIRECT, or undefined where that is not possible here. */
  private openDirect(file: string, tensor: string): number | undefined {
    if (directFlag === undefined || this.directRefused) return undefined;
    try {
      return this.open(file, 'direct', tensor);
    } catch {
      this.directRefused = true;
      return undefined;
    }
  }

  /**
   * Write `data` at `position`: the whole 4096-byte blocks inside the range with O_DIRECT when the task asks for it
   * (`data` must then sit at an address congruent to `position` modulo 4096: see DequantKernel.shiftOutput), the
   * partial blocks at either end through the page cache. A block is thus written one way only: whole inside one
   * task, or shared by two tasks and written buffered by both. Returns the bytes written with O_DIRECT.
   */
  private writeOutput(task: Task, buffered: number, data: Uint8Array, position: number): number {
    const end = position + data.length;
    const first = Math.ceil(position / outputAlignment) * outputAlignment;
    const last = Math.floor(end / outputAlignment) * outputAlignment;
    const direct = task.direct && last > first ? this.openDirect(task.outputFile, task.tensor) : undefined;
    if (direct === undefined) {
      writeFully(buffered, data, position);
      return 0;
    }
    if (first > position) writeFully(buffered, data.subarray(0, first - position), position);
    const middle = data.subarray(first - position, last - position);
    let directBytes = middle.length;
    try {
      writeFully(direct, middle, first);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
      // Refused (alignment or file system): the same bytes through the page cache, and no O_DIRECT from now on.
      this.directRefused = true;
      writeFully(buffered, middle, first);
      directBytes = 0;
    }
    if (end > last) writeFully(buffered, data.subarray(last - position), last);
    return directBytes;
  }

  /** Close every file (before the pool reports a shard done, nothing of it stays open). */
  closeFiles(): void {
    for (const { fd } of this.files.splice(0)) closeSync(fd);
  }

  run(task: Task): TaskResult {
    try {
      const input = this.open(task.inputFile, 'r', task.tensor);
      const output = this.open(task.outputFile, task.verify ? 'r' : 'r+', task.tensor);
      const directBytes = task.kind === 'cast' ? this.cast(task, input, output) : this.copy(task, input, output);
      return { directBytes };
    } catch (error) {
      this.closeFiles();
      if (error instanceof TaskError) throw error;
      // Every error names the file and the tensor (a RangeError from a typed array says neither).
      throw new TaskError(`${task.inputFile}: tensor ${task.tensor}: ${(error as Error).message}`);
    }
  }

  private cast(task: CastTask, input: number, output: number): number {
    const codes = task.rows * task.columns;
    const kernel = this.kernel;
    kernel.reserve(codes, task.scales.length);
    // Even: a bf16 tensor follows only 8-, 4- and 2-byte tensors in the layout (safetensors.ts sorts by dtype).
    kernel.shiftOutput(task.outputOffset % outputAlignment);
    kernel.scales.set(task.scales);
    readFully(input, kernel.input.subarray(0, codes), task.inputOffset, task.inputFile, task.tensor);
    kernel.run(task.rows, task.columns, task.scaleColumns);
    const result = new Uint8Array(kernel.output.buffer, kernel.output.byteOffset, codes * 2);
    if (!task.verify) return this.writeOutput(task, output, result, task.outputOffset);
    const written = this.buffer(codes * 2);
    readFully(output, written, task.outputOffset, task.outputFile, task.tensor);
    if (written.equals(result)) return 0;
    const writtenBits = new Uint16Array(written.buffer, written.byteOffset, codes);
    const at = writtenBits.findIndex((bits, i) => bits !== kernel.output[i]);
    const row = task.firstRow + Math.floor(at / task.columns);
    throw new TaskError(
      `${task.outputFile}: tensor ${task.tensor} differs from the cast of ${task.inputFile} at [${row}, ${at % task.columns}]` +
        ` (0x${writtenBits[at]!.toString(16)} written, 0x${kernel.output[at]!.toString(16)} expected)`,
    );
  }

  private copy(task: CopyTask, input: number, output: number): number {
    if (!task.verify) {
      // Read into the kernel's output region at the shift O_DIRECT needs for this file offset.
      this.kernel.reserve(Math.ceil(task.bytes / 2), 0);
      const data = this.kernel.outputBytes(task.outputOffset % outputAlignment, task.bytes);
      readFully(input, data, task.inputOffset, task.inputFile, task.tensor);
      return this.writeOutput(task, output, data, task.outputOffset);
    }
    const data = this.buffer(task.bytes);
    readFully(input, data, task.inputOffset, task.inputFile, task.tensor);
    const written = Buffer.allocUnsafe(task.bytes);
    readFully(output, written, task.outputOffset, task.outputFile, task.tensor);
    if (!written.equals(data))
      throw new TaskError(`${task.outputFile}: tensor ${task.tensor} is not a byte-for-byte copy of ${task.inputFile}`);
    return 0;
  }
}
