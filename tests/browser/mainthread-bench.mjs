// The page's main thread while a large message is sent to itself unthrottled
// (averagePacketDelayMs 0, averageHopDelayMs 0): the engine in a Web Worker vs
// in the page, alternating, same run, same localnet. Prints one JSON line.
//   node mainthread-bench.mjs [bytes=10485760] [rounds=1] [timeoutMs=240000]
import { execFileSync } from "node:child_process";
import { CHROMIUM, startLocalnet, launchBrowser, cleanup } from "./lib.mjs";
import { startBenchServer, measureMainThread } from "./mainthread.mjs";

const bytes = Number(process.argv[2] ?? 10 * 1024 * 1024);
const rounds = Number(process.argv[3] ?? 1);
const timeoutMs = Number(process.argv[4] ?? 240000);

try {
  const [{ url: directory }, baseUrl] = await Promise.all([startLocalnet(), startBenchServer()]);
  const context = await launchBrowser();
  const runs = [];
  for (let i = 0; i < rounds; i++) {
    for (const worker of [true, false]) {
      const r = await measureMainThread(context, baseUrl, { directory, bytes, worker, timeoutMs });
      console.error(JSON.stringify(r));
      runs.push(r);
    }
  }
  const chromium = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  console.log(JSON.stringify({ bytes, rounds, timeoutMs, chromium, runs }));
} finally {
  await cleanup();
}
