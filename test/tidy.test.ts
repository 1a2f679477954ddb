/**
 * The code's shape, checked by the suite like TigerBeetle's tidy.zig: a convention a test checks stays
 * true; one in a document drifts.
 */
import { spawnSync } from "node:child_process";
import { existsSync, globSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "@vaultpay/stack";

/** Where the repository's own TypeScript lives; generated Prisma clients and build output are not ours. */
const SOURCE_PATTERNS = [
  "apps/*/src/**/*.{ts,tsx}",
  "packages/*/src/**/*.ts",
  "subgraphs/*/src/**/*.ts",
  "gateway/src/**/*.ts",
  "scripts/**/*.ts",
  "test/**/*.ts",
  "bench/**/*.ts",
  "prisma/*.ts",
  "vitest.config.ts",
];

function sourceFiles(): string[] {
  return globSync(SOURCE_PATTERNS, {
    cwd: REPO_ROOT,
    exclude: (name) => name === "node_modules" || name === "generated" || name === "dist",
  })
    .map((file) => file.split(path.sep).join("/"))
    .sort();
}

describe("tidy", () => {
  it("the code is formatted and passes the linter (`pnpm format` fixes the formatting; `pnpm lint` shows both)", () => {
    const biome = path.join(REPO_ROOT, "node_modules/.bin/biome");
    const run = spawnSync(biome, ["ci", "--error-on-warnings", "--colors=off", "--max-diagnostics=20", "."], {
      cwd: REPO_ROOT,
      encoding: "utf8",
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
  });

  it("no import cycle among the repository's own modules (type-only imports count: they are read in the same order)", () => {
    const graph = importGraph(sourceFiles());
    expect(cycles(graph).map((cycle) => cycle.join(" → "))).toEqual([]);
  });

  it(`no function longer than ${MAX_FUNCTION_LINES} lines, except the ones listed (the list only shrinks)`, () => {
    const measured = new Map<string, number>();
    for (const file of sourceFiles()) {
      if (file.endsWith(".test.ts") || file.endsWith(".bench.ts")) continue;
      for (const [name, lines] of functionLengths(file)) if (lines > MAX_FUNCTION_LINES) measured.set(`${file}:${name}`, lines);
    }
    const expected = Object.fromEntries([...measured].sort(([a], [b]) => a.localeCompare(b)));
    // On failure the message is the list as it should now read: split a function that grew past the limit
    // rather than adding it here; a listed one that shrank or went is taken off or lowered.
    expect(expected, `LONG_FUNCTIONS should read:\n${JSON.stringify(expected, null, 2)}`).toEqual(LONG_FUNCTIONS);
  });
});

/** TigerBeetle's limit: a function that does not fit on a screen is read in pieces and misunderstood in pieces. */
const MAX_FUNCTION_LINES = 70;

/**
 * The functions over the limit when the limit came (path:function → lines, counted as `pnpm format` lays
 * them out). New code stays under the limit; these only get shorter, and then leave the list.
 */
const LONG_FUNCTIONS: Record<string, number> = {
  "apps/web/src/App.tsx:App": 88,
  "apps/web/src/pages/Send.tsx:Send": 107,
  "apps/web/src/pages/Transfer.tsx:Transfer": 77,
};

/**
 * Module → the repository modules it imports. Relative specifiers and `@vaultpay/*` workspace packages
 * are resolved; everything else is a dependency from the registry and cannot be part of our cycles.
 * Our own small resolver over the TypeScript compiler's import scan, rather than madge or
 * dependency-cruiser: every specifier here is a relative `.ts` path or a workspace package whose
 * `exports` names a `.ts` file, so thirty lines cover it without another dependency tree.
 */
function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(path.join(REPO_ROOT, file), "utf8");
    const { importedFiles } = ts.preProcessFile(text, true, true);
    const targets = importedFiles.map((entry) => resolveImport(file, entry.fileName)).filter((target) => target !== undefined);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

function resolveImport(from: string, specifier: string): string | undefined {
  if (specifier.startsWith(".")) {
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
    return existsSync(path.join(REPO_ROOT, target)) ? target : undefined;
  }
  const workspace = /^@vaultpay\/([^/]+)(\/.*)?$/.exec(specifier);
  if (!workspace) return undefined;
  const packageDir = `packages/${workspace[1]}`;
  if (!existsSync(path.join(REPO_ROOT, packageDir, "package.json"))) return undefined;
  const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, packageDir, "package.json"), "utf8")) as {
    exports?: Record<string, string>;
  };
  const entry = manifest.exports?.[`.${workspace[2] ?? ""}`];
  return entry ? path.posix.normalize(path.posix.join(packageDir, entry)) : undefined;
}

/** Each strongly connected component of more than one module (or a module importing itself), sorted. */
function cycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's algorithm, iterative so a deep import chain cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const found: string[][] = [];
  let counter = 0;
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: Array<{ node: string; next: number }> = [{ node: root, next: 0 }];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const edges = graph.get(frame.node) ?? [];
      if (frame.next < edges.length) {
        const target = edges[frame.next++]!;
        if (!index.has(target)) {
          index.set(target, counter);
          low.set(target, counter++);
          stack.push(target);
          onStack.add(target);
          work.push({ node: target, next: 0 });
        } else if (onStack.has(target)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(target)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) !== index.get(frame.node)) continue;
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== frame.node);
      if (component.length > 1 || edges.includes(frame.node)) found.push(component.sort());
    }
  }
  return found.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** Every function in a file, named by where it sits (`Class.method`, `outer.inner`), with its length in lines. */
function functionLengths(file: string): Array<[string, number]> {
  const text = readFileSync(path.join(REPO_ROOT, file), "utf8");
  const source = ts.createSourceFile(
    file,
    text,
    ts.ScriptTarget.Latest,
    true,
    file.endsWith(".tsx") ? ts.ScriptKind.TSX : ts.ScriptKind.TS,
  );
  const lengths: Array<[string, number]> = [];
  const seen = new Map<string, number>();
  const visit = (node: ts.Node, scope: string[]): void => {
    let inner = scope;
    const named = nameOf(node);
    if (named !== undefined) inner = [...scope, named];
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      // Two functions of one name in one scope (overloads aside) are told apart by their order.
      const base = inner.join(".") || "<module>";
      const count = (seen.get(base) ?? 0) + 1;
      seen.set(base, count);
      lengths.push([count === 1 ? base : `${base}#${count}`, last - first + 1]);
    }
    ts.forEachChild(node, (child) => visit(child, inner));
  };
  visit(source, []);
  return lengths;
}

/** The name a reader would use for a node that scopes functions; undefined for nodes that add none. */
function nameOf(node: ts.Node): string | undefined {
  if (ts.isClassDeclaration(node) || ts.isFunctionDeclaration(node)) return node.name?.text ?? "default";
  if (
    ts.isMethodDeclaration(node) ||
    ts.isGetAccessor(node) ||
    ts.isSetAccessor(node) ||
    ts.isPropertyAssignment(node) ||
    ts.isPropertyDeclaration(node)
  ) {
    return node.name.getText();
  }
  if (ts.isConstructorDeclaration(node)) return "constructor";
  if (ts.isVariableDeclaration(node)) return node.name.getText();
  if ((ts.isArrowFunction(node) || ts.isFunctionExpression(node)) && ts.isCallExpression(node.parent)) {
    // A callback is named after the call it is given to: `createServer(…)`, `promise.then(…)`.
    return `${node.parent.expression.getText().replace(/\s+/g, "")}(…)`;
  }
  return undefined;
}
