import { createRequire } from "node:module";
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from "@opentelemetry/sdk-trace";

export { SpanKind, type Span };

/** The W3C header (and envelope field) that carries a span's context to the next hop. */
export const TRACEPARENT = "traceparent";

/** `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, version 00 (W3C Trace Context). */
export const TRACEPARENT_PATTERN = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export interface TracingOptions {
  /** `service.name` of every span this process exports. */
  serviceName: string;
  /** Where spans go (OTLP over HTTP, JSON). Unset: tracing stays off, with the API's no-op tracer. */
  tracesUrl?: string | undefined;
  /** How long finished spans wait to be exported together. */
  scheduleDelayMs?: number;
  /** Share of new traces recorded (0–1); a span whose parent was recorded is always recorded. */
  sampleRatio?: number;
}

let provider: TracerProvider | undefined;

/** Whether this process records spans; everything here is a no-op (no allocations) while false. */
export function tracingEnabled(): boolean {
  return provider !== undefined;
}

/**
 * Starts tracing once per process when an endpoint is given: a tracer provider exporting in batches,
 * AsyncLocalStorage context (so a span follows its async work) and W3C propagation. Apollo
 * Gateway's own spans (plan, fetch, …) use the same global provider. Returns the flush to run at
 * shutdown. Without an endpoint nothing is registered, and the API's tracer stays a no-op.
 */
export function startTracing(options: TracingOptions): { shutdown: () => Promise<void> } {
  if (!options.tracesUrl || provider) return { shutdown: async () => undefined };
  const exporter = new OTLPTraceExporter({ url: options.tracesUrl });
  provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio ?? 1) }),
    // Bounded: when the collector is away, spans beyond the queue are dropped, never the process.
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        scheduledDelayMillis: options.scheduleDelayMs ?? 5_000,
        maxQueueSize: 4_096,
        maxExportBatchSize: 512,
      }),
    ],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  // Apollo Gateway (CommonJS) took its tracer from the API's CommonJS copy when it was imported,
  // before this ran; that tracer follows its own copy's proxy, which learns of a provider only when
  // it is registered through that copy. Registered there, this module's (ESM) copy finds it too:
  // both read the same process-wide registry.
  const commonJsApi = createRequire(import.meta.url)("@opentelemetry/api") as { trace: typeof trace };
  commonJsApi.trace.setGlobalTracerProvider(provider);
  const started = provider;
  return { shutdown: () => started.shutdown() };
}

function tracer() {
  return trace.getTracer("vaultpay");
}

/** The context a W3C traceparent names, as a remote parent; the root context for a bad or missing one. */
function contextOf(traceparent: string | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { [TRACEPARENT]: traceparent });
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /**
   * Whose child the span is: a W3C traceparent received from another process (a header, an event),
   * `null` for a new trace, undefined for the active span.
   */
  parent?: string | null | undefined;
}

/** Starts a span (undefined while tracing is off); end it with endSpan. */
export function startSpan(name: string, options: SpanOptions = {}): Span | undefined {
  if (!provider) return undefined;
  const parent = options.parent === undefined ? context.active() : contextOf(options.parent ?? undefined);
  return tracer().startSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}) },
    parent,
  );
}

/** Runs `fn` with `span` active, so spans and traceparents made inside are its children. */
export function runInSpan<T>(span: Span | undefined, fn: () => T): T {
  if (!span) return fn();
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Ends a span, marked failed (with the error's name and message, never its data) when given one. */
export function endSpan(span: Span | undefined, error?: unknown): void {
  if (!span) return;
  if (error !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
  }
  span.end();
}

/** A span around `fn`: started, active while it runs, ended (failed if it throws). */
export async function withSpan<T>(name: string, options: SpanOptions, fn: () => Promise<T>): Promise<T> {
  const span = startSpan(name, options);
  if (!span) return fn();
  try {
    const result = await runInSpan(span, fn);
    endSpan(span);
    return result;
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
}

/**
 * The W3C traceparent of `span` (default: the active span), to carry to another process: in an
 * HTTP header, or stored with an event that is published later. Undefined while tracing is off or
 * outside any span.
 */
export function traceparentOf(span?: Span): string | undefined {
  if (!provider) return undefined;
  const active = span ?? trace.getSpan(context.active());
  if (!active) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, active), carrier);
  return carrier[TRACEPARENT];
}
