// The page's main thread while a large message goes out unthrottled: the
// engine in a Web Worker vs in the page (same run, same localnet), measured
// by mainthread.html in headless Chromium.
import { join } from "node:path";
import { HERE, ROOT, spawnUntil } from "./lib.mjs";

/** Serves tests/browser/ (mainthread.html) and the package at /pkg/; returns the base URL. */
export async function startBenchServer() {
  const { match } = await spawnUntil(process.execPath, [join(ROOT, "www", "serve.mjs"), "--port", "0", "--root", HERE, "--pkg", join(HERE, "node_modules", "nym-client-wasm")], {
    ready: /serving (http:\/\/\S+)/, name: "bench page server",
  });
  return match[1];
}

/** One measurement in a fresh page: { worker, bytes, arrived, elapsedMs, fps, longestTaskMs, maxFrameGapMs, ... }. */
export async function measureMainThread(context, baseUrl, { directory, bytes, worker, timeoutMs, flushSliceMs }) {
  const page = await context.newPage();
  try {
    await page.goto(`${baseUrl}mainthread.html`);
    await page.waitForFunction(() => window.measureReady === true);
    return await page.evaluate((args) => window.measure(args), { directory, bytes, worker, timeoutMs, flushSliceMs });
  } finally {
    await page.close();
  }
}
