// From whatever a person typed (a full spec, or { preset, overrides }) to a validated Spec, or a list of problems
// each named by its path. Pure: used by the CLI and client at the edge and again inside the workflow.
import { z } from 'zod';
import { inputProblems } from './guard.js';
import { isPrototypeKey } from './names.js';
import { isPresetName, presetNames, presets } from './presets.js';
import { specSchema, type Spec } from './schema.js';

export interface SpecProblem {
  path: string;
  message: string;
}

export type SpecResult = { ok: true; spec: Spec } | { ok: false; problems: SpecProblem[] };

/** What the Web UI's Start Workflow form (or a client) sends: a preset with overrides, or a full spec. */
export const presetRequestSchema = z
  .object({
    preset: z.string(),
    overrides: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

type Json = unknown;

function isPlainObject(value: Json): value is Record<string, Json> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A copy of plain JSON data (structuredClone is not available in the workflow sandbox). */
function cloneJson<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/**
 * Deep merge: objects merge key by key, anything else (arrays included) replaces, and null removes the key. An object
 * whose `kind` the override changes (an executor from ssh to slurm) is replaced: the old kind's fields mean nothing
 * to the new one.
 */
export function deepMerge(base: Json, override: Json): Json {
  if (!isPlainObject(base) || !isPlainObject(override)) return withoutNulls(override);
  if (typeof override.kind === 'string' && typeof base.kind === 'string' && override.kind !== base.kind) {
    return withoutNulls(override);
  }
  const out: Record<string, Json> = cloneJson(base);
  for (const [key, value] of Object.entries(override)) {
    if (isPrototypeKey(key)) throw new Error(`'${key}' is not allowed as a key (it names a property of every object)`);
    if (value === null) delete out[key];
    else out[key] = Object.hasOwn(out, key) ? deepMerge(out[key], value) : withoutNulls(value);
  }
  return out;
}

/** A copy with every null object value removed, at any depth (a null that removes nothing is just dropped). */
function withoutNulls(value: Json): Json {
  if (!isPlainObject(value)) return cloneJson(value);
  const out: Record<string, Json> = {};
  for (const [key, v] of Object.entries(value)) {
    if (isPrototypeKey(key)) throw new Error(`'${key}' is not allowed as a key (it names a property of every object)`);
    if (v !== null) out[key] = withoutNulls(v);
  }
  return out;
}

/**
 * Overrides on top of overrides (several `-f` files, then `--set`): like deepMerge, but a null is kept, so that it
 * still removes the key when the overrides are finally merged onto the spec or preset.
 */
export function mergeOverrides(base: Json, override: Json): Json {
  if (!isPlainObject(base) || !isPlainObject(override)) return cloneJson(override);
  const out: Record<string, Json> = cloneJson(base);
  for (const [key, value] of Object.entries(override)) {
    if (isPrototypeKey(key)) throw new Error(`'${key}' is not allowed as a key (it names a property of every object)`);
    out[key] = Object.hasOwn(out, key) && value !== null ? mergeOverrides(out[key], value) : cloneJson(value);
  }
  return out;
}

/** `rollout.numRollout` + 100 -> { rollout: { numRollout: 100 } } */
export function overrideAt(path: string, value: Json): Record<string, Json> {
  const keys = path.split('.');
  if (keys.some((k) => k === '' || isPrototypeKey(k))) {
    throw new Error(`invalid override path '${path}'`);
  }
  let out: Json = value;
  for (const key of keys.reverse()) out = { [key]: out };
  return out as Record<string, Json>;
}

export function pathToString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(spec)';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(
        row[j]! + 1,
        row[j - 1]! + 1,
        diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1),
      );
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The closest known name, when it is close enough to be a typo. */
export function suggest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** The keys a zod object schema accepts at a path (for "did you mean" hints). */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: z.ZodType = specSchema;
  for (const key of path) {
    schema = unwrap(schema);
    if (schema instanceof z.ZodObject) {
      const next = (schema.shape as Record<string, z.ZodType>)[String(key)];
      if (!next) return [];
      schema = next;
    } else if (schema instanceof z.ZodArray) {
      schema = schema.element as z.ZodType;
    } else if (schema instanceof z.ZodRecord) {
      schema = schema.valueType as z.ZodType;
    } else {
      return [];
    }
  }
  schema = unwrap(schema);
  if (schema instanceof z.ZodObject) return Object.keys(schema.shape as object);
  if (schema instanceof z.ZodDiscriminatedUnion) {
    return [...new Set(schema.options.flatMap((o) => Object.keys((unwrap(o as z.ZodType) as z.ZodObject).shape)))];
  }
  return [];
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  return s;
}

