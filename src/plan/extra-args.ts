// extraArgs go through the planner: a flag there that a typed field also renders is refused (argparse keeps the
// later one, so slime would run with the extraArgs value while keel planned the field's), and the plan is made with
// the value slime will actually see, so its consequences (e.g. experts over EP) are reported too. Pure.
import { z } from 'zod';
import {
  ckptSchema,
  distributedSchema,
  evalSchema,
  grpoSchema,
  miscSchema,
  optimizerSchema,
  perfSchema,
  rolloutSchema,
  sglangSchema,
  type Spec,
} from '../spec/schema.js';
import { flagName } from '../recipe/args.js';
import type { Finding } from './findings.js';

/** The argument groups whose fields keel renders as train.py flags (field name -> --kebab-flag). */
const typedGroups = {
  distributed: distributedSchema,
  ckpt: ckptSchema,
  rollout: rolloutSchema,
  optimizer: optimizerSchema,
  grpo: grpoSchema,
  perf: perfSchema,
  eval: evalSchema,
  sglang: sglangSchema,
  misc: miscSchema,
} as const;

/** Fields that are planner hints, not flags. */
const notFlags = new Set(['rollout.promptMaxTokens']);

/** --flag -> spec path of the typed field that renders it. */
export function typedFlagPaths(): Map<string, string> {
  const paths = new Map<string, string>();
  for (const [group, schema] of Object.entries(typedGroups)) {
    for (const field of Object.keys(schema.shape)) {
      const path = `${group}.${field}`;
      if (!notFlags.has(path)) paths.set(flagName(field), path);
    }
  }
  return paths;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  return s;
}

/** The value slime would see for a typed field, from the flag's values; undefined when it cannot be read. */
function fieldValue(schema: z.ZodType, values: string[]): unknown {
  const s = unwrap(schema);
  if (s instanceof z.ZodBoolean) return values.length === 0 ? true : undefined;
  if (values.length !== 1) return undefined;
  const text = values[0]!;
  if (s instanceof z.ZodNumber) return text.trim() !== '' && !Number.isNaN(Number(text)) ? Number(text) : undefined;
  return s instanceof z.ZodString || s instanceof z.ZodEnum ? text : undefined;
}

interface ExtraFlag {
  flag: string;
  values: string[];
  index: number;
}

function extraFlags(extraArgs: readonly string[]): ExtraFlag[] {
  const flags: ExtraFlag[] = [];
  extraArgs.forEach((token, index) => {
    if (!token.startsWith('--')) {
      flags.at(-1)?.values.push(token);
      return;
    }
    const eq = token.indexOf('=');
    if (eq > 0) flags.push({ flag: token.slice(0, eq), values: [token.slice(eq + 1)], index });
    else flags.push({ flag: token, values: [], index });
  });
  return flags;
}

/**
 * Refuse extraArgs flags that duplicate typed fields, naming the field to set instead; return the spec as slime
 * would see it (the later flag wins) so the rest of the plan judges the values that will really run.
 */
export function planExtraArgs(spec: Spec, findings: Finding[]): Spec {
  const paths = typedFlagPaths();
  let effective = spec;
  for (const { flag, values, index } of extraFlags(spec.extraArgs)) {
    const path = paths.get(flag);
    if (!path) continue;
    const [group, field] = path.split('.') as [keyof typeof typedGroups, string];
    const groupValues = spec[group] as Record<string, unknown>;
    const current = groupValues[field];
    const shown = values.join(' ');
    findings.push({
      severity: 'error',
      path: `extraArgs[${index}]`,
      message:
        `${flag}${shown ? ` ${shown}` : ''} duplicates ${path}` +
        `${current === undefined ? ' (unset)' : ` (${JSON.stringify(current)})`}: argparse keeps the later flag, ` +
        `so slime would run with the extraArgs value while the rest of the spec was planned for the field's`,
      fix: `set ${path}${shown ? `: ${shown}` : ''} and remove ${flag} from extraArgs`,
    });
    const shape = (typedGroups[group] as z.ZodObject<z.ZodRawShape>).shape;
    const value = fieldValue(shape[field] as z.ZodType, values);
    if (value === undefined) continue;
    effective = { ...effective, [group]: { ...(effective[group] as object), [field]: value } };
  }
  return effective;
}
