export * from "./model.ts";
export * from "./rules.ts";
export * from "./reconcile.ts";
export * from "./report.ts";
export { sqlExecutor } from "./store.ts";
