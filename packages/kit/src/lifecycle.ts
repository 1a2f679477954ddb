import type { Logger } from "pino";

type Step = { name: string; run: () => Promise<void> | void };

/**
 * Ordered shutdown: steps registered later stop first (the HTTP server before the consumers before
 * the database), so in-flight work drains into dependencies that are still open.
 */
export class Lifecycle {
  private readonly steps: Step[] = [];
  private stopping: Promise<void> | undefined;

  private readonly logger: Logger;
  private readonly stepTimeoutMs: number;

  constructor(logger: Logger, stepTimeoutMs = 10_000) {
    this.logger = logger;
    this.stepTimeoutMs = stepTimeoutMs;
  }

  onShutdown(name: string, run: Step["run"]): void {
    this.steps.push({ name, run });
  }

  shutdown(): Promise<void> {
    this.stopping ??= this.runSteps();
    return this.stopping;
  }

  private async runSteps(): Promise<void> {
    for (const step of [...this.steps].reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.stepTimeoutMs);
      });
      try {
        const outcome = await Promise.race([Promise.resolve(step.run()).then(() => "done" as const), timeout]);
        if (outcome === "timeout") this.logger.warn({ step: step.name }, "shutdown step timed out");
      } catch (error) {
        this.logger.error({ err: error, step: step.name }, "shutdown step failed");
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /**
   * For processes started by a supervisor (the local stack): when the parent dies without stopping
   * us (SIGKILL, crash), shut down instead of holding ports as an orphan.
   */
  exitWithParent(checkEveryMs = 1_000): void {
    const parent = process.ppid;
    const timer = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(timer);
      this.logger.warn("parent process gone; shutting down");
      void this.shutdown().then(() => process.exit(0));
    }, checkEveryMs);
    timer.unref();
  }

  /** SIGTERM/SIGINT run the shutdown once; a second signal exits at once. */
  installSignalHandlers(): void {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) process.exit(130);
      signalled = true;
      this.logger.info({ signal }, "shutting down");
      void this.shutdown().then(() => process.exit(0));
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  }
}
