// Sphinx packet creation in Chromium (the wasm package) beside the same code
// natively (wasm/examples/bench_native.rs), alternating, in one run.
//   node bench.mjs <native-binary> [packets] [rounds]
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { HERE, ROOT, CHROMIUM, launchBrowser, spawnUntil, cleanup } from "./lib.mjs";

const [nativeBin, packetsArg, roundsArg] = process.argv.slice(2);
const packets = Number(packetsArg ?? 500);
const rounds = Number(roundsArg ?? 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  const { match } = await spawnUntil(process.execPath, [join(ROOT, "www", "serve.mjs"), "--port", "0", "--root", HERE, "--pkg", join(HERE, "node_modules", "nym-client-wasm")], {
    ready: /serving (http:\/\/\S+)/, name: "page server",
  });
  const context = await launchBrowser();
  const page = await context.newPage();
  await page.goto(`${match[1]}bench.html`);
  await page.evaluate(() => window.benchReady);
  const wasm = [], native = [];
  for (let i = 0; i < rounds; i++) {
    wasm.push(await page.evaluate((n) => window.benchReady.then((bench) => bench(n)), packets));
    native.push(JSON.parse(execFileSync(nativeBin, [String(packets)], { encoding: "utf8" })).msPerPacket);
  }
  const chromium = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  const result = {
    packets, rounds, chromium,
    wasmMsPerPacket: wasm, nativeMsPerPacket: native,
    wasmMedian: median(wasm), nativeMedian: median(native),
    ratio: median(wasm) / median(native),
  };
  console.log(JSON.stringify(result));
} finally {
  await cleanup();
}
