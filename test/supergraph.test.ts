import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { REPO_ROOT } from "@vaultpay/stack";
import { SUPERGRAPH_PATH, composeSupergraph } from "../scripts/compose.ts";

describe("supergraph", () => {
  it("supergraph.graphql is what supergraph.yaml composes to (run `pnpm compose` when this fails)", () => {
    expect(readFileSync(SUPERGRAPH_PATH, "utf8")).toBe(composeSupergraph());
  });

  it("docker-compose.yml runs every subgraph of supergraph.yaml on its routing port, and the gateway", () => {
    // The processes it names must exist (run-service.ts maps each name to its entry point).
    const supergraph = parseYaml(readFileSync(path.join(REPO_ROOT, "supergraph.yaml"), "utf8")) as {
      subgraphs: Record<string, { routing_url: string }>;
    };
    const compose = parseYaml(readFileSync(path.join(REPO_ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
      services: Record<string, { command?: string[]; environment?: Record<string, string> }>;
    };
    for (const [name, subgraph] of Object.entries(supergraph.subgraphs)) {
      const service = compose.services[name];
      expect(service?.command).toEqual(["node", "scripts/run-service.ts", name]);
      expect(service?.environment?.PORT).toBe(new URL(subgraph.routing_url).port);
      expect(compose.services.gateway?.environment?.[`${name.toUpperCase()}_URL`]).toBe(
        `http://${name}:${new URL(subgraph.routing_url).port}/graphql`,
      );
    }
  });
});
