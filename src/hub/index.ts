// What the Hugging Face Hub says a repo revision holds (paths, sizes, sha256 of LFS files), and whether a local
// directory holds exactly that. Used by the hf-download step's check.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { describeName, relativePathProblem } from '../spec/names.js';
import { classifyReply, responseText } from '../net/bounded-body.js';
import { readFileBounded, StorageError, writeFileSafely } from '../storage/index.js';

export interface RepoFile {
  path: string;
  size: number;
  sha256?: string;
  /** git's blob id (sha1 of `blob <size>\0<content>`): what the Hub lists for a file not stored in LFS */
  blobId?: string;
}

export interface RepoListing {
  revision: string;
  sha?: string;
  files: RepoFile[];
}

export const defaultHubEndpoint = 'https://huggingface.co';
/** A listing with blobs of a very large repository is a few MB: a larger reply is refused. */
const listingMaxBytes = 64 * 1024 * 1024;

/** Why a Hub endpoint value is unusable, in words that never repeat the value (it may be a secret named by mistake). */
export function endpointProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'is not an http(s) URL';
  if (url.username || url.password) return 'carries credentials (name the token with model.hfTokenEnv instead)';
  return undefined;
}

/** A listing's file names stay inside the download directory; sizes are whole numbers of bytes. */
const repoFileSchema = z.object({
  path: z.string().superRefine((path, ctx) => {
    const problem = relativePathProblem(path);
    if (problem) ctx.addIssue({ code: 'custom', message: `${describeName(path)} ${problem}` });
  }),
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  sha256: z.string().max(128).optional(),
  blobId: z.string().max(128).optional(),
});
const listingSchema = z.object({
  revision: z.string(),
  sha: z.string().optional(),
  files: z.array(repoFileSchema).max(1_000_000),
});

/** The listing, checked: every file named by a path inside the directory (never `..`, absolute or /dev/...). */
export function checkedListing(listing: unknown, source: string): RepoListing {
  const parsed = listingSchema.safeParse(listing);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const where = issue.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('');
  throw new Error(
    `${source}: file list${where}: ${issue.message} -- refused (a listed file must be inside the download directory)`,
  );
}

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
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`the Hub answered ${response.status} for ${options.repo}@${options.revision}`);
  }
  const text = await responseText(response, listingMaxBytes, `the Hub listing of ${options.repo}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`the Hub listing of ${options.repo}@${options.revision} is not JSON (${classifyReply(text)})`);
  }
  const body = (parsed ?? {}) as {
    sha?: string;
    siblings?: { rfilename: string; size?: number; blobId?: string; lfs?: { sha256?: string; size?: number } }[];
  };
  const files = (body.siblings ?? []).map((s) => ({
    path: s.rfilename,
    size: s.lfs?.size ?? s.size ?? -1,
    ...(s.lfs?.sha256 === undefined ? {} : { sha256: s.lfs.sha256 }),
    ...(s.lfs === undefined && typeof s.blobId === 'string' ? { blobId: s.blobId } : {}),
  }));
  if (files.some((f) => f.size < 0)) throw new Error(`the Hub listing of ${options.repo} has files without sizes`);
  const listing = { revision: options.revision, ...(body.sha === undefined ? {} : { sha: body.sha }), files };
  return checkedListing(listing, `the Hub listing of ${options.repo}@${options.revision}`);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Problems of a local copy against a listing: missing files, wrong sizes, wrong sha256 (when asked). */
export async function compareWithListing(dir: string, listing: RepoListing, verifySha256: boolean): Promise<string[]> {
  const problems: string[] = [];
  for (const file of checkedListing(listing, 'the listing').files) {
    const local = join(dir, file.path);
    let size: number;
    try {
      const info = await stat(local);
      if (!info.isFile()) {
        problems.push(`${file.path} is not a regular file`);
        continue;
      }
      size = info.size;
    } catch {
      problems.push(`${file.path} is missing`);
      continue;
    }
    if (size !== file.size) {
      problems.push(`${file.path} has ${size} bytes, the Hub lists ${file.size}`);
      continue;
    }
    if (!verifySha256) continue;
    if (file.sha256) {
      if ((await sha256File(local)) !== file.sha256) problems.push(`${file.path} does not match its sha256`);
    } else if (file.blobId) {
      if ((await gitBlobId(local, size)) !== file.blobId) problems.push(`${file.path} does not match its git blob id`);
    } else {
      problems.push(`${file.path} is unverified: the listing gives neither a sha256 nor a git blob id for it`);
    }
  }
  return problems;
}

/** git's id of a file's content (`git hash-object`): sha1 of `blob <size>\0` and the bytes. */
export async function gitBlobId(path: string, size: number): Promise<string> {
  const hash = createHash('sha1');
  hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The listing a finished download saw, kept beside the files so that a check works when the Hub is unreachable. */
export const manifestName = '.keel-download.json';
/** A listing of a large repository is well under this. */
const manifestMaxBytes = 16 * 1024 * 1024;

export async function writeManifest(dir: string, listing: RepoListing): Promise<void> {
  await writeFileSafely(join(dir, manifestName), JSON.stringify(listing, null, 2));
}

/** The saved listing, or undefined when there is none; a manifest naming files outside the directory is an error. */
export async function readManifest(dir: string): Promise<RepoListing | undefined> {
  const file = join(dir, manifestName);
  let raw: unknown;
  try {
    const text = await readFileBounded(file, { maxBytes: manifestMaxBytes });
    if (text === undefined) return undefined;
    raw = JSON.parse(text);
  } catch (error) {
    if (error instanceof StorageError) throw error;
    return undefined;
  }
  return checkedListing(raw, file);
}
