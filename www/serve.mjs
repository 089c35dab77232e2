#!/usr/bin/env node
// Static server for the demo page: www/ at /, the npm package's files at /pkg/.
//   node www/serve.mjs [--port 8000] [--host 127.0.0.1] [--pkg wasm/pkg] [--root www]
// --port 0 picks a free port. Prints "serving http://HOST:PORT/" once listening.
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve, sep, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const root = resolve(arg("root", here));
const pkg = resolve(arg("pkg", join(here, "..", "wasm", "pkg")));
const host = arg("host", "127.0.0.1");
const port = Number(arg("port", "8000"));

const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".css": "text/css",
  ".ts": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
};

function resolveInside(base, rel) {
  const path = normalize(join(base, rel));
  return path === base || path.startsWith(base + sep) ? path : null;
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? "/", "http://x");
    let pathname = decodeURIComponent(url.pathname);
    let path = pathname.startsWith("/pkg/")
      ? resolveInside(pkg, pathname.slice("/pkg/".length))
      : resolveInside(root, pathname.slice(1));
    if (path && (await stat(path).catch(() => null))?.isDirectory()) path = join(path, "index.html");
    const body = path ? await readFile(path).catch(() => null) : null;
    if (!body) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(200, {
      "content-type": types[extname(path)] ?? "application/octet-stream",
      "cache-control": "no-store",
    }).end(body);
  } catch (e) {
    res.writeHead(500, { "content-type": "text/plain" }).end(String(e));
  }
});
server.listen(port, host, () => {
  const { port: actual } = server.address();
  console.log(`serving http://${host}:${actual}/ (page: ${root}, package: ${pkg})`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)));
