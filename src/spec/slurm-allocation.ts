// A Slurm spec placed on its allocation: the spec's nodes and spares are the slots of the allocation (their count and
// GPUs say what to allocate); once Slurm has allocated, each slot becomes the node Slurm gave, named as Slurm names it
// and reached at its NodeAddr. Pure: the pipeline workflow calls it.
import type { NodeSpec, Spec } from './schema.js';

export interface AllocatedNodes {
  jobId: string;
  nodes: { name: string; address: string }[];
}

export function placeOnAllocation(spec: Spec, allocation: AllocatedNodes): Spec {
  const ex = spec.cluster.executor;
  if (ex.kind !== 'slurm') throw new Error('placeOnAllocation: the spec does not use the Slurm executor');
  const slots = [...spec.cluster.nodes, ...spec.cluster.spares];
  if (allocation.nodes.length < slots.length) {
    throw new Error(`Slurm job ${allocation.jobId} has ${allocation.nodes.length} nodes, the spec ${slots.length}`);
  }
  const placed: NodeSpec[] = slots.map((slot, i) => {
    const node = allocation.nodes[i]!;
    return { host: node.address, name: node.name, gpus: slot.gpus };
  });
  return {
    ...spec,
    cluster: {
      ...spec.cluster,
      nodes: placed.slice(0, spec.cluster.nodes.length),
      spares: placed.slice(spec.cluster.nodes.length),
      executor: { ...ex, jobId: allocation.jobId },
    },
  };
}
