import { startTracing } from "@vaultpay/telemetry";
import { tracesUrl } from "./config.ts";
import type { Lifecycle } from "./lifecycle.ts";

/**
 * Starts this process's tracing from its validated settings (no-op without an OTLP endpoint). Call
 * right after creating the lifecycle: the last shutdown step flushes the spans every other step
 * finished.
 */
export function startProcessTracing(
  serviceName: string,
  config: {
    OTEL_EXPORTER_OTLP_ENDPOINT?: string | undefined;
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string | undefined;
    OTEL_BSP_SCHEDULE_DELAY: number;
    OTEL_TRACES_SAMPLER_ARG: number;
  },
  lifecycle: Lifecycle,
): void {
  const tracing = startTracing({
    serviceName,
    tracesUrl: tracesUrl(config),
    scheduleDelayMs: config.OTEL_BSP_SCHEDULE_DELAY,
    sampleRatio: config.OTEL_TRACES_SAMPLER_ARG,
  });
  lifecycle.onShutdown("tracing", tracing.shutdown);
}
