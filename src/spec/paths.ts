// Where a spec's directories live. Pure (posix paths): relative model/ckpt paths are under storage.baseDir.
import type { Spec } from './schema.js';

export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p !== '').join('/');
  return joined.replace(/\/{2,}/g, '/');
}

/** A spec path as the programs see it: absolute stays, relative goes under baseDir. Trailing slashes are kept. */
export function underBase(spec: Spec, path: string): string {
  return path.startsWith('/') ? path : joinPath(spec.storage.baseDir, path);
}

export function stripTrailingSlash(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

export interface ModelPaths {
  download: string;
  bf16: string;
  torchDist: string;
  save: string;
  hfCheckpoint: string;
  refLoad: string;
  load: string;
}

export function modelPaths(spec: Spec): ModelPaths {
  const m = spec.model;
  return {
    download: underBase(spec, m.downloadDir),
    bf16: underBase(spec, m.bf16Dir),
    torchDist: underBase(spec, m.torchDistDir),
    save: underBase(spec, spec.ckpt.save ?? m.saveDir),
    hfCheckpoint: underBase(spec, spec.ckpt.hfCheckpoint ?? m.downloadDir),
    refLoad: underBase(spec, spec.ckpt.refLoad ?? m.torchDistDir),
    load: underBase(spec, spec.ckpt.load ?? m.saveDir),
  };
}

/**
 * Make the spec's local paths absolute against a directory (the keel checkout for the tiny-local preset, whose
 * paths are relative). Absolute paths are left alone. Runs where files are, never in workflow code.
 */
export function absolutize(spec: Spec, cwd: string): Spec {
  const abs = (p: string): string => (p.startsWith('/') ? p : joinPath(cwd, p));
  return {
    ...spec,
    storage: { ...spec.storage, baseDir: abs(spec.storage.baseDir) },
    slime: {
      ...spec.slime,
      dir: abs(spec.slime.dir),
      megatronPath: abs(spec.slime.megatronPath),
      // a relative interpreter path (tiny-local: .venv/bin/python3) is a path, not a name to look up in PATH
      python: spec.slime.python.includes('/') ? abs(spec.slime.python) : spec.slime.python,
    },
    cluster: {
      ...spec.cluster,
      stateDir: abs(spec.cluster.stateDir),
      env: spec.cluster.env.PATH
        ? { ...spec.cluster.env, PATH: spec.cluster.env.PATH.split(':').map(abs).join(':') }
        : spec.cluster.env,
    },
  };
}
