// What the Hugging Face Hub says a repo revision holds (paths, sizes, sha256 of LFS files), and whether a local
// directory holds exactly that. Used by the hf-download step's check.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface RepoFile {
  path: string;
  size: number;
  sha256?: string;
}

export interface RepoListing {
  revision: string;
  sha?: string;
  files: RepoFile[];
}

export const defaultHubEndpoint = 'https://huggingface.co';

/** GET /api/{models|datasets}/{repo}/revision/{rev}?blobs=true: siblings with sizes and LFS sha256. */
export async function listRepoFiles(options: {
  endpoint?: string;
  repo: string;
  revision: string;
  repoType?: 'model' | 'dataset';
  token?: string;
  signal?: AbortSignal;
}): Promise<RepoListing> {
  const endpoint = (options.endpoint ?? defaultHubEndpoint).replace(/\/+$/, '');
  const kind = options.repoType === 'dataset' ? 'datasets' : 'models';
  const url = `${endpoint}/api/${kind}/${options.repo}/revision/${encodeURIComponent(options.revision)}?blobs=true`;
  const response = await fetch(url, {
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    signal: options.signal ?? AbortSignal.timeout(30_000),
  });
  if (!response.ok) throw new Error(`the Hub answered ${response.status} for ${options.repo}@${options.revision}`);
  const body = (await response.json()) as {
    sha?: string;
    siblings?: { rfilename: string; size?: number; lfs?: { sha256?: string; size?: number } }[];
  };
  const files = (body.siblings ?? []).map((s) => ({
    path: s.rfilename,
    size: s.lfs?.size ?? s.size ?? -1,
    sha256: s.lfs?.sha256,
  }));
  if (files.some((f) => f.size < 0)) throw new Error(`the Hub listing of ${options.repo} has files without sizes`);
  return { revision: options.revision, sha: body.sha, files };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Problems of a local copy against a listing: missing files, wrong sizes, wrong sha256 (when asked). */
export async function compareWithListing(dir: string, listing: RepoListing, verifySha256: boolean): Promise<string[]> {
  const problems: string[] = [];
  for (const file of listing.files) {
    const local = join(dir, file.path);
    let size: number;
    try {
      size = (await stat(local)).size;
    } catch {
      problems.push(`${file.path} is missing`);
      continue;
    }
    if (size !== file.size) {
      problems.push(`${file.path} has ${size} bytes, the Hub lists ${file.size}`);
      continue;
    }
    if (verifySha256 && file.sha256 && (await sha256File(local)) !== file.sha256) {
      problems.push(`${file.path} does not match its sha256`);
    }
  }
  return problems;
}

/** The listing a finished download saw, kept beside the files so that a check works when the Hub is unreachable. */
export const manifestName = '.keel-download.json';

export async function writeManifest(dir: string, listing: RepoListing): Promise<void> {
  await writeFile(join(dir, manifestName), JSON.stringify(listing, null, 2));
}

export async function readManifest(dir: string): Promise<RepoListing | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, manifestName), 'utf8')) as RepoListing;
  } catch {
    return undefined;
  }
}
