// The page's main thread while a large message is sent to itself unthrottled
// (averagePacketDelayMs 0, averageHopDelayMs 0): the engine in a Web Worker vs
// in the page, alternating, same run, same localnet. Prints one JSON line.
//   node mainthread-bench.mjs [bytes=10485760] [rounds=1] [timeoutMs=240000] [flushSliceMs,...]
// With a list of flushSliceMs (e.g. "20,0"), each round runs each of them, worker and in-page.
import { execFileSync } from "node:child_process";
import { CHROMIUM, startLocalnet, launchBrowser, cleanup } from "./lib.mjs";
import { startBenchServer, measureMainThread } from "./mainthread.mjs";

const bytes = Number(process.argv[2] ?? 10 * 1024 * 1024);
const rounds = Number(process.argv[3] ?? 1);
const timeoutMs = Number(process.argv[4] ?? 240000);
const slices = process.argv[5] ? process.argv[5].split(",").map(Number) : null;

try {
  const [{ url: directory }, baseUrl] = await Promise.all([startLocalnet(), startBenchServer()]);
  const context = await launchBrowser();
  const runs = [];
  for (let i = 0; i < rounds; i++) {
    const variants = (slices ?? [undefined]).flatMap((flushSliceMs) => [{ worker: true, flushSliceMs }, { worker: false, flushSliceMs }]);
    for (const variant of variants) {
      const r = await measureMainThread(context, baseUrl, { directory, bytes, timeoutMs, ...variant });
      console.error(JSON.stringify(r));
      runs.push(r);
    }
  }
  const chromium = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  console.log(JSON.stringify({ bytes, rounds, timeoutMs, chromium, runs }));
} finally {
  await cleanup();
}
