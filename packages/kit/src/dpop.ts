/**
 * DPoP (RFC 9449) device binding, the parts every service shares. A device is a key pair its
 * client holds; the gateway verifies a proof of it on each request and vouches for the key's
 * thumbprint (`jkt`) to subgraphs in its signed assertion.
 */

/**
 * The device id of a proven device: its key's JWK thumbprint (RFC 7638, SHA-256, base64url), so
 * no client can claim it without the key. Fits the device-id pattern (A-Z a-z 0-9 . _ : -).
 */
export function provenDeviceId(jkt: string): string {
  return `jkt:${jkt}`;
}
