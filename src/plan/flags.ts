// Every flag keel hands to slime's train.py, checked against the argument catalogue of the slime that will run.
// slime parses with ignore_unknown_args=True (Megatron then uses parse_known_args): a misspelt flag is dropped
// silently and its default used. keel refuses it instead, with the closest known flag. Pure.
import { z } from 'zod';
import type { Spec } from '../spec/schema.js';
import { suggest } from '../spec/resolve.js';
import { trainArgGroups, groupOrder, type ArgGroups } from '../recipe/args.js';
import type { Finding } from './findings.js';
import { typedFlagPaths } from './extra-args.js';

const optionSchema = z.object({
  src: z.string(),
  dest: z.string().nullable().optional(),
  type: z.string().nullable().optional(),
  choices: z.union([z.array(z.union([z.string(), z.number(), z.boolean()])), z.literal('dynamic')]).nullable(),
  nargs: z.union([z.number().int(), z.string()]).nullable(),
  action: z.string().nullable().optional(),
  default: z.string().nullable().optional(),
  /** 'sglang': an option of slime's separate SGLang parser (SGLang's server args, the router's, slime's own) */
  parser: z.literal('sglang').optional(),
});

/** How slime adds SGLang's arguments, as read from its slime/backends/sglang_utils/arguments.py. */
const sglangWiringSchema = z.object({
  from: z.string(),
  skipped: z.array(z.string()),
  router: z.object({ prefix: z.string(), excludeHostPort: z.boolean() }).nullable(),
  /** slime's SGLang parser is an argparse parser with allow_abbrev (the default): unique prefixes are accepted */
  allowAbbrev: z.boolean(),
});

/** What scripts/slime_args_catalogue.py prints: one entry per option string. */
export const argCatalogueSchema = z.object({
  format: z.literal('keel-slime-args/1'),
  sources: z.record(
    z.string(),
    z.object({
      commit: z.string().nullable(),
      version: z.string().optional(),
      files: z.record(z.string(), z.string()),
    }),
  ),
  sglangIncluded: z.boolean(),
  sglang: sglangWiringSchema.optional(),
  unresolved: z.array(z.string()),
  options: z.record(z.string(), optionSchema),
});

export type ArgCatalogue = z.infer<typeof argCatalogueSchema>;
export type ArgOption = z.infer<typeof optionSchema>;

/** One flag as it appears in an argv: its values, and where in the spec it came from. */
export interface ParsedFlag {
  flag: string;
  values: string[];
  path: string;
}

const looksLikeFlag = (token: string) => token.startsWith('--') || (token.startsWith('-') && !/^-\d/.test(token));

/** What argparse makes of one option string: the option, the one it abbreviates, or the ones it could abbreviate. */
export interface Lookup {
  option?: ArgOption;
  /** the full flag when `flag` is an abbreviation slime's SGLang parser accepts */
  abbreviates?: string;
  /** two or more SGLang-parser flags `flag` is a prefix of: that parser stops slime with "ambiguous option" */
  ambiguous?: string[];
}

/**
 * slime parses SGLang's flags with a parser of their own (parse_known_args, allow_abbrev left on), then Megatron's
 * and its own with allow_abbrev=False. So a flag is taken when either parser knows it exactly, or when it is a unique
 * prefix of the SGLang parser's flags; a prefix of several is an error in that parser, even for a flag the other
 * parser knows exactly.
 */
export function lookupFlag(catalogue: ArgCatalogue, flag: string): Lookup {
  const exact = catalogue.options[flag];
  if (exact?.parser === 'sglang' || !catalogue.sglang?.allowAbbrev || !flag.startsWith('--')) return { option: exact };
  const matches = Object.keys(catalogue.options).filter(
    (f) => f.startsWith(flag) && catalogue.options[f]!.parser === 'sglang',
  );
  if (matches.length > 1) return { option: exact, ambiguous: matches.sort() };
  if (exact) return { option: exact };
  return matches.length === 1 ? { option: catalogue.options[matches[0]!], abbreviates: matches[0] } : {};
}

/** How many values a flag takes (argparse's nargs), or 'greedy' for '+' and '*'. */
function arity(option: ArgOption | undefined): number | 'optional' | 'greedy' {
  if (!option) return 'greedy';
  const n = option.nargs;
  if (n === null) return 1;
  if (typeof n === 'number') return n;
  if (n === '?') return 'optional';
  return 'greedy';
}

/** Split an argv into flags and their values, following the catalogue's nargs (unknown flags take what follows). */
export function parseFlags(argv: readonly string[], catalogue: ArgCatalogue | undefined, path: string): ParsedFlag[] {
  const out: ParsedFlag[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (!looksLikeFlag(token)) continue;
    const eq = token.indexOf('=');
    if (token.startsWith('--') && eq > 0) {
      out.push({ flag: token.slice(0, eq), values: [token.slice(eq + 1)], path: `${path}[${i}]` });
      continue;
    }
    const take = catalogue ? arity(lookupFlag(catalogue, token).option) : 'greedy';
    const values: string[] = [];
    const limit = typeof take === 'number' ? take : take === 'optional' ? 1 : Infinity;
    while (values.length < limit && i + 1 < argv.length && !looksLikeFlag(argv[i + 1]!)) values.push(argv[++i]!);
    out.push({ flag: token, values, path: `${path}[${i - values.length}]` });
  }
  return out;
}

