/**
 * Summarizes V8 .cpuprofile files (node --cpu-prof): self time by package and by function, so a
 * benchmark run can say where each process spent its time.
 *   node bench/tools/cpuprofile-summary.ts <dir-or-files…> [--top 15] [--last <seconds>]
 *     [--window <from>,<to>] [--timeline]
 * `--window` keeps the samples between two times, in seconds from the profile's start (one phase of
 * a benchmark that runs several); `--timeline` prints the busy share of each second, to find them.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
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

/**
 * Self time per node, from the samples of the last `lastS` seconds of the profile only when given
 * (a benchmark's load phase, without the start-up's module compilation).
 */
function selfTimes(profile: Profile, span: Span): Map<number, number> {
  const selfUs = new Map<number, number>();
  const [from, to] = bounds(profile, span);
  let at = profile.startTime;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    if (at >= from && at < to) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  return selfUs;
}

/** Which samples count: the last seconds of the profile, or a window from its start (seconds). */
interface Span {
  lastS?: number | undefined;
  window?: readonly [number, number] | undefined;
}

function bounds(profile: Profile, span: Span): [number, number] {
  if (span.window) return [profile.startTime + span.window[0] * 1e6, profile.startTime + span.window[1] * 1e6];
  return [span.lastS === undefined ? -Infinity : profile.endTime - span.lastS * 1e6, Infinity];
}

/** The busy share of each whole second of the profile (idle and the program's own ticks left out). */
function timeline(profile: Profile): string {
  const idle = new Set(profile.nodes.filter((node) => node.callFrame.functionName === "(idle)").map((node) => node.id));
  const busyUs: number[] = [];
  let at = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    const second = Math.floor(at / 1e6);
    if (!idle.has(id)) busyUs[second] = (busyUs[second] ?? 0) + delta;
  });
  return Array.from(busyUs, (us, second) => `${second}:${Math.round((us ?? 0) / 1e4)}%`).join(" ");
}

/** Time under each of the repository's own functions (inclusive), so a hot path shows by name. */
function repoInclusive(profile: Profile, selfUs: Map<number, number>): Map<string, number> {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at)!;
      const { url, functionName, lineNumber } = node.callFrame;
      if (!url.includes("/work/") || url.includes("node_modules/") || !functionName) continue;
      const key = `${functionName} ${owner(url)}:${lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  return inclusive;
}

function summarize(file: string, top: number, span: Span, withTimeline: boolean): void {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const selfUs = selfTimes(profile, span);
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
  const [from, to] = bounds(profile, span);
  const wallS = (Math.min(to, profile.endTime) - Math.max(from, profile.startTime)) / 1e6;
  console.log(
    `\n## ${path.basename(file)}: ${(total / 1e6).toFixed(1)} s busy of ${wallS.toFixed(1)} s (${((100 * total) / 1e6 / wallS).toFixed(0)} % of a core)`,
  );
  const print = (title: string, map: Map<string, number>) => {
    console.log(`${title}:`);
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top))
      console.log(`  ${((100 * us) / total).toFixed(1).padStart(5)} %  ${key}`);
  };
  if (withTimeline) console.log(`busy per second: ${timeline(profile)}`);
  print("by package", byOwner);
  print("by function (self)", byFunction);
  print("repository functions (inclusive)", repoInclusive(profile, selfUs));
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string" }, last: { type: "string" }, window: { type: "string" }, timeline: { type: "boolean" } },
});
const top = Number(values.top ?? 15);
const window = values.window?.split(",").map(Number) as [number, number] | undefined;
const span: Span = { lastS: values.last === undefined ? undefined : Number(values.last), window };
for (const input of positionals) {
  const files = statSync(input).isDirectory()
    ? readdirSync(input)
        .filter((f) => f.endsWith(".cpuprofile"))
        .map((f) => path.join(input, f))
    : [input];
  for (const file of files) summarize(file, top, span, values.timeline === true);
}
