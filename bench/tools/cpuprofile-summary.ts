/**
 * Summarizes V8 .cpuprofile files (node --cpu-prof): self time by package and by function, so a
 * benchmark run can say where each process spent its time.
 *   node --import tsx bench/tools/cpuprofile-summary.ts <dir-or-files…> [--top 15]
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where code lives: a package name under node_modules, node's internals, or the repo's folder. */
function owner(url: string): string {
  if (!url) return "(native / gc / idle)";
  if (url.startsWith("node:")) return "node:internal";
  const modules = url.lastIndexOf("node_modules/");
  if (modules >= 0) {
    const rest = url.slice(modules + "node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const repo = url.indexOf("/work/");
  const local = repo >= 0 ? url.slice(repo).split("/").slice(3, 5).join("/") : url;
  return `repo:${local}`;
}

function summarize(file: string, top: number): void {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, index) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const byOwner = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    const name = node.callFrame.functionName || "(anonymous)";
    if (name === "(idle)") continue;
    total += us;
    const who = name.startsWith("(") ? name : owner(node.callFrame.url);
    byOwner.set(who, (byOwner.get(who) ?? 0) + us);
    const where = `${name} ${owner(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
    byFunction.set(where, (byFunction.get(where) ?? 0) + us);
  }
  const wallS = (profile.endTime - profile.startTime) / 1e6;
  console.log(`\n## ${path.basename(file)}: ${(total / 1e6).toFixed(1)} s busy of ${wallS.toFixed(1)} s (${((100 * total) / 1e6 / wallS).toFixed(0)} % of a core)`);
  const print = (title: string, map: Map<string, number>) => {
    console.log(`${title}:`);
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${((100 * us) / total).toFixed(1).padStart(5)} %  ${key}`);
  };
  print("by package", byOwner);
  print("by function (self)", byFunction);
}

const args = process.argv.slice(2);
const topIndex = args.indexOf("--top");
const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 15;
const inputs = args.filter((arg, index) => arg !== "--top" && index !== topIndex + 1 || topIndex < 0 && arg !== "--top");
for (const input of inputs) {
  const files = statSync(input).isDirectory() ? readdirSync(input).filter((f) => f.endsWith(".cpuprofile")).map((f) => path.join(input, f)) : [input];
  for (const file of files) summarize(file, top);
}