export function problemsFromZod(error: z.ZodError): SpecProblem[] {
  const problems: SpecProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(issue.path);
      for (const key of issue.keys) {
        const hint = suggest(key, known);
        const looksSecret = /token|secret|password|apikey|api_key|key$/i.test(key);
        const fix = hint
          ? ` -- did you mean '${hint}'?`
          : /url$/i.test(key) && known.includes(`${key}Env`)
            ? ` -- the URL is a secret, never a spec value: name the env var that holds it (${key}Env: SLACK_WEBHOOK_URL)`
            : looksSecret
              ? ' -- secrets are never spec values: name an env var (e.g. hfTokenEnv: HF_TOKEN)'
              : known.length
                ? ` -- known fields: ${known.join(', ')}`
                : '';
        problems.push({ path: pathToString([...issue.path, key]), message: `unknown field${fix}` });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === 'invalid_type' && /received undefined/.test(message)) message = 'required field is missing';
    problems.push({ path: pathToString(issue.path), message });
  }
  return problems;
}

/** Structural rules zod alone does not express: the DAG, node names, cluster size vs the layout's node counts. */
/**
 * Files a step's check looks at on the worker (`creates`, an `hf-download` step's `localDir`) stay under
 * storage.baseDir: a step's reason must never tell whether `/root/.ssh/id_rsa` exists, or list `/`.
 */
function outsideBaseProblem(spec: Spec, value: string): string | undefined {
  const base = normalizedPath(spec.storage.baseDir);
  const resolved = normalizedPath(value.startsWith('/') ? value : `${base}/${value}`);
  if (resolved.startsWith(`${base}/`)) return undefined;
  return (
    `${value} is outside storage.baseDir (${spec.storage.baseDir}): keel checks and writes files there only -- ` +
    'give a path under it (relative paths are taken under it)'
  );
}

/** A path with `.`, `..` and repeated slashes resolved, as the file system would (pure: spec code runs in workflows). */
function normalizedPath(path: string): string {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part !== '..') parts.push(part);
    else if (parts.length > 0 && parts.at(-1) !== '..') parts.pop();
    else if (!path.startsWith('/')) parts.push('..'); // a relative path may climb above its start
  }
  return `${path.startsWith('/') ? '/' : ''}${parts.join('/')}`;
}

