// Shared harness: localnet, static server, native client and Chromium, all on
// free loopback ports and temp dirs, all stopped by cleanup().
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, "..", "..");
// run.sh builds release binaries (scripts/test.sh's `cargo test --release` already did).
const PROFILE_DIR = process.env.NYM_TEST_PROFILE === "debug" ? "debug" : "release";
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
  "--no-first-run", "--disable-component-update", "--disable-sync",
];

const cleanups = [];
export function onCleanup(fn) { cleanups.push(fn); }
export async function cleanup() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch (e) { console.error("cleanup:", e); }
  }
}

export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export function binary(name) {
  for (const dir of [PROFILE_DIR]) {
    const path = join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), dir, name);
    if (existsSync(path)) return path;
  }
  return null;
}

/** Spawns a process; resolves with it once `ready` matches its output (stdout+stderr). */
export function spawnUntil(cmd, args, { ready, timeoutMs = 60000, env = {}, name = cmd }) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let done = false;
    const stop = () => new Promise((r) => {
      if (child.exitCode !== null || child.signalCode !== null) return r();
      child.once("exit", () => r());
      child.kill("SIGTERM");
      setTimeout(() => { child.kill("SIGKILL"); }, 3000).unref();
    });
    onCleanup(stop);
    const timer = setTimeout(() => finish(new Error(`${name} not ready within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
    const finish = (err, match) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      err ? rej(err) : res({ child, match, output: () => out, stop });
    };
    const onData = (d) => {
      out += d;
      if (process.env.VERBOSE) process.stderr.write(`[${name}] ${d}`);
      const m = out.match(ready);
      if (m) finish(null, m);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (e) => finish(e));
    child.on("exit", (code, sig) => finish(new Error(`${name} exited (${code ?? sig}) before it was ready; output:\n${out}`)));
  });
}

/** Starts `nym-localnet` on a free directory port; returns its directory URL
 * and its data dir (node keys live in `<data>/gateway-<n>/`, ...). */
export async function startLocalnet() {
  const bin = binary("nym-localnet");
  if (!bin) throw new Error("nym-localnet is not built (cargo build -p nym-mixnet --bin nym-localnet)");
  const data = tempDir("nym-localnet-");
  const { match } = await spawnUntil(bin, ["--directory-port", "0", "--data-dir", data], {
    ready: /directory: (http:\/\/\S+)[\s\S]*localnet ready/,
    timeoutMs: 90000,
    name: "nym-localnet",
    env: { RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  return { url: match[1], data };
}

/** Serves www/ at / and the installed npm package at /pkg/; returns the base URL. */
export async function startPageServer() {
  const pkg = join(HERE, "node_modules", "nym-client-wasm");
  const { match } = await spawnUntil(process.execPath, [join(ROOT, "www", "serve.mjs"), "--port", "0", "--pkg", pkg], {
    ready: /serving (http:\/\/\S+)/,
    name: "page server",
  });
  return match[1];
}

/** Headless Chromium with a fresh user-data-dir. */
export async function launchBrowser() {
  const context = await chromium.launchPersistentContext(tempDir("nym-chromium-"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  onCleanup(() => context.close());
  return context;
}

/** Opens the demo page and waits for its client; returns { page, address }. */
export async function openDemo(context, baseUrl, query) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (process.env.VERBOSE) console.error(`[page] ${m.type()}: ${m.text()}`); });
  await page.goto(`${baseUrl}?${new URLSearchParams(query)}`);
  const address = await readyAddress(page, errors);
  return { page, address, errors };
}

export async function readyAddress(page, errors = []) {
  try {
    return await page.evaluate(async () => (await window.nymReady).selfAddress());
  } catch (e) {
    throw new Error(`the demo page's client did not start: ${e.message}; page errors: ${errors.join("; ")}`);
  }
}

/** Waits until `predicate` (run in the page) is truthy; returns its value. */
export async function waitInPage(page, predicate, arg, timeoutMs = 30000) {
  const handle = await page.waitForFunction(predicate, arg, { timeout: timeoutMs, polling: 50 });
  return handle.jsonValue();
}

/** A record of an identity's IndexedDB store ("nym-client-wasm/<name>"), read
 * in the page: its bytes as an array, or null. */
export function readRecord(page, name, record) {
  return page.evaluate(async ([name, record]) => {
    const db = await new Promise((res, rej) => {
      const r = indexedDB.open(`nym-client-wasm/${name}`);
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    try {
      if (!db.objectStoreNames.contains("records")) return null;
      const value = await new Promise((res, rej) => {
        const r = db.transaction("records").objectStore("records").get(record);
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      return value === undefined ? null : Array.from(value);
    } finally {
      db.close();
    }
  }, [name, record]);
}

/** The record as text (UTF-8), or null. */
export async function readRecordText(page, name, record) {
  const bytes = await readRecord(page, name, record);
  return bytes === null ? null : Buffer.from(bytes).toString("utf8");
}

/** Names of the IndexedDB databases of the page's origin. */
export function databases(page) {
  return page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
}
