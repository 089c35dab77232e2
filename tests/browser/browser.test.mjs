// The browser client in real headless Chromium against a localnet started
// here on free ports. Run through ./run.sh (it builds and installs the
// package and the binaries first).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { createServer as createTcpServer, connect as tcpConnect } from "node:net";
import {
  startLocalnet, startPageServer, launchBrowser, openDemo, readyAddress, waitInPage,
  binary, tempDir, freePort, spawnUntil, cleanup, readRecord, readRecordText, databases,
} from "./lib.mjs";
import { keyFromPem, randomKey, signGateway, signTopology } from "./signing.mjs";
import { join } from "node:path";
import { mkdirSync, existsSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { HERE, ROOT } from "./lib.mjs";
import { startBenchServer, measureMainThread } from "./mainthread.mjs";

// Screenshots of the page under test (git-ignored; CI keeps them as artifacts).
const ARTIFACTS = join(HERE, "artifacts");

const ADDRESS = /^[1-9A-HJ-NP-Za-km-z]{32,44}@[1-9A-HJ-NP-Za-km-z]{32,44}$/;
let directory, localnetData, baseUrl, context;

before(async () => {
  let localnet;
  [localnet, baseUrl] = await Promise.all([startLocalnet(), startPageServer()]);
  ({ url: directory, data: localnetData } = localnet);
  context = await launchBrowser();
}, { timeout: 120000 });

after(async () => { await cleanup(); });

// Fast mode: no mixing delay, no throttling (the engine defaults get their own test).
const fast = (id) => ({ directory, id, fast: "1", probes: "0" });

test("the demo page loads, starts a client and shows its address", { timeout: 60000 }, async () => {
  const { page, address, errors } = await openDemo(context, baseUrl, fast("load"));
  assert.match(address, ADDRESS);
  assert.equal(await page.textContent("#address"), address);
  assert.match(await page.textContent("#status"), /^connected/);
  assert.equal(await page.evaluate(() => window.nymClient.isConnected()), true);
  assert.deepEqual(errors, []);
  await page.close();
});

test("text and binary sent to itself arrive through the mixnet, byte-exact", { timeout: 60000 }, async () => {
  const { page, address } = await openDemo(context, baseUrl, fast("loop"));
  const result = await page.evaluate(async (me) => {
    const client = window.nymClient;
    const text = "héllo mixnet ✓ " + "x".repeat(100);
    // 5000 random bytes (three fragments), with bytes that are never valid UTF-8.
    const binary = crypto.getRandomValues(new Uint8Array(5000));
    binary[0] = 0xff; binary[1] = 0xfe;
    const before = window.nymMessages.length;
    await client.send(me, text);
    await client.send(me, binary);
    const deadline = performance.now() + 30000;
    while (window.nymMessages.length < before + 2 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const got = window.nymMessages.slice(before);
    const gotText = got.find((m) => typeof m === "string");
    const gotBinary = got.find((m) => m instanceof Uint8Array);
    return {
      count: got.length,
      textEqual: gotText === text,
      binaryEqual: !!gotBinary && gotBinary.length === binary.length && gotBinary.every((b, i) => b === binary[i]),
      binaryLength: gotBinary?.length,
      stats: client.stats(),
    };
  }, address);
  assert.equal(result.count, 2, `messages received: ${JSON.stringify(result)}`);
  assert.ok(result.textEqual, "the text message arrived unchanged, as a string");
  assert.ok(result.binaryEqual, `the binary message arrived byte-exact as a Uint8Array (${result.binaryLength} bytes)`);
  assert.equal(result.stats.messagesReceived, 2);
  // A binary message shows up as a download link on the page.
  const link = await page.waitForSelector("#log a[download]");
  assert.match(await link.textContent(), /5000 bytes/);
  await page.close();
});

test("the demo's loop button and file input work", { timeout: 60000 }, async () => {
  const { page } = await openDemo(context, baseUrl, fast("ui"));
  await page.click("#ping");
  await page.waitForFunction(() => /arrived after \d+ ms/.test(document.querySelector("#ping-result").textContent), null, { timeout: 30000 });
  const bytes = Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255]);
  await page.setInputFiles("#file", { name: "tiny.bin", mimeType: "application/octet-stream", buffer: bytes });
  await page.click("#send-file"); // empty recipient: to itself
  const link = await page.waitForSelector("#log a[download]", { timeout: 30000 });
  const href = await link.getAttribute("href");
  const downloaded = await page.evaluate(async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer())), href);
  assert.deepEqual(downloaded, Array.from(bytes));
  await page.close();
});

test("the engine defaults (mixing delays, Poisson sending, cover traffic) deliver too", { timeout: 60000 }, async () => {
  const { page, address } = await openDemo(context, baseUrl, { directory, ephemeral: "1" });
  await page.evaluate((me) => window.nymClient.send(me, "with default delays"), address);
  await waitInPage(page, () => window.nymMessages.includes("with default delays"));
  // Cover traffic flows with the defaults: loop cover packets go out and come back.
  const stats = await waitInPage(page, () => {
    const s = window.nymClient.stats();
    return s.coverPacketsSent > 3 && s.coverPacketsReceived > 0 ? s : null;
  });
  assert.ok(stats.coverPacketsSent > 3);
  await page.close();
});

