// The topology document's signatures, written again in JavaScript from
// docs/topology-document.md (a second implementation of the format, so a
// drift between the Rust code and the document shows up here). The tests use
// it to play a directory operator or a node operator: to sign documents and
// descriptors with keys they made or read from a localnet's data dir.
import { createPrivateKey, createPublicKey, sign, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

export function base58(bytes) {
  let n = 0n;
  for (const b of bytes) n = n * 256n + BigInt(b);
  let out = "";
  while (n > 0n) { out = ALPHABET[Number(n % 58n)] + out; n /= 58n; }
  for (const b of bytes) { if (b !== 0) break; out = "1" + out; }
  return out;
}

/** An ed25519 key from its 32-byte seed (PKCS#8 wrapping of RFC 8410). */
export function keyFromSeed(seed) {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seed)]);
  const privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return { privateKey, publicB58: base58(spki.subarray(spki.length - 32)) };
}

export const randomKey = () => keyFromSeed(randomBytes(32));

/** A node's identity key from its `identity_private.pem` (32 raw bytes). */
export function keyFromPem(path) {
  const body = readFileSync(path, "utf8").split("\n").filter((l) => l && !l.startsWith("-----")).join("");
  return keyFromSeed(Buffer.from(body, "base64"));
}

// Canonical bytes: a tag, then each field as a 4-byte big-endian length and its bytes.
class Canonical {
  constructor(tag) { this.parts = []; this.bytes(Buffer.from(tag)); }
  bytes(b) { const len = Buffer.alloc(4); len.writeUInt32BE(b.length); this.parts.push(len, Buffer.from(b)); return this; }
  str(s) { return this.bytes(Buffer.from(s ?? "", "utf8")); }
  // A JSON number past 2^53 (lastSeen is in nanoseconds) is a rounded
  // double here; JSON.stringify writes its shortest decimal form, and that
  // is the value the reader parses: sign that one.
  u64(n) { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(String(n ?? 0))); return this.bytes(b); }
  // The epoch keys: their count, then each key's epoch (as a u64) and key text.
  epochKeys(keys) {
    this.u64((keys ?? []).length);
    for (const k of keys ?? []) this.u64(k.epoch).str(k.key);
    return this;
  }
  done() { return Buffer.concat(this.parts); }
}

const mixnodeBytes = (m) => new Canonical("nym-mixnode-descriptor/2")
  .str(m.identityKey).str(m.host).str(m.pubKey).epochKeys(m.sphinxKeys).bytes(Buffer.from([m.layer]))
  .str(m.version).str(m.location).u64(m.seq).done();

const gatewayBytes = (g) => new Canonical("nym-gateway-descriptor/2")
  .str(g.identityKey).str(g.clientListener).str(g.mixnetListener).str(g.sphinxKey).epochKeys(g.sphinxKeys)
  .str(g.version).str(g.location).u64(g.seq).done();

// The document: its round, times and parameters, then every descriptor; not
// `signatures` nor `servedBy`.
function topologyBytes(t) {
  const c = new Canonical("nym-topology/3").u64(t.round).u64(t.issuedAt).u64(t.expiresAt).u64(t.epochLengthSecs);
  c.u64(t.mixNodes.length);
  for (const m of t.mixNodes) c.bytes(mixnodeBytes(m)).str(m.signature).u64(m.lastSeen);
  c.u64(t.gatewayNodes.length);
  for (const g of t.gatewayNodes) c.bytes(gatewayBytes(g)).str(g.signature).u64(g.lastSeen);
  return c.done();
}

/** A copy of gateway descriptor `g` signed by `key` (its identity becomes key's). */
export function signGateway(g, key, seq = Date.now()) {
  const out = { ...g, identityKey: key.publicB58, seq, location: g.location ?? "", lastSeen: g.lastSeen ?? 0 };
  out.signature = base58(sign(null, gatewayBytes(out), key.privateKey));
  return out;
}

/** A copy of document `t` issued now, valid for `validityMs`, signed by
 * `keys` (one authority's key, or several), as the first of them serves it. */
export function signTopology(t, keys, validityMs = 300000) {
  keys = Array.isArray(keys) ? keys : [keys];
  const now = Date.now();
  const out = { ...t, round: Math.floor(now / 1000), issuedAt: now, expiresAt: now + validityMs, servedBy: keys[0].publicB58 };
  const bytes = topologyBytes(out);
  out.signatures = keys
    .map((k) => ({ key: k.publicB58, signature: base58(sign(null, bytes, k.privateKey)) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return out;
}
