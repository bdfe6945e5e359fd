// The slime argument catalogues keel ships, one per slime commit (src/plan/slime-args/slime-<commit>.json, made by
// scripts/make-slime-catalogue.sh), or one read from a file (e.g. made from the cluster's own checkout). Node only:
// never imported by workflow code.
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { argCatalogueSchema, type ArgCatalogue } from './flags.js';

const shippedDir = fileURLToPath(new URL('./slime-args/', import.meta.url));

/** The slime commit keel's recipe and docs/slime.md were read against: `keel plan` checks against its catalogue. */
export const defaultSlimeCommit = '624b824a898ab0ec1fcb4d373004c7f3852bf515';

export const shippedCatalogueFile = `${shippedDir}slime-${defaultSlimeCommit.slice(0, 8)}.json`;

export function parseCatalogue(text: string, source: string): ArgCatalogue {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not JSON: ${(error as Error).message}`);
  }
  const parsed = argCatalogueSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: not a slime argument catalogue: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

export async function loadCatalogue(file: string = shippedCatalogueFile): Promise<ArgCatalogue> {
  return parseCatalogue(await readFile(file, 'utf8'), file);
}

/** The short commits keel ships a catalogue for. */
export async function shippedCommits(): Promise<string[]> {
  const names = await readdir(shippedDir);
  return names.flatMap((n) => /^slime-([0-9a-f]{8})\.json$/.exec(n)?.[1] ?? []).sort();
}

/** The catalogue keel ships for this slime commit (full or abbreviated), or undefined when it ships none. */
export async function shippedCatalogueFor(commit: string): Promise<ArgCatalogue | undefined> {
  const short = commit.slice(0, 8).toLowerCase();
  if (!(await shippedCommits()).includes(short)) return undefined;
  const catalogue = await loadCatalogue(`${shippedDir}slime-${short}.json`);
  const full = catalogue.sources.slime?.commit ?? '';
  return full.startsWith(commit.toLowerCase()) ? catalogue : undefined;
}

/**
 * The catalogue to check a cluster's flags against. The probe reads slime, Megatron and SGLang on the head node; when
 * that node's Python finds no SGLang, SGLang's flags come from the catalogue keel ships for the same slime commit,
 * and when keel ships none for it, a note says SGLang's flags are not checked and how to make one.
 */
export async function withShippedSglang(onNode: ArgCatalogue): Promise<{ catalogue: ArgCatalogue; notes: string[] }> {
  if (onNode.sglangIncluded) return { catalogue: onNode, notes: [] };
  const commit = onNode.sources.slime?.commit;
  const shipped = commit ? await shippedCatalogueFor(commit) : undefined;
  if (!shipped?.sglangIncluded) {
    const have = (await shippedCommits()).join(', ');
    return {
      catalogue: onNode,
      notes: [
        `the head node's Python finds no sglang, and keel ships no catalogue for slime ${commit ? commit.slice(0, 8) : '(not a git checkout)'} ` +
          `(it ships: ${have}): SGLang's flags are not checked; make one with scripts/make-slime-catalogue.sh ${commit ?? 'COMMIT'}`,
      ],
    };
  }
  const options = { ...onNode.options };
  for (const [flag, option] of Object.entries(shipped.options)) {
    if (option.parser === 'sglang' && !(flag in options)) options[flag] = option;
  }
  const sources = { ...onNode.sources };
  for (const name of ['sglang', 'sglang-router']) if (shipped.sources[name]) sources[name] = shipped.sources[name]!;
  return {
    catalogue: { ...onNode, options, sources, sglangIncluded: true, sglang: shipped.sglang },
    notes: [
      `the head node's Python finds no sglang: SGLang's flags are checked against the catalogue keel ships for slime ${commit!.slice(0, 8)}`,
    ],
  };
}
