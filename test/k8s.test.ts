// biome-ignore-all lint/suspicious/noExplicitAny: rendered YAML of many kinds, read field by field after kubernetes-models validated each object
/**
 * The Kubernetes manifests (deploy/k8s) without a cluster: every YAML file parses, the
 * kustomizations render (resources, patches, images, namespace, labels — the parts of Kustomize
 * they use), every rendered object passes the Kubernetes JSON schemas (kubernetes-models), and the
 * manifests agree with the code: ports, environment variable names, probes and secrets. The
 * compose file is held to the same names.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import type { z } from "zod";
import { Deployment } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { CronJob, Job } from "kubernetes-models/batch/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Service, ServiceAccount } from "kubernetes-models/v1";
import { NATS_USERS, STREAMS, natsAuthorization, streamLimitsOf, type NatsUser } from "@vaultpay/events";
import { configKeys } from "@vaultpay/kit";
import { SERVICES, type ServiceName } from "@vaultpay/migrate";
import { AUTH_ONLY_SETTINGS, DEFAULT_GATEWAY_PORT, REPO_ROOT, SECRETS_BY_PROCESS, type ProcessName } from "@vaultpay/stack";
import { gatewayConfigSchema } from "../gateway/src/config.ts";
import { subgraphConfigSchema } from "../packages/service/src/index.ts";
import { accountsConfigSchema } from "../subgraphs/accounts/src/config.ts";
import { authConfigSchema } from "../subgraphs/auth/src/config.ts";
import { fraudConfigSchema } from "../subgraphs/fraud/src/config.ts";
import { transactionsConfigSchema } from "../subgraphs/transactions/src/config.ts";

const K8S_DIR = path.join(REPO_ROOT, "deploy/k8s");

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
};

/** The schema each kind is validated against: every kind the manifests may use, and no other. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "batch/v1/CronJob": CronJob,
  "batch/v1/Job": Job,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
};

/** Each process's own config schema: what it reads from its environment. */
const CONFIG_SCHEMAS: Record<ProcessName, z.ZodType> = {
  gateway: gatewayConfigSchema,
  auth: authConfigSchema,
  accounts: accountsConfigSchema,
  transactions: transactionsConfigSchema,
  fraud: fraudConfigSchema,
  audit: subgraphConfigSchema,
};

/** Where each process listens by default: the gateway's schema default; subgraphs after it (supergraph.yaml). */
function defaultPort(name: ProcessName): number {
  if (name === "gateway")
    return gatewayConfigSchema.parse({ GATEWAY_SECRET: "x".repeat(32), AUTH_JWKS_URL: "http://auth/jwks" }).GATEWAY_PORT;
  return DEFAULT_GATEWAY_PORT + 1 + SERVICES.indexOf(name);
}

/**
 * Secrets a process may be given from a Kubernetes Secret: the keys SECRETS_BY_PROCESS hands it
 * locally, auth's operator-only ones (SMTP/SMS/administrator passwords), a subgraph's database URL
 * (it carries the password) and the gateway's metrics token.
 */
function allowedSecrets(name: ProcessName): Set<string> {
  const extra = name === "auth" ? AUTH_ONLY_SETTINGS : name === "gateway" ? ["METRICS_TOKEN"] : [];
  return new Set([...(SECRETS_BY_PROCESS[name] ?? []), ...extra, "NATS_URL", ...(name === "gateway" ? [] : ["DATABASE_URL"])]);
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    return statSync(full).isDirectory() ? yamlFiles(full) : /\.ya?ml$/.test(entry) ? [full] : [];
  });
}

