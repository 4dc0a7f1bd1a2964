/**
 * The store's SQL for models, runs, rounds, updates and nodes, one module a table; this
 * barrel keeps the names every importer has used since it was a single file.
 */
export * from './transaction.js';
export * from './versions.js';
export * from './runs.js';
export * from './rounds.js';
export * from './updates.js';
export * from './nodes.js';
