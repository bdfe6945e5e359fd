// A fixed set of worker threads taking tasks from one FIFO queue (earlier shards first). Aborting or closing the pool
// terminates the workers and rejects what is queued or running.
import { Worker } from 'node:worker_threads';
import { TaskError, type Task, type TaskResult } from './tasks.js';

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

/** Tasks sent ahead to each worker. */
const depth = 3;

interface Pending {
  task: Task;
  resolve: (result: TaskResult) => void;
  reject: (error: Error) => void;
}

export class WorkerPool {
  /** Tasks sent to each worker and not answered yet, oldest first (a worker answers in order). */
  private inFlight = new Map<Worker, Pending[]>();
  private queue: Pending[] = [];
  private failure: Error | undefined;
  private workers: Worker[] = [];
  private closed = new Map<Worker, () => void>();

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = startWorker();
      worker.unref();
      worker.on('message', (message: Partial<TaskResult> & { error?: string; closed?: true }) => {
        if (message.closed) return this.closed.get(worker)?.();
        const job = this.inFlight.get(worker)?.shift();
        if (job) {
          if (message.error === undefined) job.resolve({ directBytes: message.directBytes ?? 0 });
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
      this.inFlight.set(worker, []);
    }
  }

  run(task: Task): Promise<TaskResult> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      this.dispatch();
    });
  }

  /** The next task for `worker`: the first one whose output file no other worker is writing (writes to one file
   * serialize on its inode lock), else the first one. */
  private next(worker: Worker): Pending {
    const writing = new Set<string>();
    for (const [other, jobs] of this.inFlight)
      if (other !== worker) for (const job of jobs) writing.add(job.task.outputFile);
    const free = this.queue.findIndex((job) => !writing.has(job.task.outputFile));
    return this.queue.splice(Math.max(0, free), 1)[0]!;
  }

  /** Keep `depth` tasks sent to every worker, so none waits for this thread between two tasks. */
  private dispatch(): void {
    for (let filled = false; !filled && this.queue.length;) {
      filled = true;
      for (const [worker, jobs] of this.inFlight) {
        if (jobs.length >= depth || !this.queue.length) continue;
        const job = this.next(worker);
        jobs.push(job);
        worker.postMessage({ task: job.task });
        filled = false;
      }
    }
  }

  private ending: Promise<void> | undefined;

  /** End the pool: queued and running tasks reject with `reason`; each worker closes the files it keeps open (after
   * its current task, within a few seconds) and is terminated. */
  close(reason: Error = new Error('the cast worker pool was closed')): Promise<void> {
    if (!this.failure) this.failure = reason;
    for (const job of [...this.queue, ...[...this.inFlight.values()].flat()]) job.reject(this.failure);
    this.queue = [];
    for (const jobs of this.inFlight.values()) jobs.length = 0;
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
