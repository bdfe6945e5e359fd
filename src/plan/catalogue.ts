// The slime argument catalogue keel ships (made by scripts/make-slime-catalogue.sh from a slime checkout), or one
// read from a file (e.g. made from the cluster's own checkout). Node only: never imported by workflow code.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { argCatalogueSchema, type ArgCatalogue } from './flags.js';

/** slime at the commit SLIME-level facts in docs/slime.md were read from, Megatron-LM at the commit it pins. */
export const shippedCatalogueFile = fileURLToPath(new URL('./slime-args/slime-624b824a.json', import.meta.url));

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