test("errors reject with a message that says what happened", { timeout: 60000 }, async () => {
  const { page, address } = await openDemo(context, baseUrl, fast("errors"));
  const deadPort = await freePort();
  const errors = await page.evaluate(async ({ directory, deadPort, me }) => {
    const { NymClient } = await import("nym-client-wasm");
    const message = async (p) => { try { await p; return "resolved"; } catch (e) { return e instanceof Error ? e.message : `not an Error: ${e}`; } };
    const client = window.nymClient;
    return {
      badAddress: await message(client.send("not-an-address", "x")),
      badKey: await message(client.send("0OIl@0OIl", "x")),
      unknownGateway: await message(client.send(me.split("@")[0] + "@" + me.split("@")[0], "x")),
      badMessage: await message(client.send(me, 42)),
      noDirectory: await message(NymClient.start(`http://127.0.0.1:${deadPort}`, { ephemeral: true })),
      badDirectoryUrl: await message(NymClient.start("ftp://nowhere", { ephemeral: true })),
      noSuchGateway: await message(NymClient.start(directory, { ephemeral: true, gateway: me.split("@")[0] })),
      badOption: await message(NymClient.start(directory, { ephemeral: true, averagePacketDelayMs: -1 })),
    };
  }, { directory, deadPort, me: address });
  assert.match(errors.badAddress, /invalid address: missing '@'/);
  assert.match(errors.badKey, /invalid address: client key is not valid base58/);
  assert.match(errors.unknownGateway, /no route: .*not in the network topology/);
  assert.match(errors.badMessage, /must be a string or a Uint8Array/);
  assert.match(errors.noDirectory, /cannot reach the directory at http:\/\/127\.0\.0\.1:\d+\/api\/presence\/topology/);
  assert.match(errors.badDirectoryUrl, /must start with http/);
  assert.match(errors.noSuchGateway, /gateway \S+ is not in the directory's topology/);
  assert.match(errors.badOption, /averagePacketDelayMs must be a number/);
  // After stop, sending is refused.
  const stopped = await page.evaluate(async (me) => {
    await window.nymClient.stop();
    try { await window.nymClient.send(me, "x"); return "resolved"; } catch (e) { return e.message; }
  }, address);
  assert.match(stopped, /the client is stopped/);
  await page.close();
});

test("start rejects when the directory has no gateway, the gateway is unreachable or is not who the topology says, or the topology is not to be believed", { timeout: 60000 }, async () => {
  const real = await (await fetch(`${directory}/api/presence/topology`)).json();
  assert.ok(real.gatewayNodes.length >= 2, "the localnet has two gateways");
  const [g0, g1] = real.gatewayNodes;
  const deadPort = await freePort();
  // The test's own directory key (the client trusts it on first use), and
  // gateway identities of its own: it can sign what it makes, not what the
  // localnet's nodes made.
  const dirKey = randomKey();
  const dead = randomKey();
  const impostor = randomKey();
  const variants = {
    nogateway: signTopology({ ...real, gatewayNodes: [] }, dirKey),
    deadgateway: signTopology({ ...real, gatewayNodes: [signGateway({ ...g0, clientListener: `ws://127.0.0.1:${deadPort}` }, dead)] }, dirKey),
    // Signed by an identity of its own, but g1 answers: the handshake's signature check must fail.
    impostor: signTopology({ ...real, gatewayNodes: [signGateway({ ...g0, clientListener: g1.clientListener }, impostor)] }, dirKey),
    // g0's entry pointed at g1 without g0's key, in a document the directory signed.
    forged: signTopology({ ...real, gatewayNodes: [{ ...g0, clientListener: g1.clientListener }] }, dirKey),
    unsigned: { ...real, signatures: [] },
    real: real,
  };
  const fake = createServer((req, res) => {
    const body = variants[req.url.split("/")[1]];
    res.writeHead(body ? 200 : 500, { "access-control-allow-origin": "*", "content-type": "application/json" });
    res.end(body ? JSON.stringify(body) : "broken");
  });
  await new Promise((r) => fake.listen(0, "127.0.0.1", r));
  const fakeUrl = `http://127.0.0.1:${fake.address().port}`;
  try {
    const { page } = await openDemo(context, baseUrl, fast("fake-dir"));
    const errors = await page.evaluate(async ({ fakeUrl, directory, dead, impostor, other }) => {
      const { NymClient } = await import("nym-client-wasm");
      const message = async (p) => { try { await p; return "resolved"; } catch (e) { return e instanceof Error ? e.message : `not an Error: ${e}`; } };
      const start = (name, options = {}) => message(NymClient.start(`${fakeUrl}/${name}`, { ephemeral: true, connectTimeoutMs: 10000, ...options }));
      return {
        nogateway: await start("nogateway"),
        deadgateway: await start("deadgateway", { gateway: dead }),
        impostor: await start("impostor", { gateway: impostor }),
        forged: await start("forged"),
        unsigned: await start("unsigned"),
        broken: await start("broken"),
        wrongKey: await message(NymClient.start(directory, { ephemeral: true, directoryKey: other })),
      };
    }, { fakeUrl, directory, dead: dead.publicB58, impostor: impostor.publicB58, other: dirKey.publicB58 });
    assert.match(errors.nogateway, /invalid topology: no usable gateway/);
    assert.match(errors.deadgateway, /the connection to the gateway at ws:\/\/127\.0\.0\.1:\d+ closed before the handshake completed/);
    assert.match(errors.impostor, /handshake failed: gateway signature does not match its identity key/);
    assert.match(errors.forged, /invalid topology: gateway \S+: the signature does not verify/);
    assert.match(errors.unsigned, /invalid topology: the topology is not signed/);
    assert.match(errors.broken, /answered HTTP 500/);
    assert.match(errors.wrongKey, new RegExp(`the topology is not signed by the pinned directory key ${dirKey.publicB58}`));
    await page.close();
  } finally {
    fake.close();
  }
});

test("the directory key is pinned: given, or learned on first use and kept with the identity", { timeout: 60000 }, async () => {
  const real = await (await fetch(`${directory}/api/presence/topology`)).json();
  const { page } = await openDemo(context, baseUrl, fast("pin"));
  assert.equal(await readRecordText(page, "pin", "directory-key"), real.servedBy);
  const other = randomKey().publicB58;
  const results = await page.evaluate(async ({ directory, key, other }) => {
    const { NymClient, forgetIdentity } = await import("nym-client-wasm");
    const message = async (p) => { try { const c = await p; await c.stop(); return "resolved"; } catch (e) { return e.message; } };
    const pinned = await message(NymClient.start(directory, { ephemeral: true, directoryKey: key }));
    // A key kept with an identity is used at the next start, like a pinned one:
    // an identity of the localStorage version, with another key, migrated at start.
    const donor = await NymClient.start(directory, { storageKey: "pin-donor", averagePacketDelayMs: 0, averageHopDelayMs: 0 });
    await donor.stop();
    const identity = await new Promise((res, rej) => {
      const r = indexedDB.open("nym-client-wasm/pin-donor");
      r.onerror = () => rej(r.error);
      r.onsuccess = () => {
        const get = r.result.transaction("records").objectStore("records").get("identity");
        get.onsuccess = () => { r.result.close(); res(new TextDecoder().decode(get.result)); };
        get.onerror = () => rej(get.error);
      };
    });
    await forgetIdentity("pin-donor");
    localStorage.setItem("nym-client-wasm/pin-other", identity);
    localStorage.setItem("nym-client-wasm/pin-other/directory-key", other);
    const kept = await message(NymClient.start(directory, { storageKey: "pin-other" }));
    await forgetIdentity("pin-other");
    const forgotten = localStorage.getItem("nym-client-wasm/pin-other/directory-key");
    const databases = (await indexedDB.databases()).map((d) => d.name);
    return { pinned, kept, forgotten, databases };
  }, { directory, key: real.servedBy, other });
  assert.equal(results.pinned, "resolved");
  assert.match(results.kept, /not signed by the pinned directory key/);
  assert.equal(results.forgotten, null);
  assert.ok(!results.databases.includes("nym-client-wasm/pin-other"), `forgetIdentity deleted the database: ${results.databases}`);
  await page.close();
});

test("the browser client verifies a 3-authority document, fails over past a silent authority, and refuses one with 1 signature", { timeout: 90000 }, async () => {
  // The localnet's nodes and gateways (their descriptors signed by them), in
  // documents signed by 3 authorities of the test's own, served from here:
  // /good/aN by all three; /lone/aN by the first alone; /good/a1 of the
  // "silent" network answers 500 (down).
  const real = await (await fetch(`${directory}/api/presence/topology`)).json();
  const keys = [randomKey(), randomKey(), randomKey()];
  const documents = { good: signTopology(real, keys), lone: signTopology(real, [keys[0]]) };
  const fake = createServer((req, res) => {
    const [, variant, authority] = req.url.split("/");
    const down = variant === "silent" && authority === "a1";
    const body = documents[variant === "silent" ? "good" : variant];
    res.writeHead(body && !down ? 200 : 500, { "access-control-allow-origin": "*", "content-type": "application/json" });
    res.end(body && !down ? JSON.stringify({ ...body, servedBy: keys[Number(authority?.slice(1)) - 1]?.publicB58 ?? "" }) : "down");
  });
  await new Promise((r) => fake.listen(0, "127.0.0.1", r));
  const fakeUrl = `http://127.0.0.1:${fake.address().port}`;
  const authorities = (variant) => keys.map((k, i) => ({ url: `${fakeUrl}/${variant}/a${i + 1}`, key: k.publicB58 }));
  try {
    const { page } = await openDemo(context, baseUrl, fast("authorities"));
    const results = await page.evaluate(async ({ good, silent, lone }) => {
      const { NymClient } = await import("nym-client-wasm");
      const message = async (p) => { try { await p; return "resolved"; } catch (e) { return e instanceof Error ? e.message : `not an Error: ${e}`; } };
      const fastOptions = { ephemeral: true, averagePacketDelayMs: 0, averageHopDelayMs: 0 };
      const client = await NymClient.start(good, fastOptions);
      const address = client.selfAddress();
      const got = new Promise((resolve) => client.onMessage((m) => resolve(m)));
      await client.send(address, "signed by 3 of 3");
      const delivered = await Promise.race([got, new Promise((r) => setTimeout(() => r("nothing within 30 s"), 30000))]);
      const stats = client.stats();
      await client.stop();
      const survivor = await NymClient.start(silent, fastOptions);
      const survived = { connected: survivor.isConnected(), from: survivor.stats().lastAuthority };
      await survivor.stop();
      return {
        delivered,
        lastAuthority: stats.lastAuthority,
        survived,
        lone: await message(NymClient.start(lone, { ephemeral: true })),
        loneThresholdOne: await message(NymClient.start(lone, { ephemeral: true, threshold: 1 }).then((c) => c.stop())),
        badKey: await message(NymClient.start([{ url: good[0].url, key: "nope" }], { ephemeral: true })),
        badThreshold: await message(NymClient.start(good, { ephemeral: true, threshold: 4 })),
        keyAndList: await message(NymClient.start(good, { ephemeral: true, directoryKey: good[0].key })),
        notAList: await message(NymClient.start({ url: good[0].url }, { ephemeral: true })),
      };
    }, { good: authorities("good"), silent: authorities("silent"), lone: authorities("lone") });
    assert.equal(results.delivered, "signed by 3 of 3");
    assert.ok(authorities("good").some((a) => a.url === results.lastAuthority), results.lastAuthority);
    assert.equal(results.survived.connected, true);
    assert.notEqual(results.survived.from, authorities("silent")[0].url, "not from the silent authority");
    assert.match(results.lone, /1 valid signature by the 3 pinned authorities; 2 needed/);
    assert.equal(results.loneThresholdOne, "resolved", "threshold 1 believes the first authority alone");
    assert.match(results.badKey, /authorities\[0\]\.key/);
    assert.match(results.badThreshold, /threshold 4 is not between 1 and the 3 authorities/);
    assert.match(results.keyAndList, /directoryKey goes with one directory URL/);
    assert.match(results.notAList, /the directory's URL or a list of authorities/);
    await page.close();
  } finally {
    fake.close();
  }
});

test("a lost gateway connection is reported, the client reconnects and keeps working", { timeout: 90000 }, async () => {
  const real = await (await fetch(`${directory}/api/presence/topology`)).json();
  const g0 = real.gatewayNodes[0];
  const target = new URL(g0.clientListener);
  // A TCP proxy in front of the gateway's client listener that the test can cut.
  const sockets = new Set();
  const proxy = createTcpServer((down) => {
    const up = tcpConnect(Number(target.port), target.hostname);
    for (const s of [down, up]) { sockets.add(s); s.on("error", () => {}); s.on("close", () => sockets.delete(s)); }
    down.pipe(up); up.pipe(down);
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  // The test plays g0's operator (its key is in the localnet's data dir) and
  // a directory of its own, to point g0's entry at the proxy.
  const g0key = [0, 1].map((n) => keyFromPem(join(localnetData, `gateway-${n}`, "identity_private.pem"))).find((k) => k.publicB58 === g0.identityKey);
  assert.ok(g0key, "g0's identity key is in the localnet's data dir");
  const proxied = signGateway({ ...g0, clientListener: `ws://127.0.0.1:${proxy.address().port}` }, g0key);
  const topology = signTopology({ ...real, gatewayNodes: [proxied, ...real.gatewayNodes.slice(1)] }, randomKey());
  const fake = createServer((req, res) => {
    res.writeHead(200, { "access-control-allow-origin": "*", "content-type": "application/json" }).end(JSON.stringify(topology));
  });
  await new Promise((r) => fake.listen(0, "127.0.0.1", r));
  try {
    const { page, address } = await openDemo(context, baseUrl, { directory: `http://127.0.0.1:${fake.address().port}`, ephemeral: "1", fast: "1", gateway: g0.identityKey });
    assert.ok(address.endsWith(`@${g0.identityKey}`));
    await page.evaluate(() => {
      window.nymErrors = [];
      window.nymLost = [];
      window.nymClient.onError((e) => window.nymErrors.push(e.message));
      window.nymClient.onEvent((e) => { if (e.type === "disconnected") window.nymLost.push(e.message); });
    });
    for (const s of sockets) s.destroy(); // cut the connection under the client
    const lost = await waitInPage(page, () => window.nymLost.find((m) => m.includes("lost the connection")));
    assert.match(lost, /lost the connection to the gateway at ws:\/\/127\.0\.0\.1:\d+ \(code \d+\); reconnecting in \d+ ms/);
    await waitInPage(page, () => window.nymClient.isConnected());
    await page.evaluate((me) => window.nymClient.send(me, "after reconnect"), address);
    await waitInPage(page, () => window.nymMessages.includes("after reconnect"));
    // onError hears what the core says applications hear (as native ones): a lost connection is for onEvent.
    assert.deepEqual(await page.evaluate(() => window.nymErrors), []);
    await page.close();
  } finally {
    for (const s of sockets) s.destroy();
    proxy.close();
    fake.close();
  }
});

test("a reload keeps the address (identity in IndexedDB); ephemeral does not", { timeout: 60000 }, async () => {
  const { page, address } = await openDemo(context, baseUrl, fast("reload"));
  assert.equal(await page.evaluate(() => window.nymClient.inWorker), true, "the engine runs in a worker by default");
  const saved = JSON.parse(await readRecordText(page, "reload", "identity"));
  assert.match(saved.privatePem, /-----BEGIN X25519 PRIVATE KEY-----/);
  assert.match(saved.publicPem, /-----BEGIN X25519 PUBLIC KEY-----/);
  assert.equal(saved.gateway, address.split("@")[1]);
  await page.reload();
  const again = await readyAddress(page);
  assert.equal(again, address);
  // And the reloaded client still receives at that address.
  await page.evaluate((me) => window.nymClient.send(me, "after reload"), again);
  await waitInPage(page, () => window.nymMessages.includes("after reload"));
  const eph = await openDemo(context, baseUrl, { ...fast("reload"), ephemeral: "1" });
  assert.notEqual(eph.address, address);
  await eph.page.close();
  await page.close();
});

test("a message that arrives before onMessage is registered is kept across a reload and delivered once", { timeout: 90000 }, async () => {
  const sender = await openDemo(context, baseUrl, fast("keep-sender"));
  const { page } = await openDemo(context, baseUrl, fast("keep-host"));
  const options = { storageKey: "kept", averagePacketDelayMs: 0, averageHopDelayMs: 0 };
  // A second client in the page, with no onMessage callback.
  const to = await page.evaluate(async ([dir, options]) => {
    const { NymClient } = await import("nym-client-wasm");
    window.kept = await NymClient.start(dir, options);
    return window.kept.selfAddress();
  }, [directory, options]);
  await sender.page.evaluate((to) => window.nymClient.send(to, "kept for later"), to);
  // Received with nobody to hand it to: saved, then acknowledged to the gateway.
  await waitInPage(page, () => window.kept.stats().messagesReceived >= 1);
  // (the store write settles before the gateway hears the ack; poll for it)
  let saved = null;
  for (let i = 0; i < 50 && !(saved?.length > 0); i++) {
    saved = await readRecord(page, "kept", "received");
    if (!(saved?.length > 0)) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(saved && saved.length > 0, "kept in IndexedDB");
  // The page goes away before anyone read it; the same identity comes back.
  await page.reload();
  await readyAddress(page);
  const got = await page.evaluate(async ([dir, options]) => {
    const { NymClient } = await import("nym-client-wasm");
    const client = await NymClient.start(dir, options);
    const got = [];
    client.onMessage((m) => got.push(m));
    // the gateway may deliver it again (if the ack was still in flight): it must not show twice
    await new Promise((r) => setTimeout(r, 3000));
    await client.stop();
    return { address: client.selfAddress(), got };
  }, [directory, options]);
  assert.equal(got.address, to);
  assert.deepEqual(got.got, ["kept for later"]);
  await sender.page.close();
  await page.close();
});

test("two browser clients chat through the mixnet", { timeout: 60000 }, async () => {
  const a = await openDemo(context, baseUrl, fast("alice"));
  const b = await openDemo(context, baseUrl, fast("bob"));
  assert.notEqual(a.address, b.address);
  // Through the demo's chat form.
  await a.page.fill("#recipient", b.address);
  await a.page.fill("#message", "hi bob");
  await a.page.click("#send");
  await waitInPage(b.page, () => window.nymMessages.includes("hi bob"));
  await b.page.evaluate((to) => window.nymClient.send(to, "hi alice"), a.address);
  await waitInPage(a.page, () => window.nymMessages.includes("hi alice"));
  await a.page.close();
  await b.page.close();
});

test("anonymous messages: the recipient sees a sender tag, replies with it, also after a reload", { timeout: 120000 }, async () => {
  const a = await openDemo(context, baseUrl, fast("anon-alice"));
  const b = await openDemo(context, baseUrl, fast("anon-bob"));
  assert.notEqual(a.address, b.address);
  await a.page.evaluate((to) => window.nymClient.sendAnonymous(to, "hello, guess who", 3), b.address);
  const got = await waitInPage(b.page, () => {
    const r = window.nymReceived.find((r) => r.message === "hello, guess who");
    return r ? { tagType: typeof r.senderTag, senderTag: r.senderTag ?? null } : null;
  });
  assert.equal(got.tagType, "string");
  assert.match(got.senderTag, /^[1-9A-HJ-NP-Za-km-z]{16,24}$/);
  // Bob never learns Alice's address: not in what onMessage got, not on his page.
  const [aliceKey, aliceGateway] = a.address.split("@");
  const bobSaw = await b.page.evaluate(() => JSON.stringify(window.nymReceived) + document.body.textContent);
  assert.ok(!bobSaw.includes(aliceKey), "Alice's client key reached Bob");
  assert.ok(!got.senderTag.includes(aliceKey) && !got.senderTag.includes(aliceGateway));
  // Bob's reply reaches Alice, as a plain message (no tag).
  await b.page.evaluate((tag) => window.nymClient.reply(tag, "reply one"), got.senderTag);
  const first = await waitInPage(a.page, () => {
    const r = window.nymReceived.find((r) => r.message === "reply one");
    return r ? { tagType: typeof r.senderTag } : null;
  });
  assert.equal(first.tagType, "undefined");
  // The reply store is in IndexedDB next to Bob's identity...
  const stored = await readRecord(b.page, "anon-bob", "replies");
  assert.ok(stored && stored.length > 100, `reply store in IndexedDB: ${stored?.length} bytes`);
  // ...so after a reload Bob can still answer with the SURBs left.
  await b.page.reload();
  assert.equal(await readyAddress(b.page), b.address);
  await b.page.evaluate((tag) => window.nymClient.reply(tag, "reply two, after a reload"), got.senderTag);
  const second = await waitInPage(a.page, () => {
    const r = window.nymReceived.find((r) => r.message === "reply two, after a reload");
    return r ? { tagType: typeof r.senderTag } : null;
  });
  assert.equal(second.tagType, "undefined");
  // Unknown, malformed and missing tags, and bad SURB counts, reject with what's wrong.
  const errors = await b.page.evaluate(async (to) => {
    const message = async (p) => { try { await p; return "resolved"; } catch (e) { return e instanceof Error ? e.message : `not an Error: ${e}`; } };
    const client = window.nymClient;
    return {
      unknownTag: await message(client.reply("1".repeat(16), "x")),
      malformedTag: await message(client.reply("not-a-tag!", "x")),
      noTag: await message(client.reply(undefined, "x")),
      badSurbs: await message(client.sendAnonymous(to, "x", -1)),
      tooManySurbs: await message(client.sendAnonymous(to, "x", 201)),
      badRecipient: await message(client.sendAnonymous("nobody", "x")),
    };
  }, a.address);
  assert.match(errors.unknownTag, /unknown sender tag: 1111111111111111/);
  assert.match(errors.malformedTag, /unknown sender tag: 'not-a-tag!' is not base58/);
  assert.match(errors.noTag, /the sender tag must be a string/);
  assert.match(errors.badSurbs, /replySurbs must be a whole number/);
  assert.match(errors.tooManySurbs, /too large|200/);
  assert.match(errors.badRecipient, /invalid address: missing '@'/);
  // Alice can also send anonymously with the default number of SURBs (10).
  await a.page.evaluate((to) => window.nymClient.sendAnonymous(to, "default surbs"), b.address);
  const third = await waitInPage(b.page, () => window.nymReceived.find((r) => r.message === "default surbs")?.senderTag);
  assert.equal(third, got.senderTag, "the sender tag is stable per (sender, recipient)");
  await a.page.close();
  await b.page.close();
});

// Needs the engine's message ids (issue 21: wasm send/sendAnonymous/reply
// resolve to the id a later sendFailed event names); the JS passes through
// whatever the engine resolves, in both modes. TODO(merge): until the wasm
// change is in, the engine resolves undefined and this fails as a todo
// (reported, not counted); once merged, delete `todo` so it counts.
for (const worker of [true, false]) {
  test(`send, sendAnonymous and reply resolve to the message's id (${worker ? "in a worker" : "in the page"})`, { timeout: 90000 }, async () => {
    const mode = worker ? {} : { worker: "0" };
    const a = await openDemo(context, baseUrl, { ...fast(`ids-a-${worker}`), ...mode });
    const b = await openDemo(context, baseUrl, { ...fast(`ids-b-${worker}`), ...mode });
    assert.equal(await a.page.evaluate(() => window.nymClient.inWorker), worker);
    const sent = await a.page.evaluate(async (to) => {
      const client = window.nymClient;
      return [await client.send(to, "id one"), await client.sendAnonymous(to, "id two", 2), await client.send(to, new Uint8Array([1, 2]))];
    }, b.address);
    const tag = await waitInPage(b.page, () => window.nymReceived.find((r) => r.message === "id two")?.senderTag);
    const replied = await b.page.evaluate((tag) => window.nymClient.reply(tag, "id three"), tag);
    await waitInPage(a.page, () => window.nymMessages.includes("id three"));
    for (const id of [...sent, replied]) assert.equal(typeof id, "number", `a message id: ${JSON.stringify([...sent, replied])}`);
    assert.equal(new Set(sent).size, 3, `one id per message: ${sent}`);
    await a.page.close();
    await b.page.close();
  });
}

test("a browser client and a native client exchange messages both ways", { timeout: 120000 }, async (t) => {
  const nym = binary("nym-client");
  const probe = nym && spawnSync(nym, ["--help"], { encoding: "utf8" });
  if (!nym || probe.status !== 0 || !/init/.test(probe.stdout)) {
    t.skip("SKIPPED: the native nym-client binary is not built (cargo build -p nym-client); browser<->native not tested");
    return;
  }
  const home = tempDir("nym-native-home-");
  const port = await freePort();
  const env = { HOME: home, RUST_LOG: "info" };
  const init = spawnSync(nym, ["init", "--id", "native", "--directory", directory, "--port", String(port)], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 60000 });
  assert.equal(init.status, 0, `nym-client init failed:\n${init.stdout}\n${init.stderr}`);
  await spawnUntil(nym, ["run", "--id", "native", "--port", String(port)], {
    ready: /authenticated with the gateway/, env, name: "nym-client", timeoutMs: 60000,
  });
  const { page, address } = await openDemo(context, baseUrl, fast("native-peer"));
  const result = await page.evaluate(async ({ port, me }) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    const inbox = [];
    const waiters = [];
    ws.onmessage = (e) => { inbox.push(e.data); waiters.splice(0).forEach((w) => w()); };
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error("cannot connect to the native client's websocket")); });
    const next = async (pred, ms = 30000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = inbox.findIndex(pred);
        if (i >= 0) return inbox.splice(i, 1)[0];
        if (Date.now() > deadline) throw new Error(`timed out; native websocket got: ${JSON.stringify(inbox)}`);
        await new Promise((r) => { waiters.push(r); setTimeout(r, 100); });
      }
    };
    ws.send(JSON.stringify({ type: "selfAddress" }));
    const nativeAddress = JSON.parse(await next((d) => typeof d === "string" && d.includes("selfAddress"))).address;
    // browser -> native
    await window.nymClient.send(nativeAddress, "hello native, from the browser");
    const atNative = await next((d) => d === "hello native, from the browser");
    // native -> browser
    ws.send(JSON.stringify({ type: "send", message: "hello browser, from native", recipient: me }));
    const deadline = performance.now() + 30000;
    while (!window.nymMessages.includes("hello browser, from native") && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    ws.close();
    return { nativeAddress, atNative, atBrowser: window.nymMessages.includes("hello browser, from native") };
  }, { port, me: address });
  assert.match(result.nativeAddress, ADDRESS);
  assert.equal(result.atNative, "hello native, from the browser");
  assert.ok(result.atBrowser, "the native client's message reached the browser");
  await page.close();
});

