// The workflows a keel worker registers: pipeline (the DAG), training (its child), retrain (what schedules start), and
// the guard that releases a Slurm run's allocation when the run is terminated.
export { pipeline } from './pipeline.js';
export { training } from './training.js';
export { retrain } from './retrain.js';
export { slurmAllocationGuard } from './slurm.js';
