export type RoundHistoryRow = unknown;
export const fedlesscan = (() => { throw new Error('todo'); }) as unknown as import('./strategies.js').StrategyFactory;
