import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webAppRoute } from "./web-app.ts";

let base: string;
let dir: string;
let server: http.Server;

beforeAll(async () => {
  base = mkdtempSync(path.join(os.tmpdir(), "vaultpay-web-"));
  dir = path.join(base, "dist");
  mkdirSync(path.join(dir, "assets"), { recursive: true });
  writeFileSync(path.join(dir, "index.html"), "<!doctype html><title>app</title>");
  writeFileSync(path.join(dir, "assets", "index-abc.js"), "console.log(1)");
  writeFileSync(path.join(base, "secret.txt"), "not for the web");
  const route = webAppRoute(dir);
  server = http.createServer((request, response) => {
    void route(request, response, new URL(request.url ?? "/", "http://localhost")).then((handled) => {
      if (!handled) response.writeHead(404).end("fallthrough");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
});

afterAll(() => {
  server.close();
  rmSync(base, { recursive: true, force: true });
});

const get = (pathname: string, method = "GET") =>
  fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${pathname}`, { method });

describe("the gateway's web app route", () => {
  it("serves index.html at / with a strict CSP and no caching", async () => {
    const response = await get("/");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    expect(response.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(response.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(response.headers.get("cache-control")).toBe("no-cache");
    expect(await response.text()).toContain("<title>app</title>");
  });

  it("serves hashed assets as immutable JavaScript", async () => {
    const response = await get("/assets/index-abc.js");
    expect(response.headers.get("content-type")).toContain("text/javascript");
    expect(response.headers.get("cache-control")).toContain("immutable");
  });

  it("never reads outside its folder, however the path is spelled", async () => {
    for (const pathname of ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt"]) {
      const response = await get(pathname);
      expect(await response.text(), pathname).not.toContain("not for the web");
    }
  });

  it("leaves other methods and missing files to the next handler", async () => {
    expect(await (await get("/", "POST")).text()).toBe("fallthrough");
    expect(await (await get("/nope.js")).text()).toBe("fallthrough");
  });
});
