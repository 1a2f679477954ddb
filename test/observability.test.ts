/**
 * The observability files are parsed and checked against each other and against the code: every
 * metric an alert or a dashboard panel reads is one the processes export, Prometheus scrapes every
 * process where compose runs it, and the compose profile mounts files that exist.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { REPO_ROOT } from "@vaultpay/stack";

const read = (file: string) => readFileSync(path.join(REPO_ROOT, file), "utf8");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (name === "node_modules" || name === "generated") return [];
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return full.endsWith(".ts") && !full.endsWith(".test.ts") ? [full] : [];
  });
}

/** Metric names the code registers (first argument of a metric or `name:` of a prom-client one), with a histogram's series. */
function exportedMetrics(): Set<string> {
  const names = new Set<string>();
  for (const dir of ["packages", "subgraphs", "gateway/src"]) {
    for (const file of sourceFiles(path.join(REPO_ROOT, dir))) {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:name: |\.(?:gauge|counter|histogram)\(\s*)"(vaultpay_[a-z_]+)"/g)) names.add(match[1]!);
      for (const match of text.matchAll(/\.histogram\(\s*"(vaultpay_[a-z_]+)"|name: "(vaultpay_[a-z_]+_seconds)"/g)) {
        const base = match[1] ?? match[2]!;
        for (const suffix of ["_bucket", "_count", "_sum"]) names.add(`${base}${suffix}`);
      }
    }
  }
  return names;
}

/** Metric names in a PromQL expression: identifiers followed by a selector or range, minus functions and keywords. */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(vaultpay_[a-z_]+)\b/g)].map((match) => match[1]!);
}

describe("observability files", () => {
  const exported = exportedMetrics();

  it("finds the metrics the code exports", () => {
    for (const name of [
      "vaultpay_graphql_requests_total",
      "vaultpay_transfers",
      "vaultpay_dlq_messages",
      "vaultpay_saga_seconds_to_status_bucket",
      "vaultpay_consumer_pending",
      "vaultpay_stream_fill_ratio",
    ]) {
      expect(exported, name).toContain(name);
    }
  });

  it("alerts read only exported metrics and cover the saga, the DLQ, consumer lag, full streams and the error rate", () => {
    const alerts = parse(read("observability/alerts.yml")) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string; for?: string }> }>;
    };
    const rules = alerts.groups.flatMap((group) => group.rules);
    expect(rules.map((rule) => rule.alert).sort()).toEqual([
      "VaultPayConsumerLag",
      "VaultPayDeadLetters",
      "VaultPayErrorRate",
      "VaultPayOutboxStuck",
      "VaultPaySagaStuck",
      "VaultPayStreamFilling",
      "VaultPayTransferNoticeStuck",
    ]);
    for (const rule of rules) {
      expect(metricsIn(rule.expr).length, rule.alert).toBeGreaterThan(0);
      for (const metric of metricsIn(rule.expr)) expect(exported, `${rule.alert} reads ${metric}`).toContain(metric);
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
    }
  });

  it("the dashboard is valid JSON whose every panel queries exported metrics from the provisioned datasource", () => {
    const dashboard = JSON.parse(read("observability/grafana/dashboards/vaultpay.json")) as {
      uid: string;
      panels: Array<{ id: number; title: string; datasource: { uid: string }; targets: Array<{ expr: string; refId: string }> }>;
    };
    const datasources = parse(read("observability/grafana/provisioning/datasources/prometheus.yml")) as {
      datasources: Array<{ uid: string; url: string }>;
    };
    const uids = new Set(datasources.datasources.map((source) => source.uid));
    expect(new Set(dashboard.panels.map((panel) => panel.id)).size).toBe(dashboard.panels.length);
    const read_ = new Set<string>();
    for (const panel of dashboard.panels) {
      expect(uids, panel.title).toContain(panel.datasource.uid);
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets) {
        for (const metric of metricsIn(target.expr)) {
          expect(exported, `${panel.title} reads ${metric}`).toContain(metric);
          read_.add(metric.replace(/_(bucket|count|sum)$/, ""));
        }
      }
    }
    // Every family the processes export has a panel.
    const families = new Set([...exported].map((name) => name.replace(/_(bucket|count|sum)$/, "")));
    expect([...families].filter((family) => !read_.has(family))).toEqual([]);
  });

  it("the compose profile runs Prometheus and Grafana on files that exist, scraping every process where compose runs it", () => {
    const compose = parse(read("docker-compose.yml")) as {
      services: Record<string, { profiles?: string[]; volumes?: string[]; environment?: Record<string, string>; ports?: string[] }>;
    };
    for (const name of ["prometheus", "grafana"]) {
      const service = compose.services[name]!;
      expect(service.profiles, name).toEqual(["observability"]);
      for (const volume of service.volumes ?? []) {
        const source = volume.split(":")[0]!;
        expect(existsSync(path.join(REPO_ROOT, source)), `${name} mounts ${source}`).toBe(true);
      }
    }
    const mounted = compose.services.prometheus!.volumes!.map((volume) => volume.split(":")[1]);
    const prometheus = parse(read("observability/prometheus.yml")) as {
      rule_files: string[];
      scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }>;
    };
    for (const ruleFile of prometheus.rule_files) expect(mounted).toContain(ruleFile);
    const targets = prometheus.scrape_configs.flatMap((job) => job.static_configs.flatMap((config) => config.targets)).sort();
    // Where compose runs each process: the service name and the port it listens on.
    const expected = ["auth", "accounts", "transactions", "fraud", "audit", "gateway"].map((name) => {
      const environment = compose.services[name]!.environment ?? {};
      return `${name}:${environment.PORT ?? environment.GATEWAY_PORT}`;
    });
    expect(targets).toEqual(expected.sort());
  });
});
