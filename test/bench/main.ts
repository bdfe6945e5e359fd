// `npm run bench [name...]`: runs every test/bench/<name>.bench.ts (or the ones named), each printing its figures.
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const wanted = process.argv.slice(2);
const benches = (await readdir(dir))
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.slice(0, -'.bench.ts'.length))
  // The fault soak, the learning runs and the rehearsal are long: they run only when named (npm run bench:faults,
  // bench:learning, bench:rehearsal).
  .filter((name) => (wanted.length === 0 ? !['faults', 'learning', 'rehearsal'].includes(name) : wanted.includes(name)))
  .sort();
if (benches.length === 0) {
  console.error(`no benchmark named ${wanted.join(', ')}`);
  process.exit(2);
}
for (const name of benches) {
  console.log(`\n=== ${name}`);
  const module = (await import(`./${name}.bench.ts`)) as { run(): Promise<void> };
  await module.run();
}
