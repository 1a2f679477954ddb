export * from "./model.ts";
export * from "./rules.ts";
export * from "./reconcile.ts";
export * from "./report.ts";
export { loadMoneyCheckpoint, sqlExecutor, uuidV7Floor, type MoneyCheckpoint } from "./store.ts";
