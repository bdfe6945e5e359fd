// A fixed set of worker threads taking tasks from one FIFO queue (earlier shards first). Aborting or closing the pool
// terminates the workers and rejects what is queued or running.
import { Worker } from 'node:worker_threads';
import { TaskError, type Task } from './tasks.js';

const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

/**
 * Start a worker thread on worker.ts/.js. Under tsx (keel runs from source) the thread registers tsx's loader itself
 * before importing the TypeScript entry: a loader passed through execArgv does not reach a worker's entry in Node 20.
 */
function startWorker(): Worker {
  if (!workerUrl.pathname.endsWith('.ts')) return new Worker(workerUrl);
  const source = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
    .then(({ register }) => { register(); return import(${JSON.stringify(workerUrl.href)}); })
    .catch((error) => { throw error; });`;
  return new Worker(source, { eval: true });
}

interface Pending {
  task: Task;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class WorkerPool {
  private idle: Worker[] = [];
  private busy = new Map<Worker, Pending>();
  private queue: Pending[] = [];
  private failure: Error | undefined;
  private workers: Worker[] = [];
  private closed = new Map<Worker, () => void>();

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = startWorker();
      worker.unref();
      worker.on('message', (message: { error?: string; closed?: true }) => {
        if (message.closed) return this.closed.get(worker)?.();
        const job = this.busy.get(worker);
        this.busy.delete(worker);
        this.idle.push(worker);
        if (job) {
          if (message.error === undefined) job.resolve();
          else job.reject(new TaskError(message.error));
        }
        this.dispatch();
      });
      worker.on('error', (error) => void this.close(error));
      worker.on('exit', (code) => {
        this.closed.get(worker)?.();
        if (!this.failure) void this.close(new Error(`a cast worker thread exited (code ${code})`));
      });
      this.workers.push(worker);
      this.idle.push(worker);
    }
  }

  run(task: Task): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      this.dispatch();
    });
  }

  /** The next task for an idle worker: the first one whose output file no other worker is writing (writes to one
   * file serialize on its inode lock), else the first one. */
  private next(): Pending {
    const writing = new Set([...this.busy.values()].map((job) => job.task.outputFile));
    const free = this.queue.findIndex((job) => !writing.has(job.task.outputFile));
    return this.queue.splice(Math.max(0, free), 1)[0]!;
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const worker = this.idle.pop()!;
      const job = this.next();
      this.busy.set(worker, job);
      worker.postMessage({ id: 0, task: job.task });
    }
  }

  private ending: Promise<void> | undefined;

  /** End the pool: queued and running tasks reject with `reason`; each worker closes the files it keeps open (after
   * its current task, within a few seconds) and is terminated. */
  close(reason: Error = new Error('the cast worker pool was closed')): Promise<void> {
    if (!this.failure) this.failure = reason;
    for (const job of [...this.queue, ...this.busy.values()]) job.reject(this.failure);
    this.queue = [];
    this.busy.clear();
    this.ending ??= Promise.all(
      this.workers.map(async (worker) => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => {
            this.closed.set(worker, resolve);
            worker.postMessage({ closeFiles: true });
          }),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000))),
        ]);
        clearTimeout(timer);
        await worker.terminate();
      }),
    ).then(() => undefined);
    return this.ending;
  }
}