test("the demo draws the topology's layers, nodes and gateways, and its counters and latency histogram move", { timeout: 90000 }, async () => {
  const real = await (await fetch(`${directory}/api/presence/topology`)).json();
  const { page, address, errors } = await openDemo(context, baseUrl, { directory, id: "picture", fast: "1" });
  await page.waitForSelector("#network circle.mixnode");
  const drawn = await page.evaluate(() => ({
    layers: [1, 2, 3].map((l) => Array.from(document.querySelectorAll(`#network circle[data-layer="${l}"]`), (c) => c.dataset.node).sort()),
    gateways: Array.from(document.querySelectorAll("#network circle.gateway"), (c) => c.dataset.gateway),
    ours: Array.from(document.querySelectorAll("#network circle.gateway.ours"), (c) => c.dataset.gateway),
  }));
  for (const l of [1, 2, 3]) {
    const expected = real.mixNodes.filter((n) => n.layer === l).map((n) => n.host).sort();
    assert.ok(expected.length > 0);
    assert.deepEqual(drawn.layers[l - 1], expected, `layer ${l}: every mixnode of the topology, and no other`);
  }
  // Gateways as entry and exit columns.
  assert.deepEqual([...new Set(drawn.gateways)].sort(), real.gatewayNodes.map((g) => g.identityKey).sort());
  assert.equal(drawn.gateways.length, 2 * real.gatewayNodes.length);
  assert.deepEqual(drawn.ours, [address.split("@")[1], address.split("@")[1]]);
  // Traffic: send a few messages to itself; the counters and the histogram follow.
  const before = await page.evaluate(() => Number(document.querySelector("#real-sent").textContent));
  await page.evaluate(async (me) => { for (let i = 0; i < 5; i++) await window.nymClient.send(me, `counter ${i} ` + "x".repeat(3000)); }, address);
  await waitInPage(page, () => window.nymMessages.filter((m) => typeof m === "string" && m.startsWith("counter ")).length === 5);
  const counters = await waitInPage(page, (before) => {
    const n = (id) => Number(document.getElementById(id).textContent);
    const c = { real: n("real-sent"), acks: n("acks"), packetsIn: n("packets-in"), messagesIn: n("messages-in") };
    return c.real >= before + 10 && c.acks >= 10 && c.messagesIn >= 5 ? c : null;
  }, before, 15000);
  assert.ok(counters.real >= before + 10);
  // A packet crossed the picture, and a loop message (the page's own probes) landed in the histogram.
  await waitInPage(page, () => document.querySelector("#network .packet.real") !== null, undefined, 15000);
  await waitInPage(page, () => window.nymLatencies.length >= 2 && document.querySelectorAll("#latency rect").length > 0, undefined, 20000);
  assert.match(await page.textContent("#latency-summary"), /\d+ loop messages: median \d+ ms/);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "demo.png"), fullPage: true });
  // Usable on a phone-sized screen: nothing wider than the viewport, the picture fits.
  await page.setViewportSize({ width: 390, height: 844 });
  const phone = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    network: document.querySelector("#network").getBoundingClientRect().width,
    send: document.querySelector("#send").getBoundingClientRect().right,
  }));
  assert.ok(phone.scroll <= 390, `page width on a phone: ${phone.scroll}px`);
  assert.ok(phone.network > 250 && phone.network <= 390, `network picture width on a phone: ${phone.network}px`);
  assert.ok(phone.send <= 390);
  await page.screenshot({ path: join(ARTIFACTS, "demo-phone.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test("the demo's reply button answers an anonymous message", { timeout: 90000 }, async () => {
  const a = await openDemo(context, baseUrl, fast("ui-anon-alice"));
  const b = await openDemo(context, baseUrl, fast("ui-anon-bob"));
  await a.page.fill("#recipient", b.address);
  await a.page.fill("#message", "who am I?");
  await a.page.check("#anonymous");
  await a.page.click("#send");
  const button = await b.page.waitForSelector("#log li button.reply", { timeout: 30000 });
  assert.ok(!(await b.page.textContent("#log")).includes(a.address.split("@")[0]), "Bob's page does not show Alice's address");
  await button.click();
  assert.equal(await b.page.isVisible("#reply-box"), true);
  await b.page.fill("#reply-message", "someone anonymous");
  await b.page.click("#reply-send");
  await waitInPage(a.page, () => window.nymReceived.some((r) => r.message === "someone anonymous" && r.senderTag === undefined));
  assert.equal(await b.page.isVisible("#reply-box"), false);
  await a.page.close();
  await b.page.close();
});

test("in-page mode ({ worker: false }) runs the same client on the main thread", { timeout: 60000 }, async () => {
  const { page, address } = await openDemo(context, baseUrl, { ...fast("in-page"), worker: "0" });
  assert.equal(await page.evaluate(() => window.nymClient.inWorker), false);
  assert.match(await page.textContent("#mode"), /in this page/);
  await page.evaluate((me) => window.nymClient.send(me, "in the page"), address);
  await waitInPage(page, () => window.nymMessages.includes("in the page"));
  const stats = await page.evaluate(() => window.nymClient.stats());
  assert.ok(stats.acksReceived >= 1 && stats.messagesReceived >= 1, JSON.stringify(stats));
  await page.close();
});

test("a passphrase encrypts the stored identity; the wrong one, or none, is refused", { timeout: 90000 }, async () => {
  const { page } = await openDemo(context, baseUrl, fast("passphrase-host"));
  const run = (args) => page.evaluate(async ({ directory, options }) => {
    const { NymClient } = await import("nym-client-wasm");
    try {
      const c = await NymClient.start(directory, { storageKey: "secret", averagePacketDelayMs: 0, averageHopDelayMs: 0, ...options });
      const address = c.selfAddress();
      await c.stop();
      return { address };
    } catch (e) {
      return { error: e.message };
    }
  }, { directory, ...args });
  const first = await run({ options: { passphrase: "correct horse" } });
  assert.match(first.address ?? first.error, ADDRESS);
  const identity = await readRecord(page, "secret", "identity");
  assert.ok(identity && identity.length > 100);
  const text = Buffer.from(identity).toString("latin1");
  assert.ok(!text.includes("BEGIN") && !text.includes("privatePem"), "the identity is stored encrypted");
  assert.ok(!Buffer.from(await readRecord(page, "secret", "directory-key")).toString("latin1").match(/^[1-9A-HJ-NP-Za-km-z]{32,44}$/), "the directory key too");
  const crypt = JSON.parse(await readRecordText(page, "secret", "crypt"));
  assert.equal(crypt.kdf, "argon2id");
  assert.equal((await run({ options: { passphrase: "correct horse" } })).address, first.address, "the same passphrase opens the same identity");
  assert.match((await run({ options: { passphrase: "wrong horse" } })).error, /wrong passphrase for the stored identity 'secret'/);
  assert.match((await run({ options: {} })).error, /the stored identity 'secret' is encrypted: pass \{ passphrase \}/);
  // In-page mode reads the same store.
  assert.equal((await run({ options: { passphrase: "correct horse", worker: false } })).address, first.address);
  await page.evaluate(async () => (await import("nym-client-wasm")).forgetIdentity("secret"));
  assert.ok(!(await databases(page)).includes("nym-client-wasm/secret"));
  await page.close();
});

test("an identity saved in localStorage by the previous version is migrated once into IndexedDB", { timeout: 90000 }, async () => {
  const { page } = await openDemo(context, baseUrl, fast("migrate-host"));
  const result = await page.evaluate(async ({ directory }) => {
    const { NymClient, forgetIdentity } = await import("nym-client-wasm");
    const options = { averagePacketDelayMs: 0, averageHopDelayMs: 0 };
    // An identity to migrate: made by a client, then written the way the localStorage version kept it.
    const donor = await NymClient.start(directory, { ...options, storageKey: "migrate-donor" });
    const address = donor.selfAddress();
    await donor.stop();
    const record = (name, key) => new Promise((res, rej) => {
      const r = indexedDB.open(`nym-client-wasm/${name}`);
      r.onerror = () => rej(r.error);
      r.onsuccess = () => {
        const get = r.result.transaction("records").objectStore("records").get(key);
        get.onsuccess = () => { r.result.close(); res(get.result); };
        get.onerror = () => rej(get.error);
      };
    });
    const text = (bytes) => new TextDecoder().decode(bytes);
    const identity = text(await record("migrate-donor", "identity"));
    const directoryKey = text(await record("migrate-donor", "directory-key"));
    await forgetIdentity("migrate-donor");
    localStorage.setItem("nym-client-wasm/migrated", identity);
    localStorage.setItem("nym-client-wasm/migrated/directory-key", directoryKey);
    const migrated = await NymClient.start(directory, { ...options, storageKey: "migrated" });
    const after = {
      address: migrated.selfAddress(),
      left: ["", "/directory-key", "/replies", "/received"].map((s) => localStorage.getItem(`nym-client-wasm/migrated${s}`)).filter((v) => v !== null),
      stored: text(await record("migrated", "identity")) === identity,
    };
    // It receives at the migrated address.
    const got = new Promise((res) => migrated.onMessage((m) => { if (m === "after migration") res(m); }));
    await migrated.send(address, "after migration");
    after.received = await Promise.race([got, new Promise((r) => setTimeout(() => r("timed out"), 20000))]);
    await migrated.stop();
    // Once: a second start reads IndexedDB (localStorage has nothing any more).
    const again = await NymClient.start(directory, { ...options, storageKey: "migrated" });
    after.again = again.selfAddress();
    await again.stop();
    await forgetIdentity("migrated");
    return { address, ...after };
  }, { directory });
  assert.equal(result.address, result.again);
  assert.equal(result.stored, true, "the identity is in IndexedDB");
  assert.deepEqual(result.left, [], "the localStorage entries are gone");
  assert.equal(result.received, "after migration");
  await page.close();
});

test("storage refused (private mode, quota): start rejects saying so, or runs ephemeral when asked", { timeout: 60000 }, async () => {
  const { page } = await openDemo(context, baseUrl, fast("quota-host"));
  const result = await page.evaluate(async ({ directory }) => {
    const { NymClient } = await import("nym-client-wasm");
    const original = IDBFactory.prototype.open;
    // What a browser in private mode or out of quota does: refuse to open.
    IDBFactory.prototype.open = function () { throw new DOMException("the quota has been exceeded", "QuotaExceededError"); };
    const out = {};
    try {
      try {
        await NymClient.start(directory, { storageKey: "quota", worker: false });
        out.refused = "resolved";
      } catch (e) {
        out.refused = e.message;
      }
      const c = await NymClient.start(directory, { storageKey: "quota", worker: false, fallbackToEphemeral: true, averagePacketDelayMs: 0, averageHopDelayMs: 0 });
      out.fallback = { persistent: c.persistent, address: c.selfAddress() };
      const got = new Promise((res) => c.onMessage(res));
      await c.send(c.selfAddress(), "ephemeral still works");
      out.fallback.received = await got;
      await c.stop();
    } finally {
      IDBFactory.prototype.open = original;
    }
    return out;
  }, { directory });
  assert.match(result.refused, /storage: IndexedDB refused to keep the identity 'quota' \(QuotaExceededError: the quota has been exceeded\).*\{ fallbackToEphemeral: true \}/);
  assert.equal(result.fallback.persistent, false);
  assert.equal(result.fallback.received, "ephemeral still works");
  await page.close();
});

test("benchmarks, quick mode: packet build (wasm, native) and the main thread while a message is sent, worker vs in-page", { timeout: 150000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${baseUrl}?${new URLSearchParams(fast("bench-quick"))}`);
  await readyAddress(page);
  const ms = await page.evaluate(async () => (await import("nym-client-wasm")).benchPacketBuild(20));
  assert.ok(Number.isFinite(ms) && ms > 0, `wasm ms/packet: ${ms}`);
  const native = binary(join("examples", "bench_native"));
  if (native) {
    const out = JSON.parse(execFileSync(native, ["20"], { encoding: "utf8" }));
    assert.ok(out.msPerPacket > 0);
  }
  await page.close();
  const benchUrl = await startBenchServer();
  for (const worker of [true, false]) {
    const r = await measureMainThread(context, benchUrl, { directory, bytes: 200 * 1024, worker, timeoutMs: 60000 });
    assert.equal(r.worker, worker);
    assert.ok(r.arrived, `200 KiB arrived (${JSON.stringify(r)})`);
    assert.ok(r.frames > 0 && Number.isFinite(r.fps) && r.maxFrameGapMs > 0, JSON.stringify(r));
  }
});
