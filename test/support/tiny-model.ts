// Test helpers for the tiny model workloads: generate (once, cached in the OS temp dir) a small FP8 model with
// workloads/tiny/make_model.py, read safetensors headers, and run the loopback Hugging Face endpoint (hub.py).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const python = path.join(repoRoot, '.venv', 'bin', 'python');
export const tinyDir = path.join(repoRoot, 'workloads', 'tiny');
const TEST_MODEL_KEY = 'v4-seed7-steps20';

/** A small generated model (few pretraining steps: layout only), shared by the tiny test files. */
export async function ensureTestModel(): Promise<string> {
  const dir = path.join(os.tmpdir(), `keel-tiny-test-model-${TEST_MODEL_KEY}`);
  if (
    existsSync(path.join(dir, 'model.safetensors.index.json')) &&
    existsSync(path.join(dir, '.tiny-model-stamp.json'))
  )
    return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const args = ['--out', tmp, '--seed', '7', '--steps', '20', '--target-pass-rate', '2', '--shards', '4'];
  await execa(python, [path.join(tinyDir, 'make_model.py'), ...args]);
  try {
    await rename(tmp, dir);
  } catch {
    await rm(tmp, { recursive: true, force: true }); // another test process won the race
  }
  return dir;
}

export interface TensorInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The JSON header of a safetensors file (without __metadata__) and the byte offset where its data starts. */
export async function readSafetensorsHeader(
  file: string,
): Promise<{ tensors: Record<string, TensorInfo>; dataStart: number; metadata?: Record<string, string> }> {
  const handle = await open(file, 'r');
  try {
    const lengthBuf = Buffer.alloc(8);
    await handle.read(lengthBuf, 0, 8, 0);
    const length = Number(lengthBuf.readBigUInt64LE(0));
    const headerBuf = Buffer.alloc(length);
    await handle.read(headerBuf, 0, length, 8);
    const parsed = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
    const { __metadata__: metadata, ...tensors } = parsed;
    return {
      tensors: tensors as Record<string, TensorInfo>,
      dataStart: 8 + length,
      metadata: metadata as Record<string, string> | undefined,
    };
  } finally {
    await handle.close();
  }
}

/** The raw bytes of one tensor. */
export async function readTensorBytes(file: string, name: string): Promise<{ info: TensorInfo; bytes: Buffer }> {
  const { tensors, dataStart } = await readSafetensorsHeader(file);
  const info = tensors[name];
  if (!info) throw new Error(`${name} not in ${file}`);
  const data = await readFile(file);
  return { info, bytes: data.subarray(dataStart + info.data_offsets[0], dataStart + info.data_offsets[1]) };
}

export interface TinyHub {
  endpoint: string;
  stats(): Promise<HubRequest[]>;
  armDrop(repoPath: string, afterBytes: number): Promise<void>;
  stop(): Promise<void>;
}

export interface HubRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
  bytes: number;
}

/** Start workloads/tiny/hub.py on 127.0.0.1 (a free port), serving root/<org>/<name>/. */
export async function startTinyHub(root: string): Promise<TinyHub> {
  await mkdir(root, { recursive: true });
  const child: ChildProcess = spawn(
    python,
    [path.join(tinyDir, 'hub.py'), '--root', root, '--host', '127.0.0.1', '--port', '0'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const endpoint = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = /hub listening on (http:\/\/\S+)/.exec(line);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`hub.py exited early (${code})`)));
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await exited;
  };
  return {
    endpoint,
    stop,
    async stats() {
      const res = await fetch(`${endpoint}/_stats`);
      return ((await res.json()) as { requests: HubRequest[] }).requests;
    },
    async armDrop(repoPath, afterBytes) {
      const res = await fetch(`${endpoint}/_faults`, {
        method: 'POST',
        body: JSON.stringify({ path: repoPath, after_bytes: afterBytes }),
      });
      if (!res.ok) throw new Error(`arming the fault failed: ${res.status}`);
    },
  };
}

/** Run the real `hf download` against a hub endpoint. */
export async function hfDownload(endpoint: string, repo: string, localDir: string, hfHome: string) {
  const env: Record<string, string | undefined> = {
    ...process.env,
    HF_ENDPOINT: endpoint,
    HF_HUB_DISABLE_TELEMETRY: '1',
    HF_HOME: hfHome,
  };
  delete env.HF_HUB_OFFLINE;
  delete env.HF_TOKEN;
  return execa(path.join(repoRoot, '.venv', 'bin', 'hf'), ['download', repo, '--local-dir', localDir], {
    env,
    extendEnv: false,
    all: true,
  });
}
