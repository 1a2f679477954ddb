import type http from "node:http";
import { BlockList, isIP } from "node:net";

/**
 * Which address is the client's, for rate limits, lockouts and the request log. Behind proxies the
 * socket's peer is the last proxy, and `x-forwarded-for` is a list each proxy appended to — whose
 * left part the client itself may have written. So only hops we trust are peeled off, from the
 * right:
 * - `hops`: exactly this many proxies stand in front (e.g. 1 for one load balancer); the client is
 *   the entry that many places left of the peer. The gateway must be reachable only through them.
 * - `cidrs`: peel while the address belongs to a trusted network (the proxies' subnets); the first
 *   address outside them is the client. Safe even when some clients connect directly.
 * Neither (the default): the socket's peer, and the header is ignored.
 */
export interface TrustedProxies {
  hops: number;
  cidrs: BlockList | undefined;
}

/** Longest x-forwarded-for list read; beyond it the left part is the client's own writing anyway. */
const MAX_FORWARDED_ENTRIES = 32;

function normalize(address: string): string {
  const trimmed = address.trim();
  // IPv4 seen through an IPv6 socket ("::ffff:10.0.0.1") is the IPv4 address.
  return trimmed.startsWith("::ffff:") && isIP(trimmed.slice(7)) === 4 ? trimmed.slice(7) : trimmed;
}

/** Parses `10.0.0.0/8, 2001:db8::/32, 192.168.1.7`; undefined for an empty list, throws on a bad entry. */
export function parseCidrList(text: string | undefined): BlockList | undefined {
  const entries = (text ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (entries.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const [address = "", prefixText] = entry.split("/");
    const family = isIP(address);
    if (family === 0) throw new Error(`"${entry}" is not an IP address or CIDR`);
    const type = family === 4 ? "ipv4" : "ipv6";
    if (prefixText === undefined) {
      list.addAddress(address, type);
      continue;
    }
    const prefix = Number(prefixText);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128))
      throw new Error(`"${entry}" has a bad prefix length`);
    list.addSubnet(address, prefix, type);
  }
  return list;
}

function trusted(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
}

export function clientAddress(request: Pick<http.IncomingMessage, "headers" | "socket">, proxies: TrustedProxies): string {
  const peer = normalize(request.socket.remoteAddress ?? "unknown");
  if (proxies.hops === 0 && !proxies.cidrs) return peer;
  const header = request.headers["x-forwarded-for"];
  const forwarded = (Array.isArray(header) ? header.join(",") : (header ?? ""))
    .split(",")
    .slice(-MAX_FORWARDED_ENTRIES)
    .map(normalize)
    .filter((entry) => isIP(entry) !== 0);
  const chain = [...forwarded, peer];
  if (proxies.cidrs) {
    let index = chain.length - 1;
    while (index > 0 && trusted(proxies.cidrs, chain[index]!)) index--;
    return chain[index]!;
  }
  return chain[Math.max(0, chain.length - 1 - proxies.hops)]!;
}
