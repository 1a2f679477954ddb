const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Ids from clients and events are checked before they reach a uuid column: PostgreSQL refuses to
 * cast anything else, and that error would surface as INTERNAL instead of "not found".
 */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/**
 * A uuid as the platform stores and sends it: lower case (PostgreSQL's output form, the form every
 * event and every text column holding an id carries). A uuid names the same thing in either case
 * (RFC 9562), so an id a client sends in upper case is taken in this form before it is compared,
 * hashed or looked up anywhere that compares text. Anything not a uuid is returned as given.
 */
export function canonicalUuid(value: string): string {
  return isUuid(value) ? value.toLowerCase() : value;
}