export function structuralProblems(spec: Spec): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const stepIds = Object.keys(spec.steps);
  for (const [id, step] of Object.entries(spec.steps)) {
    const fields: [string, string | undefined][] =
      step.kind === 'command' || step.kind === 'gang'
        ? [['creates', step.creates]]
        : step.kind === 'hf-download'
          ? [['localDir', step.localDir]]
          : [];
    for (const [field, value] of fields) {
      const problem = value === undefined ? undefined : outsideBaseProblem(spec, value);
      if (problem) problems.push({ path: `steps.${id}.${field}`, message: problem });
    }
  }
  for (const [id, step] of Object.entries(spec.steps)) {
    step.needs.forEach((need, i) => {
      if (!Object.hasOwn(spec.steps, need)) {
        const hint = suggest(need, stepIds);
        problems.push({
          path: `steps.${id}.needs[${i}]`,
          message: `unknown step '${need}'${hint ? ` -- did you mean '${hint}'?` : ` -- steps are: ${stepIds.join(', ')}`}`,
        });
      }
      if (need === id) problems.push({ path: `steps.${id}.needs[${i}]`, message: 'a step cannot need itself' });
    });
  }
  for (const [id, step] of Object.entries(spec.steps)) {
    if (step.kind !== 'hf-download' || step.repoType !== 'dataset') continue;
    for (const field of ['repo', 'localDir'] as const) {
      if (!step[field]) {
        problems.push({
          path: `steps.${id}.${field}`,
          message: `a dataset download needs its ${field} (e.g. ${field === 'repo' ? 'zhuzilin/dapo-math-17k' : 'dapo-math-17k'})`,
        });
      }
    }
  }
  const cycle = findCycle(spec);
  if (cycle)
    problems.push({ path: `steps.${cycle[0]}.needs`, message: `the steps form a cycle: ${cycle.join(' -> ')}` });
  if (stepIds.length === 0) problems.push({ path: 'steps', message: 'a pipeline needs at least one step' });

  const names = new Map<string, string>();
  const allNodes = [
    ...spec.cluster.nodes.map((n, i) => ({ n, path: `cluster.nodes[${i}]` })),
    ...spec.cluster.spares.map((n, i) => ({ n, path: `cluster.spares[${i}]` })),
  ];
  for (const { n, path } of allNodes) {
    const name = n.name ?? n.host;
    const seen = names.get(name);
    if (seen) problems.push({ path, message: `node '${name}' is listed twice (also at ${seen})` });
    else names.set(name, path);
  }
  if (spec.cluster.nodes.length === 0 && !spec.cluster.hostfile) {
    problems.push({ path: 'cluster.nodes', message: 'no nodes: list cluster.nodes or give cluster.hostfile' });
  }
  return problems;
}

function findCycle(spec: Spec): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    if (state.get(id) === 'done') return undefined;
    if (state.get(id) === 'visiting') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'visiting');
    stack.push(id);
    for (const need of spec.steps[id]?.needs ?? []) {
      if (!Object.hasOwn(spec.steps, need)) continue;
      const found = visit(need);
      if (found) return found;
    }
    stack.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const id of Object.keys(spec.steps)) {
    const found = visit(id);
    if (found) return found;
  }
  return undefined;
}

/** Validate a full spec object. */
export function parseSpec(raw: unknown): SpecResult {
  const parsed = specSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, problems: problemsFromZod(parsed.error) };
  const problems = structuralProblems(parsed.data);
  return problems.length ? { ok: false, problems } : { ok: true, spec: parsed.data };
}

/** A full spec, or { preset, overrides }: what the Web UI, the CLI and the client all send. */
export function resolveSpecInput(raw: unknown): SpecResult {
  const isPresetRequest =
    isPlainObject(raw) &&
    typeof raw.preset === 'string' &&
    !Object.hasOwn(raw, 'cluster') &&
    !Object.hasOwn(raw, 'model');
  const guarded = inputProblems(isPresetRequest ? raw.overrides : raw);
  if (guarded.length) return { ok: false, problems: guarded };
  if (isPresetRequest) {
    const request = presetRequestSchema.safeParse(raw);
    if (!request.success) return { ok: false, problems: problemsFromZod(request.error) };
    const { preset, overrides } = request.data;
    if (!isPresetName(preset)) {
      const hint = suggest(preset, presetNames);
      return {
        ok: false,
        problems: [
          {
            path: 'preset',
            message: `unknown preset '${preset}'${hint ? ` -- did you mean '${hint}'?` : ''} (presets: ${presetNames.join(', ')})`,
          },
        ],
      };
    }
    return parseSpec(deepMerge(presets[preset], overrides ?? {}));
  }
  if (!isPlainObject(raw)) {
    return {
      ok: false,
      problems: [
        {
          path: '(spec)',
          message: 'expected a JSON object: a full spec, or { "preset": "tiny-local", "overrides": {} }',
        },
      ],
    };
  }
  return parseSpec(raw);
}

export function formatProblems(problems: readonly SpecProblem[]): string {
  return problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
}

export class InvalidSpecError extends Error {
  constructor(readonly problems: SpecProblem[]) {
    super(`invalid spec:\n${formatProblems(problems)}`);
    this.name = 'InvalidSpecError';
  }
}

export function resolveSpecOrThrow(raw: unknown): Spec {
  const result = resolveSpecInput(raw);
  if (!result.ok) throw new InvalidSpecError(result.problems);
  return result.spec;
}
