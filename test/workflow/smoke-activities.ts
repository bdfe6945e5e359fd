// The smoke test's one activity: it runs in the worker process, outside the workflow sandbox.
export async function greet({ name }: { name: string }): Promise<string> {
  return `hello ${name} from pid ${process.pid}`;
}
