const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Ids from clients and events are checked before they reach a uuid column: PostgreSQL refuses to
 * cast anything else, and that error would surface as INTERNAL instead of "not found".
 */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
