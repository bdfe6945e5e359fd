// The workflows a keel worker registers: pipeline (the DAG), training (its child) and retrain (what schedules start).
export { pipeline } from './pipeline.js';
export { training } from './training.js';
export { retrain } from './retrain.js';