/** Whether argparse would accept one value for a typed option. */
function valueProblem(option: ArgOption, value: string): string | undefined {
  if (option.type === 'int' && !/^[-+]?\d+$/.test(value.trim())) return `'${value}' is not an integer`;
  if (option.type === 'float' && (value.trim() === '' || Number.isNaN(Number(value)))) {
    return `'${value}' is not a number`;
  }
  if (Array.isArray(option.choices)) {
    const ok = option.choices.some((c) => (typeof c === 'number' ? Number(value) === c : String(c) === value));
    if (!ok) return `'${value}' is not one of ${option.choices.map((c) => String(c)).join(', ')}`;
  }
  return undefined;
}

function arityProblem(option: ArgOption, count: number): string | undefined {
  const n = option.nargs;
  if (n === null && count !== 1) return `takes one value, got ${count}`;
  if (typeof n === 'number' && count !== n) return n === 0 ? `is a switch and takes no value` : `takes ${n} values`;
  if (n === '+' && count === 0) return 'takes at least one value';
  return undefined;
}

/** Findings for one argv against a catalogue: unknown flags (with did-you-mean), wrong arity, rejected values. */
export function checkArgv(
  flags: readonly ParsedFlag[],
  catalogue: ArgCatalogue,
  from: string,
  severity: 'error' | 'warning' = 'error',
): Finding[] {
  const findings: Finding[] = [];
  const known = Object.keys(catalogue.options).filter((f) => f.startsWith('--'));
  const unchecked: string[] = [];
  const abbreviations: string[] = [];
  for (const { flag, values, path } of flags) {
    const { option, abbreviates, ambiguous } = lookupFlag(catalogue, flag);
    if (ambiguous) {
      findings.push({
        severity,
        path,
        message:
          `${flag} is a prefix of ${ambiguous.length} flags of slime's SGLang parser (${ambiguous.slice(0, 4).join(', ')}` +
          `${ambiguous.length > 4 ? ', ...' : ''}), which accepts abbreviations: it stops slime with "ambiguous option" at start-up`,
        fix: `spell out the flag you mean`,
      });
      continue;
    }
    if (abbreviates) abbreviations.push(`${flag} (${abbreviates})`);
    if (!option) {
      if (/^--(sglang|router)-/.test(flag) && !catalogue.sglangIncluded) {
        unchecked.push(flag);
        continue;
      }
      const hint = suggest(flag, known);
      findings.push({
        severity,
        path,
        message: `${flag} is not a flag of ${from}: slime ignores unknown flags, so the run would silently use the default`,
        fix: hint ? `did you mean ${hint}?` : 'remove it, or check the flag against slime --help',
      });
      continue;
    }
    const problem =
      arityProblem(option, values.length) ?? values.map((v) => valueProblem(option, v)).find((p) => p !== undefined);
    if (problem) {
      findings.push({
        severity,
        path,
        message: `${flag} ${problem}: ${from} rejects it at start-up`,
        fix: Array.isArray(option.choices) ? `use one of ${option.choices.join(', ')}` : `give ${flag} a valid value`,
      });
    }
  }
  if (abbreviations.length) {
    findings.push({
      severity: 'info',
      path: 'sglang',
      message: `abbreviations slime's SGLang parser accepts: ${abbreviations.join(', ')}; spelt out, they stay right when SGLang adds a flag with the same start`,
    });
  }
  if (unchecked.length) {
    findings.push({
      severity: 'info',
      path: 'sglang',
      message: `${unchecked.join(', ')} go to SGLang's parser (server and router arguments), which ${from} does not list: not checked here (the probe checks them against the cluster's SGLang)`,
    });
  }
  return findings;
}

/** The train.py argv by group, each flag with the spec path it comes from. */
export function trainFlags(spec: Spec, catalogue: ArgCatalogue | undefined): ParsedFlag[] {
  const groups: ArgGroups = trainArgGroups(spec);
  const paths = typedFlagPaths();
  const out: ParsedFlag[] = [];
  for (const group of groupOrder) {
    if (group === 'EXTRA_ARGS') {
      out.push(...parseFlags(groups.EXTRA_ARGS, catalogue, 'extraArgs'));
      continue;
    }
    for (const parsed of parseFlags(groups[group], catalogue, group)) {
      out.push({ ...parsed, path: paths.get(parsed.flag) ?? parsed.path });
    }
  }
  return out;
}

/** Describe a catalogue's origin for messages: "slime 624b824a (Megatron 1dcf0daf)". */
export function describeCatalogue(catalogue: ArgCatalogue): string {
  const short = (name: string) => {
    const s = catalogue.sources[name];
    return s ? `${name}${s.commit ? ` ${s.commit.slice(0, 8)}` : ''}` : undefined;
  };
  const main = short('slime') ?? short('stand-in') ?? 'the slime checkout';
  const rest = ['megatron', 'sglang', 'sglang-router']
    .map((name) => {
      const s = catalogue.sources[name];
      return s?.version && !s.commit ? `${name} ${s.version}` : short(name);
    })
    .filter(Boolean);
  return rest.length ? `${main} (${rest.join(', ')})` : main;
}

/** Every train.py flag of a spec against a catalogue. */
export function checkTrainFlags(spec: Spec, catalogue: ArgCatalogue): Finding[] {
  return checkArgv(trainFlags(spec, catalogue), catalogue, describeCatalogue(catalogue));
}
