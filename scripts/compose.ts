/**
 * Composes supergraph.yaml into supergraph.graphql with @apollo/composition (rover would download
 * a binary). `--check` exits non-zero when the checked-in file is stale.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { composeServices } from "@apollo/composition";
import { parse } from "graphql";
import { parse as parseYaml } from "yaml";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SUPERGRAPH_PATH = path.join(root, "supergraph.graphql");

interface SupergraphConfig {
  subgraphs: Record<string, { routing_url: string; schema: { file: string } }>;
}

export function composeSupergraph(): string {
  const config = parseYaml(readFileSync(path.join(root, "supergraph.yaml"), "utf8")) as SupergraphConfig;
  const result = composeServices(
    Object.entries(config.subgraphs).map(([name, subgraph]) => ({
      name,
      url: subgraph.routing_url,
      typeDefs: parse(readFileSync(path.join(root, subgraph.schema.file), "utf8")),
    })),
  );
  if (result.errors) {
    throw new Error(`composition failed:\n${result.errors.map((error) => `- ${error.message}`).join("\n")}`);
  }
  return result.supergraphSdl;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const supergraph = composeSupergraph();
  if (process.argv.includes("--check")) {
    const current = readFileSync(SUPERGRAPH_PATH, "utf8");
    if (current !== supergraph) {
      console.error("supergraph.graphql is stale: run `pnpm compose`");
      process.exit(1);
    }
    console.log("supergraph.graphql is current");
  } else {
    writeFileSync(SUPERGRAPH_PATH, supergraph);
    console.log(`wrote ${path.relative(process.cwd(), SUPERGRAPH_PATH)}`);
  }
}
