// The first look at whatever a person sent as a spec, before zod: its size, its depth, keys that would reach an
// object's prototype, and control characters in strings that reach a node's shell or a rendered script. Pure and
// linear in the input's size, so a hostile input is refused in milliseconds.
import { controlCharacter, describeName, isPrototypeKey } from './names.js';

export interface InputProblem {
  path: string;
  message: string;
}

/** A spec is a few kilobytes (the R1 preset is ~6 KB as JSON); a megabyte is refused with a clear error. */
export const maxSpecBytes = 1 << 20;
const maxDepth = 32;
const maxStringLength = 16_384;
const maxProblems = 20;

/** Strings that may hold any text but NUL: a command step's argv and env values (kept literal by the executors). */
function mayHoldControlCharacters(path: readonly (string | number)[]): boolean {
  return path.length === 4 && path[0] === 'steps' && (path[2] === 'argv' || path[2] === 'env');
}

function pathText(path: readonly (string | number)[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out ? `.${key}` : key;
  return out || '(spec)';
}

/** Problems of a raw spec (or the overrides of a preset request), each named by its path in the spec. */
export function inputProblems(raw: unknown): InputProblem[] {
  const problems: InputProblem[] = [];
  let size: number;
  try {
    size = JSON.stringify(raw)?.length ?? 0;
  } catch {
    return [{ path: '(spec)', message: 'is not plain JSON data (it refers to itself)' }];
  }
  if (size > maxSpecBytes) {
    return [
      {
        path: '(spec)',
        message: `is ${size} bytes as JSON, over the limit of ${maxSpecBytes}: a spec describes a run (a few KB); data belongs in files it names`,
      },
    ];
  }
  const visit = (value: unknown, path: (string | number)[]): void => {
    if (problems.length >= maxProblems) return;
    if (path.length > maxDepth) {
      problems.push({ path: pathText(path), message: `nests deeper than ${maxDepth} levels` });
      return;
    }
    if (typeof value === 'string') {
      if (value.length > maxStringLength)
        problems.push({ path: pathText(path), message: `is ${value.length} characters, over ${maxStringLength}` });
      const bad = mayHoldControlCharacters(path) ? value.includes('\u0000') : controlCharacter.test(value);
      if (bad)
        problems.push({
          path: pathText(path),
          message: `contains a control character (newline, NUL, escape...): ${describeName(value)} -- write it on one line`,
        });
      return;
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => visit(item, [...path, i]));
      return;
    }
    if (typeof value === 'object' && value !== null) {
      for (const key of Object.keys(value)) {
        if (isPrototypeKey(key) || controlCharacter.test(key)) {
          problems.push({
            path: pathText([...path, key]),
            message: isPrototypeKey(key)
              ? `${describeName(key)} is not allowed as a key (it names a property of every JavaScript object)`
              : `the key ${describeName(key)} contains a control character`,
          });
          continue;
        }
        visit((value as Record<string, unknown>)[key], [...path, key]);
      }
    }
  };
  visit(raw, []);
  return problems;
}
