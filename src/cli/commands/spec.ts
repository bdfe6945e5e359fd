// keel validate | plan | render | presets: everything about a spec that needs no server and touches no node.
import type { Command } from 'commander';
import { loadSpec, type SpecRequest } from '../../spec/load.js';
import { formatProblems, isPresetName, presetNames, presets, suggest, type Spec } from '../../spec/index.js';
import { plan, type Plan } from '../../plan/index.js';
import { loadCatalogue } from '../../plan/catalogue.js';
import { renderScript } from '../../recipe/index.js';
import { formatPlan } from '../plan-report.js';

export interface SpecOptions {
  preset?: string;
  set?: string[];
  values?: string[];
}

/** The spec options every command that takes a spec shares: `[spec]`, `--preset`, `--set`, `-f/--values`. */
export function withSpecOptions(command: Command): Command {
  return command
    .argument('[spec]', 'spec file (YAML or JSON): a full spec or { preset, overrides }')
    .option('-p, --preset <name>', `start from a preset (${presetNames.join(', ')})`)
    .option('--set <path=value...>', 'override one field, e.g. --set rollout.numRollout=100 (repeatable)')
    .option('-f, --values <file...>', 'YAML/JSON file merged on top of the spec (repeatable)');
}

export function specRequest(file: string | undefined, options: SpecOptions): SpecRequest {
  return { file, preset: options.preset, sets: options.set, overlays: options.values };
}

/** Load and validate, or print every problem by path and exit 2. */
export async function loadSpecOrExit(file: string | undefined, options: SpecOptions): Promise<Spec> {
  if (!file && !options.preset) {
    console.error('keel: give a spec file or --preset NAME');
    process.exit(2);
  }
  const result = await loadSpec(specRequest(file, options));
  if (!result.ok) {
    console.error(`keel: invalid spec${file ? ` ${file}` : ''}:\n${formatProblems(result.problems)}`);
    process.exit(2);
  }
  return result.spec;
}

async function catalogueOrExit(file: string | undefined) {
  try {
    return await loadCatalogue(file);
  } catch (error) {
    console.error(`keel: ${(error as Error).message}`);
    process.exit(2);
  }
}

export function registerSpecCommands(program: Command): void {
  withSpecOptions(program.command('validate'))
    .description('check a spec: every problem named by its path; exit 2 when invalid')
    .option('--catalogue <file>', 'slime argument catalogue to check the flags against (default: the one keel ships)')
    .action(async (file: string | undefined, options: SpecOptions & { catalogue?: string }) => {
      const spec = await loadSpecOrExit(file, options);
      const report = plan(spec, { catalogue: await catalogueOrExit(options.catalogue) });
      const errors = report.findings.filter((f) => f.severity === 'error');
      if (errors.length) {
        console.error(`keel: ${spec.name}: ${errors.length} planner error(s):`);
        for (const f of errors) console.error(`  ${f.path}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ''}`);
        process.exit(2);
      }
      console.log(
        `${spec.name}: valid (${Object.keys(spec.steps).length} steps, ${report.findings.length} notes; see keel plan)`,
      );
    });

  withSpecOptions(program.command('plan'))
    .description(
      'preflight: parallel layout, batches, tokens, memory, storage, expected ETTR and the best save interval -> ' +
        'findings (exit 2 on errors)',
    )
    .option('--json', 'print the plan as JSON')
    .option('--catalogue <file>', 'slime argument catalogue to check the flags against (default: the one keel ships)')
    .action(async (file: string | undefined, options: SpecOptions & { json?: boolean; catalogue?: string }) => {
      const spec = await loadSpecOrExit(file, options);
      const report: Plan = plan(spec, { catalogue: await catalogueOrExit(options.catalogue) });
      console.log(options.json ? JSON.stringify(report, null, 2) : formatPlan(report));
      if (!report.ok) process.exitCode = 2;
    });

  withSpecOptions(program.command('render'))
    .description('print the steps as an equivalent bash script (every command, flag and value)')
    .action(async (file: string | undefined, options: SpecOptions) => {
      const spec = await loadSpecOrExit(file, options);
      process.stdout.write(renderScript(spec));
    });

  program
    .command('presets')
    .description('list the presets, or print one as YAML')
    .argument('[name]', 'preset to print')
    .action(async (name?: string) => {
      if (!name) {
        for (const p of presetNames) console.log(`${p.padEnd(22)} ${presets[p].name}`);
        return;
      }
      if (!isPresetName(name)) {
        const hint = suggest(name, presetNames);
        console.error(
          `keel: unknown preset ${JSON.stringify(name)}${hint ? ` -- did you mean '${hint}'?` : ''} (presets: ${presetNames.join(', ')})`,
        );
        process.exit(2);
      }
      const YAML = await import('yaml');
      process.stdout.write(YAML.stringify(presets[name]));
    });
}
