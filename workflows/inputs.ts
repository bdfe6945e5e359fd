// Everything that enters a workflow from outside its own code -- signal and Update arguments, and values that become
// search attributes -- checked here, so that no input can throw in workflow code (a throw there fails every workflow
// task, for good). A bad signal payload is ignored and logged; a bad Update is refused by its validator.
import { z } from 'zod';
import { forbiddenAddressProblem, hostProblem } from '../src/spec/names.js';

/** Training -> pipeline: the phase training entered. */
export const trainingPhasePayload = z.object({ phase: z.string().min(1).max(100) });

/** `cancel` (Update and signal): nothing, or a short reason. */
export const cancelRequest = z
  .object({ reason: z.string().max(2000).optional() })
  .nullish()
  .transform((request) => request ?? undefined);

const host = z
  .string()
  .min(1)
  .max(253)
  .superRefine((value, ctx) => {
    const problem = hostProblem(value) ?? forbiddenAddressProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** A node name becomes part of file names on the worker and the nodes: a plain name, never a path. */
const nodeName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be a plain name (letters, digits, . _ -), at most 63 characters');

/** The `addNodes` Update: at most 64 nodes at a time (the nodes travel in every activity input of the run). */
export const addNodesArgs = z.object({
  nodes: z
    .array(z.object({ host, gpus: z.number().int().min(0).max(1024).optional(), name: nodeName.optional() }).strict())
    .min(1, 'addNodes needs at least one node')
    .max(64, 'at most 64 nodes per addNodes'),
});

/** Added nodes in all: beyond this the Update is refused. */
export const maxExtraNodes = 1024;

/** The first problem of a zod failure, with the path of the field: `nodes[0].host: is a link-local address ...`. */
export function firstProblem(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const where = issue.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('');
  return `${where.replace(/^\./, '') || 'argument'}: ${issue.message}`;
}

/** An INT search attribute's value: a safe integer, or nothing to upsert. */
export function searchInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : undefined;
}

/** A DOUBLE search attribute's value: a finite number, or nothing to upsert. */
export function searchDouble(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** A KEYWORD search attribute's value: cut to 100 characters (the server refuses long keywords). */
export function searchKeyword(value: string): string {
  return value.length > 100 ? value.slice(0, 100) : value;
}
