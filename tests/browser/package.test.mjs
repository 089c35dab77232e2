// The npm package as installed from its tarball (run.sh packs and installs
// it): its files, and its declarations against its code and the engine's
// options. No browser, no mixnet. run.sh also lints the package (publint)
// and compiles consumer.ts against it (tsc).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");

test("the npm package (installed from its tarball) carries its modules; index.d.ts declares exactly what index.js exports, and every option the engine reads", async () => {
  const pkg = join(HERE, "node_modules", "nym-client-wasm");
  const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
  for (const f of [...manifest.files, "package.json"]) assert.ok(existsSync(join(pkg, f)), `${f} is in the package`);
  // Every module index.js reaches is shipped (a new one left out of "files" breaks the package, not the build).
  for (const f of readdirSync(join(ROOT, "wasm", "js"))) assert.ok(manifest.files.includes(f), `wasm/js/${f} is in package.json "files"`);
  assert.deepEqual(manifest.sideEffects, ["./worker.js"], "only worker.js does something when imported");

  // What tsc sees in index.d.ts (consumer.ts, compiled by run.sh, checks how they are used)...
  const ts = (await import("typescript")).default;
  const dtsPath = join(pkg, "index.d.ts");
  const program = ts.createProgram([dtsPath], { strict: true, noEmit: true, lib: ["lib.es2022.d.ts", "lib.dom.d.ts"], types: [] });
  const checker = program.getTypeChecker();
  const declared = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(dtsPath)));
  const byName = (name) => declared.find((s) => s.name === name);
  const names = (symbols) => symbols.map((s) => s.name).sort();
  const classSymbol = byName("NymClient");
  const staticNames = names(checker.getPropertiesOfType(checker.getTypeOfSymbol(classSymbol))).filter((n) => n !== "prototype");
  const memberNames = names(checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(classSymbol)));
  const optionNames = names(checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(byName("NymClientOptions"))));

  // ... against what index.js really exports (imported here, in node: no browser needed).
  const api = await import(pathToFileURL(join(pkg, "index.js")).href);
  assert.deepEqual(names(declared.filter((s) => s.flags & ts.SymbolFlags.Value)), Object.keys(api).sort(), "the exported values");
  const own = (o, skip) => Object.getOwnPropertyNames(o).filter((n) => !skip.includes(n)).sort();
  assert.deepEqual(memberNames, own(api.NymClient.prototype, ["constructor"]), "NymClient's methods and getters");
  assert.deepEqual(staticNames, own(api.NymClient, ["length", "name", "prototype"]), "NymClient's static methods");

  // The options: those the engine reads (wasm/src/browser.rs, JsOptions: the compiler can't see Rust) and those the JS reads.
  const rust = readFileSync(join(ROOT, "wasm", "src", "browser.rs"), "utf8");
  const struct = rust.slice(rust.indexOf("struct JsOptions"), rust.indexOf("}", rust.indexOf("struct JsOptions")));
  const engineOptions = [...struct.matchAll(/^\s+(\w+): Option/gm)].map((m) => m[1].replace(/_(\w)/g, (_, c) => c.toUpperCase()));
  assert.ok(engineOptions.length >= 10, `options found in JsOptions: ${engineOptions}`);
  assert.deepEqual(optionNames, [...engineOptions, "worker", "fallbackToEphemeral"].sort(), "NymClientOptions declares exactly the options read");
});
