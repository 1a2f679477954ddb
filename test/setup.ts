import { afterEach } from "vitest";
import { recentStackLines } from "@vaultpay/testing";

// When a test fails, print what the stack's processes logged (warnings and errors) during it:
// whole-stack tests are otherwise silent, and a flake on CI would leave no trace of its cause.
afterEach((context) => {
  if (context.task.result?.state === "fail" && recentStackLines.length > 0) {
    process.stderr.write(
      `--- stack log during "${context.task.name}" (last ${recentStackLines.length} lines) ---\n${recentStackLines.join("\n")}\n---\n`,
    );
  }
  recentStackLines.length = 0;
});
