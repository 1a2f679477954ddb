import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";

/** Who acts in a request or event; never carries a secret. */
export interface Actor {
  userId?: string | undefined;
  deviceId?: string | undefined;
  ip?: string | undefined;
}

/** What travels with every unit of work: logged on each line, copied into each event emitted. */
export interface RequestContext {
  correlationId: string;
  /** The event that caused this work, when the work is an event handler. */
  causationId?: string | undefined;
  actor: Actor;
  /**
   * The thumbprint of the DPoP key this request proved holding, as the gateway vouched for it in
   * its signed assertion; undefined for a request without a (valid) proof.
   */
  provenDeviceKey?: string | undefined;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function runWithContext<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

const CORRELATION_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Accepts a caller's correlation id only if it is short and plain, because it is echoed into logs
 * and events; anything else is replaced with a fresh id rather than rejected.
 */
export function correlationIdFrom(header: string | string[] | undefined | null): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value && CORRELATION_ID_PATTERN.test(value) ? value : randomUUID();
}
