import { describe, expect, it } from "vitest";
import { clientAddress, parseCidrList } from "./client-address.ts";

const request = (peer: string, forwarded?: string) =>
  ({ socket: { remoteAddress: peer }, headers: forwarded === undefined ? {} : { "x-forwarded-for": forwarded } }) as never;

describe("client address behind proxies", () => {
  it("ignores x-forwarded-for unless proxies are trusted", () => {
    expect(clientAddress(request("203.0.113.9", "1.2.3.4"), { hops: 0, cidrs: undefined })).toBe("203.0.113.9");
    expect(clientAddress(request("::ffff:203.0.113.9"), { hops: 0, cidrs: undefined })).toBe("203.0.113.9");
  });

  it("with N trusted hops takes the entry N places left of the peer, whatever the client prepended", () => {
    const oneHop = { hops: 1, cidrs: undefined };
    // Client 198.51.100.7 wrote a fake 1.2.3.4; the load balancer (peer 10.0.0.2) appended the real address.
    expect(clientAddress(request("10.0.0.2", "1.2.3.4, 198.51.100.7"), oneHop)).toBe("198.51.100.7");
    expect(clientAddress(request("10.0.0.3", "1.2.3.4, 198.51.100.7, 10.0.0.2"), { hops: 2, cidrs: undefined })).toBe("198.51.100.7");
    expect(clientAddress(request("10.0.0.2", "not-an-ip, 198.51.100.7"), oneHop)).toBe("198.51.100.7");
    expect(clientAddress(request("10.0.0.2"), oneHop)).toBe("10.0.0.2");
  });

  it("with trusted networks peels only addresses inside them", () => {
    const cidrs = { hops: 0, cidrs: parseCidrList("10.0.0.0/8, fd00::/8") };
    expect(clientAddress(request("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.1.1.1"), cidrs)).toBe("198.51.100.7");
    // A client connecting directly cannot choose its address by writing the header.
    expect(clientAddress(request("198.51.100.8", "1.2.3.4"), cidrs)).toBe("198.51.100.8");
    expect(clientAddress(request("fd00::1", "2001:db8::5"), cidrs)).toBe("2001:db8::5");
    expect(() => parseCidrList("10.0.0.0/33")).toThrow(/bad prefix/);
    expect(() => parseCidrList("example.com")).toThrow(/not an IP/);
    expect(parseCidrList(" ")).toBeUndefined();
  });
});
