// Demo page for nym-client-wasm. Everything mixnet-related is the package's
// NymClient; this file is UI only. For scripts and tests it exposes
// window.nymReady (a promise of the client), window.nymClient and
// window.nymMessages (every message received, as delivered) and
// window.nymReceived ({ message, senderTag } for each: the base58 sender tag of
// an anonymous message, undefined for plain ones).
import init, { NymClient } from "nym-client-wasm";

const params = new URLSearchParams(location.search);
const directory = params.get("directory") || "http://127.0.0.1:8080";
const fast = params.get("fast") === "1";
const options = {
  storageKey: params.get("id") || "default",
  ephemeral: params.get("ephemeral") === "1",
  ...(params.get("gateway") ? { gateway: params.get("gateway") } : {}),
  ...(params.get("directoryKey") ? { directoryKey: params.get("directoryKey") } : {}),
  ...(fast ? { averagePacketDelayMs: 0, averageHopDelayMs: 0 } : {}),
};

const $ = (id) => document.getElementById(id);
const log = (text, cls) => {
  const li = document.createElement("li");
  li.className = cls;
  if (text instanceof Node) li.append(text); else li.textContent = text;
  $("log").append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
};
const setStatus = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};

window.nymMessages = [];
window.nymReceived = [];
const pings = new Map();

function showMessage(msg, senderTag) {
  window.nymMessages.push(msg);
  window.nymReceived.push({ message: msg, senderTag });
  const from = senderTag === undefined ? "" : `anonymous (tag ${senderTag.slice(0, 8)}…): `;
  if (typeof msg === "string") {
    const sent = pings.get(msg);
    if (sent !== undefined) {
      pings.delete(msg);
      $("ping-result").textContent = `arrived after ${Math.round(performance.now() - sent)} ms: “${msg}”`;
    }
    log(from + msg, "in");
  } else {
    const url = URL.createObjectURL(new Blob([msg]));
    const a = document.createElement("a");
    a.href = url;
    a.download = "nym-message.bin";
    a.textContent = `${from}binary message, ${msg.length} bytes (download)`;
    log(a, "in");
  }
}

async function main() {
  $("directory").textContent = directory;
  await init();
  setStatus("fetching topology and connecting to a gateway…");
  const client = await NymClient.start(directory, options);
  window.nymClient = client;
  const me = client.selfAddress();
  $("address").textContent = me;
  setStatus(`connected${fast ? " (fast mode: no mixing delays)" : ""}`);
  client.onMessage(showMessage);
  client.onError((e) => log(`error: ${e.message}`, "err"));
  for (const id of ["copy", "ping", "send", "send-file"]) $(id).disabled = false;

  $("copy").onclick = () => navigator.clipboard?.writeText(me);
  $("ping").onclick = async () => {
    const text = `ping ${new Date().toISOString()}`;
    pings.set(text, performance.now());
    $("ping-result").textContent = "sent, waiting…";
    try {
      await client.send(me, text);
    } catch (e) {
      $("ping-result").textContent = `error: ${e.message}`;
    }
  };
  $("send").onclick = async () => {
    const to = $("recipient").value.trim();
    const text = $("message").value;
    try {
      await client.send(to, text);
      log(`to ${to.slice(0, 12)}…: ${text}`, "out");
      $("message").value = "";
    } catch (e) {
      log(`error: ${e.message}`, "err");
    }
  };
  $("message").addEventListener("keydown", (e) => { if (e.key === "Enter") $("send").click(); });
  $("send-file").onclick = async () => {
    const file = $("file").files[0];
    const to = $("recipient").value.trim() || me;
    if (!file) return log("error: choose a file first", "err");
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      await client.send(to, bytes);
      log(`file ${file.name} (${bytes.length} bytes) to ${to.slice(0, 12)}…`, "out");
    } catch (e) {
      log(`error: ${e.message}`, "err");
    }
  };
  return client;
}

window.nymReady = main().catch((e) => {
  setStatus(`error: ${e.message ?? e}`, true);
  throw e;
});
