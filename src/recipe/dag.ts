// Step order of a spec's DAG (the spec is validated acyclic). Pure.
import type { Spec } from '../spec/schema.js';

/** Steps in an order where every step comes after its needs; ties keep the spec's order. */
export function topologicalOrder(spec: Pick<Spec, 'steps'>): string[] {
  const done = new Set<string>();
  const order: string[] = [];
  const ids = Object.keys(spec.steps);
  while (order.length < ids.length) {
    const next = ids.find((id) => !done.has(id) && spec.steps[id]!.needs.every((n) => done.has(n)));
    if (!next) throw new Error('the steps form a cycle');
    done.add(next);
    order.push(next);
  }
  return order;
}
