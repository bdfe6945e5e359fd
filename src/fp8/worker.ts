// A worker thread of the cast: runs the tasks the pool sends, one at a time, and answers each with ok or an error;
// on `closeFiles` it closes the files it keeps open between tasks.
import { parentPort } from 'node:worker_threads';
import { TaskRunner, type Task } from './tasks.js';

const runner = new TaskRunner();
parentPort!.on('message', (message: { task: Task } | { closeFiles: true }) => {
  if ('closeFiles' in message) {
    runner.closeFiles();
    parentPort!.postMessage({ closed: true });
    return;
  }
  try {
    parentPort!.postMessage(runner.run(message.task));
  } catch (error) {
    parentPort!.postMessage({ error: (error as Error).message });
  }
});
