export * from './args.js';
export * from './commands.js';
export * from './dag.js';
export * from './script.js';
