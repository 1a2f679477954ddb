/** Small pieces every page uses: loading data, showing an error as a sentence, a countdown. */
import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { request } from "./api.ts";
import { ApiError, isRetryable, sentenceFor } from "./errors.ts";
import type { Operation } from "./operations.ts";

export type Loaded<T> = { data?: T; error?: unknown; loading: boolean; reload: () => void };

/** Runs a query when the component mounts (and on reload); keeps the last data while reloading. */
export function useQuery<TData, TVariables>(operation: Operation<TData, TVariables>, variables: TVariables): Loaded<TData> {
  const [state, setState] = useState<{ data?: TData; error?: unknown; loading: boolean }>({ loading: true });
  const [generation, setGeneration] = useState(0);
  const key = JSON.stringify(variables);
  useEffect(() => {
    let live = true;
    setState((previous) => ({ ...previous, loading: true }));
    request(operation, JSON.parse(key) as TVariables).then(
      (data) => live && setState({ data, loading: false }),
      (error: unknown) => live && setState((previous) => ({ ...previous, error, loading: false })),
    );
    return () => {
      live = false;
    };
  }, [operation, key, generation]);
  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  return { ...state, reload };
}

/**
 * A button's work: busy while it runs, its error kept for ErrorNotice, and a second start while
 * one runs ignored (the second click of a double click never reaches the API).
 */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const inFlight = useRef(false);
  const run = useCallback(async (work: () => Promise<void>) => {
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setError(undefined);
    try {
      await work();
    } catch (caught) {
      setError(caught);
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }, []);
  return { busy, error, setError, run };
}

/** Seconds left until `untilMs`, ticking once a second; 0 when passed. */
export function useCountdown(untilMs: number | undefined): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!untilMs) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [untilMs]);
  return untilMs ? Math.max(0, Math.ceil((untilMs - now) / 1000)) : 0;
}

/** An error as a sentence, announced to screen readers; RATE_LIMITED counts down, others may retry. */
export function ErrorNotice({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  // Counted from when this error arrived, not from each render.
  const retryAtMs = useMemo(
    () => (error instanceof ApiError && error.retryAfterSeconds ? Date.now() + error.retryAfterSeconds * 1000 : undefined),
    [error],
  );
  const secondsLeft = useCountdown(retryAtMs);
  if (!error) return null;
  return (
    <div role="alert" className="notice error">
      <p>
        {sentenceFor(error)}
        {secondsLeft > 0 && <> You can try again in {secondsLeft} s.</>}
      </p>
      {onRetry && isRetryable(error) && (
        <button type="button" onClick={onRetry} disabled={secondsLeft > 0}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

/** A page's main heading, focused when the page opens so screen readers announce where they are. */
export function PageHeading({ children }: { children: ReactNode }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {children}
    </h1>
  );
}

export function formatDateTime(iso: string): string {
  return new Date(iso).toLocaleString("en-IN", { dateStyle: "medium", timeStyle: "medium" });
}