function loadDocuments(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((document) => {
    if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}`);
    return document.toJS() as K8sObject;
  });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A strategic-merge patch as far as these manifests need it: maps merge, everything else replaces. */
function merge(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (isPlainObject(value) && isPlainObject(target[key])) merge(target[key] as Record<string, unknown>, value);
    else target[key] = value;
  }
}

function podSpecOf(object: K8sObject): { containers: Array<Record<string, any>> } | undefined {
  const spec = object.spec as any;
  if (object.kind === "CronJob") return spec.jobTemplate.spec.template.spec;
  if (object.kind === "Deployment" || object.kind === "Job") return spec.template.spec;
  return undefined;
}

/** `kustomize build`, for the fields these kustomizations use; anything else fails the test. */
function render(dir: string): K8sObject[] {
  const kustomization = parse(readFileSync(path.join(dir, "kustomization.yaml"), "utf8")) as Record<string, any>;
  const known = new Set(["apiVersion", "kind", "resources", "patches", "images", "namespace", "labels"]);
  for (const field of Object.keys(kustomization)) expect(known, `${dir}: kustomization field ${field}`).toContain(field);
  const objects: K8sObject[] = (kustomization.resources ?? []).flatMap((resource: string) => {
    const target = path.resolve(dir, resource);
    // Kustomize loads nothing outside the kustomization's folder unless it is another kustomization.
    if (!statSync(target).isDirectory()) expect(target.startsWith(`${dir}${path.sep}`), `${resource} inside ${dir}`).toBe(true);
    return statSync(target).isDirectory() ? render(target) : loadDocuments(target);
  });
  for (const { path: patchFile } of kustomization.patches ?? []) {
    for (const patch of loadDocuments(path.resolve(dir, patchFile))) {
      const target = objects.find((object) => object.kind === patch.kind && object.metadata.name === patch.metadata.name);
      expect(target, `patch ${patchFile} targets ${patch.kind}/${patch.metadata.name}`).toBeTruthy();
      merge(target!, patch);
    }
  }
  for (const object of objects) {
    if (kustomization.namespace) object.metadata.namespace = kustomization.namespace;
    for (const { pairs } of kustomization.labels ?? []) object.metadata.labels = { ...object.metadata.labels, ...pairs };
    for (const container of podSpecOf(object)?.containers ?? []) {
      const image = (kustomization.images ?? []).find((entry: { name: string }) => container.image.split(":")[0] === entry.name);
      if (image) container.image = `${image.newName ?? image.name}:${image.newTag}`;
    }
  }
  return objects;
}

const KUSTOMIZATIONS = ["base", "migrations", "overlays/production"];

describe("Kubernetes manifests", () => {
  it("every YAML file parses", () => {
    const files = yamlFiles(K8S_DIR);
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) expect(() => loadDocuments(file), file).not.toThrow();
  });

  it.each(KUSTOMIZATIONS)("%s renders to objects that pass the Kubernetes schemas", (kustomization) => {
    const objects = render(path.join(K8S_DIR, kustomization));
    expect(objects.length).toBeGreaterThan(0);
    const names = objects.map((object) => `${object.kind}/${object.metadata.name}`);
    expect(new Set(names).size, "no object twice").toBe(names.length);
    for (const object of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${object.apiVersion} ${object.kind} has a schema here`).toBeTruthy();
      expect(() => new Model!(structuredClone(object) as never).validate(), `${object.kind}/${object.metadata.name}`).not.toThrow();
      for (const container of podSpecOf(object)?.containers ?? []) {
        // The base names the image; an environment's kustomization pins its registry and tag.
        expect(container.image, object.metadata.name).toMatch(kustomization === "base" ? /^vaultpay$/ : /^[\w./-]+\/vaultpay:[\w.-]+$/);
        // The command runs a file that exists in the image (the repository).
        const script = container.command.find((part: string) => part.endsWith(".ts"));
        expect(existsSync(path.join(REPO_ROOT, script)), `${object.metadata.name}: ${script}`).toBe(true);
      }
    }
  });

  const base = render(path.join(K8S_DIR, "base"));
  const byKind = (kind: string) => base.filter((object) => object.kind === kind);
  const configMap = byKind("ConfigMap").find((object) => object.metadata.name === "vaultpay-config")!.data as Record<string, string>;
  const processes: ProcessName[] = [...SERVICES, "gateway"];

  it("runs every subgraph and the gateway as a Deployment of at least two replicas, each with a Service, a PodDisruptionBudget and a CPU autoscaler", () => {
    expect(
      byKind("Deployment")
        .map((object) => object.metadata.name)
        .sort(),
    ).toEqual([...processes].sort());
    for (const name of processes) {
      const deployment = byKind("Deployment").find((object) => object.metadata.name === name)! as any;
      const podLabels = deployment.spec.template.metadata.labels;
      const selects = (selector: Record<string, string>) => Object.entries(selector).every(([key, value]) => podLabels[key] === value);
      expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
      expect(selects(deployment.spec.selector.matchLabels)).toBe(true);
      const service = byKind("Service").find((object) => object.metadata.name === name) as any;
      expect(service && selects(service.spec.selector), `Service ${name} selects its pods`).toBe(true);
      const budget = byKind("PodDisruptionBudget").find((object) => object.metadata.name === name) as any;
      expect(budget && selects(budget.spec.selector.matchLabels), `PodDisruptionBudget ${name}`).toBe(true);
      expect(budget.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
      const autoscaler = byKind("HorizontalPodAutoscaler").find((object) => object.metadata.name === name) as any;
      expect(autoscaler?.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name });
      expect(autoscaler.spec.minReplicas).toBeGreaterThanOrEqual(2);
      expect(autoscaler.spec.metrics).toEqual([
        { type: "Resource", resource: { name: "cpu", target: expect.objectContaining({ type: "Utilization" }) } },
      ]);
      // Utilization is a share of the request: without one the autoscaler cannot act.
      expect(deployment.spec.template.spec.containers[0].resources.requests.cpu).toBeTruthy();
    }
  });

  it.each([...SERVICES, "gateway"] as ProcessName[])("%s: port, environment names, probes and secrets agree with its code", (name) => {
    const deployment = byKind("Deployment").find((object) => object.metadata.name === name)!;
    const [container, ...others] = podSpecOf(deployment)!.containers;
    expect(others).toEqual([]);
    const port = defaultPort(name);
    expect(container!.ports).toEqual([{ name: "http", containerPort: port }]);
    const service = byKind("Service").find((object) => object.metadata.name === name) as any;
    expect(service.spec.ports).toEqual([{ name: "http", port, targetPort: "http" }]);

    const keys = configKeys(CONFIG_SCHEMAS[name]);
    const env = container!.env as Array<{ name: string; value?: string; valueFrom?: any }>;
    for (const variable of env) {
      const base = variable.name.replace(/_FILE$/, "");
      expect(keys.has(base), `${name} reads ${variable.name}`).toBe(true);
      const secret = variable.valueFrom?.secretKeyRef;
      if (secret) {
        expect(allowedSecrets(name).has(base), `${name} may be given the secret ${base}`).toBe(true);
        expect(secret.key).toBe(base);
      }
      const setting = variable.valueFrom?.configMapKeyRef;
      if (setting) {
        expect(setting.name).toBe("vaultpay-config");
        expect(Object.keys(configMap), `vaultpay-config holds ${setting.key}`).toContain(setting.key);
        expect(
          allowedSecrets(name).has(setting.key) || SECRETS_BY_PROCESS.auth!.includes(setting.key as never),
          `${setting.key} is no secret`,
        ).toBe(false);
      }
    }
    const values = Object.fromEntries(
      env.filter((variable) => variable.value !== undefined).map((variable) => [variable.name, variable.value]),
    );
    expect(values[name === "gateway" ? "GATEWAY_PORT" : "PORT"]).toBe(String(port));
    expect(values[name === "gateway" ? "GATEWAY_HOST" : "HOST"], "listens on the pod's address").toBe("0.0.0.0");
    // Every secret the process needs arrives from a Secret, and the streams' copies are set.
    const given = new Set(env.map((variable) => variable.name));
    for (const secret of SECRETS_BY_PROCESS[name] ?? []) expect(given, `${name} gets ${secret}`).toContain(secret);
    for (const limit of ["NATS_STREAM_REPLICAS", "NATS_STREAM_MAX_BYTES", "NATS_STREAM_MAX_AGE_HOURS"]) expect(given).toContain(limit);
    // NATS as its own user: a Secret of its own, no other process's.
    expect(env.find((variable) => variable.name === "NATS_URL")?.valueFrom?.secretKeyRef).toEqual({
      name: `vaultpay-${name}-nats`,
      key: "NATS_URL",
    });
    if (name === "gateway") {
      for (const [index, service] of SERVICES.entries())
        expect(values[`${service.toUpperCase()}_URL`]).toBe(`http://${service}:${DEFAULT_GATEWAY_PORT + 1 + index}/graphql`);
    }

    expect(container!.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(container!.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
  });

  it("the shared settings are valid for the processes that read them", () => {
    expect(Number(configMap.NATS_STREAM_REPLICAS)).toBe(3);
    const parsed = subgraphConfigSchema.parse({
      ...configMap,
      PORT: "4001",
      DATABASE_URL: "postgres://db/vaultpay_auth",
      GATEWAY_SECRET: "x".repeat(32),
    });
    expect(parsed.NATS_STREAM_REPLICAS).toBe(3);
    expect(gatewayConfigSchema.safeParse({ ...configMap, GATEWAY_SECRET: "x".repeat(32) }).success).toBe(true);
    // The JWKS URL names auth's Service and port.
    expect(configMap.AUTH_JWKS_URL).toBe(`http://auth:${defaultPort("auth")}/.well-known/jwks.json`);
  });

  it("migrates every service's database in a Job, and reconciles every 5 minutes and fully once a day from a Secret no service mounts", () => {
    const migrations = render(path.join(K8S_DIR, "migrations"));
    const [job] = migrations;
    expect(job!.kind).toBe("Job");
    const containers = podSpecOf(job!)!.containers;
    expect(containers.map((container) => container.command.slice(-2))).toEqual(SERVICES.map((service) => ["deploy", service]));
    for (const [index, container] of containers.entries()) {
      expect(container.env).toEqual([
        { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: `vaultpay-${SERVICES[index]}-database`, key: "DATABASE_URL" } } },
      ]);
    }
    const cronJobs = byKind("CronJob") as any[];
    expect(cronJobs.map((job) => [job.metadata.name, job.spec.schedule, podSpecOf(job)!.containers[0]!.command.slice(2)])).toEqual([
      ["vaultpay-reconcile", "*/5 * * * *", ["--repair", "--prune"]],
      ["vaultpay-reconcile-full", "17 3 * * *", ["--repair", "--full"]],
    ]);
    const reconcileReads = new Set([
      "NATS_URL",
      "DATABASE_URL",
      "LOG_LEVEL",
      "NATS_STREAM_MAX_AGE_HOURS",
      ...SERVICES.map((service) => `${service.toUpperCase()}_DATABASE_URL`),
    ]);
    // --prune keeps the consumers' processed events as long as the streams keep a message (and a
    // day): it must read the services' own setting, not its default.
    expect(podSpecOf(cronJobs[0])!.containers[0]!.env).toContainEqual({
      name: "NATS_STREAM_MAX_AGE_HOURS",
      valueFrom: { configMapKeyRef: { name: "vaultpay-config", key: "NATS_STREAM_MAX_AGE_HOURS" } },
    });
    for (const cronJob of cronJobs) {
      expect(cronJob.spec.concurrencyPolicy).toBe("Forbid");
      const container = podSpecOf(cronJob)!.containers[0]!;
      expect(container.command.slice(0, 2)).toEqual(["node", "scripts/reconcile.ts"]);
      for (const variable of container.env) expect(reconcileReads, variable.name).toContain(variable.name);
    }
    // The daily reading of the whole history may take longer than the 5-minute one's 20 minutes.
    expect(cronJobs[1].spec.jobTemplate.spec.activeDeadlineSeconds).toBeGreaterThan(
      cronJobs[0].spec.jobTemplate.spec.activeDeadlineSeconds,
    );
    const secretNames = (objects: K8sObject[]) =>
      objects.flatMap((object) =>
        (podSpecOf(object)?.containers ?? []).flatMap((c) =>
          (c.env ?? []).map((v: any) => v.valueFrom?.secretKeyRef?.name).filter(Boolean),
        ),
      );
    expect(new Set(secretNames(cronJobs))).toEqual(new Set(["vaultpay-reconcile"]));
    expect(secretNames(byKind("Deployment"))).not.toContain("vaultpay-reconcile");
  });

  it("the production overlay sets the namespace, the image and its own settings over the base", () => {
    const objects = render(path.join(K8S_DIR, "overlays/production"));
    expect(objects.every((object) => object.metadata.namespace === "vaultpay")).toBe(true);
    const config = objects.find((object) => object.kind === "ConfigMap")!.data as Record<string, string>;
    expect(config.GATEWAY_PUBLIC_URL).toBe("https://api.bank.example/graphql");
    expect(config.NATS_STREAM_REPLICAS).toBe("3");
    const gateway = objects.find((object) => object.kind === "HorizontalPodAutoscaler" && object.metadata.name === "gateway") as any;
    expect(gateway.spec.minReplicas).toBe(3);
    expect(gateway.spec.metrics[0].resource.name).toBe("cpu");
    expect(podSpecOf(objects.find((object) => object.kind === "Deployment")!)!.containers[0]!.image).toBe(
      "registry.bank.example/vaultpay:2026.12.02",
    );
  });

  it("the NATS Helm values ask for a 3-node JetStream cluster on persistent volumes", () => {
    const values = parse(readFileSync(path.join(K8S_DIR, "nats-values.yaml"), "utf8")) as any;
    expect(values.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(values.config.jetstream).toMatchObject({ enabled: true, fileStore: { enabled: true, pvc: { enabled: true } } });
    // NATS_URL names each process's own user (its Secret), never a shared one in the ConfigMap.
    expect(configMap.NATS_URL).toBeUndefined();
    // Every node holds a copy of every stream (R3): the streams' byte limits fit its volume, or
    // JetStream refuses to make them (insufficient storage).
    const volumeGiB = Number(/^(\d+)Gi$/.exec(values.config.jetstream.fileStore.pvc.size)![1]);
    const limits = streamLimitsOf(
      subgraphConfigSchema.parse({ ...configMap, PORT: "4001", DATABASE_URL: "postgres://db/x", GATEWAY_SECRET: "x".repeat(32) }),
    );
    expect(limits.maxAgeMs).toBe(7 * 24 * 3_600_000);
    expect(Object.keys(STREAMS).length * limits.maxBytes).toBeLessThanOrEqual(0.9 * volumeGiB * 1024 ** 3);
  });

  it("the NATS Helm values hold every VaultPay user with exactly the permissions the stack's own NATS gives it, passwords from a Secret", () => {
    const values = parse(readFileSync(path.join(K8S_DIR, "nats-values.yaml"), "utf8")) as any;
    const users = values.config.merge.authorization.users as Array<{ user: NatsUser; password: string; permissions?: unknown }>;
    expect(users.map((entry) => entry.user)).toEqual([...NATS_USERS]);
    const passwords = Object.fromEntries(users.map((entry) => [entry.user, `<< $${entry.user.toUpperCase()}_NATS_PASSWORD >>`]));
    expect(users).toEqual(natsAuthorization(passwords as Record<NatsUser, string>).users);
    for (const user of NATS_USERS) {
      expect(values.container.env[`${user.toUpperCase()}_NATS_PASSWORD`]).toEqual({
        valueFrom: { secretKeyRef: { name: "vaultpay-nats-users", key: user } },
      });
    }
  });
});

describe("docker-compose.yml", () => {
  const compose = parse(readFileSync(path.join(REPO_ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
    services: Record<string, { environment?: Record<string, string> }>;
  };

  it.each([...SERVICES, "gateway"] as ProcessName[])(
    "%s: every variable it is given is one its config reads, on its default port",
    (name) => {
      const environment = compose.services[name]!.environment!;
      const keys = configKeys(CONFIG_SCHEMAS[name]);
      for (const variable of Object.keys(environment))
        expect(keys.has(variable.replace(/_FILE$/, "")), `${name} reads ${variable}`).toBe(true);
      expect(environment[name === "gateway" ? "GATEWAY_PORT" : "PORT"]).toBe(String(defaultPort(name as ServiceName)));
    },
  );
});
