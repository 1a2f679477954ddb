export * from "./infra.ts";
export * from "./net.ts";
export * from "./process.ts";
export * from "./services.ts";
export * from "./secrets.ts";
export * from "./web.ts";
export * from "./production.ts";
export * from "./front.ts";
