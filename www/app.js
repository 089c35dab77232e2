// Demo page for nym-client-wasm. Everything mixnet-related is the package's
// NymClient (its engine in a Web Worker unless ?worker=0); this file is UI
// only. For scripts and tests it exposes window.nymReady (a promise of the
// client), window.nymClient, window.nymMessages (every message received, as
// delivered, except the page's own loop probes) and window.nymReceived
// ({ message, senderTag } for each: the base58 sender tag of an anonymous
// message, undefined for plain ones), window.nymLatencies (loop latencies, ms)
// and window.nymTopology (what #network draws).
import init, { NymClient } from "nym-client-wasm";

const params = new URLSearchParams(location.search);
const directory = params.get("directory") || "http://127.0.0.1:8080";
const fast = params.get("fast") === "1";
const options = {
  storageKey: params.get("id") || "default",
  ephemeral: params.get("ephemeral") === "1",
  worker: params.get("worker") !== "0",
  ...(params.get("gateway") ? { gateway: params.get("gateway") } : {}),
  ...(params.get("directoryKey") ? { directoryKey: params.get("directoryKey") } : {}),
  ...(fast ? { averagePacketDelayMs: 0, averageHopDelayMs: 0 } : {}),
};
const hopDelayMs = fast ? 0 : 15;

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}, parent) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  parent?.append(el);
  return el;
};
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
window.nymLatencies = [];
const pings = new Map();
// The page's own loop messages (the histogram's samples): not shown, not in nymMessages.
const PROBE = "\u0000nym-demo-loop ";
let client = null;

// ---- the network picture -------------------------------------------------

const picture = { columns: [], packets: 0 };

/** Draws the topology: this client, the gateways (entry), the three layers, the gateways (exit). */
function drawNetwork(topology) {
  window.nymTopology = topology;
  const root = $("network");
  root.replaceChildren();
  const W = 640, H = 300, top = 36, bottom = H - 14;
  const columns = [
    { key: "client", title: "you", nodes: [{ id: "you", cls: "client" }] },
    { key: "entry", title: "gateway", nodes: topology.gateways.map((g) => ({ id: g.identityKey, cls: `gateway${g.identityKey === topology.ourGateway ? " ours" : ""}`, label: g.identityKey.slice(0, 6) })) },
    ...topology.layers.map((l) => ({ key: `layer-${l.layer}`, title: `layer ${l.layer}`, layer: l.layer, nodes: l.nodes.map((n) => ({ id: n, cls: "mixnode", label: n.split(":").pop() })) })),
    { key: "exit", title: "gateway", nodes: topology.gateways.map((g) => ({ id: g.identityKey, cls: `gateway${g.identityKey === topology.ourGateway ? " ours" : ""}`, label: g.identityKey.slice(0, 6) })) },
  ];
  const step = W / columns.length;
  picture.columns = columns.map((c, i) => {
    const x = step * i + step / 2;
    const band = svg("rect", { class: "band", x: x - step / 2 + 6, y: top - 6, width: step - 12, height: bottom - top + 12, rx: 8, "data-column": c.key }, root);
    svg("text", { x, y: 16, "text-anchor": "middle" }, root).textContent = c.title;
    const gap = (bottom - top) / Math.max(c.nodes.length, 1);
    c.nodes.forEach((n, j) => {
      const y = top + gap * j + gap / 2;
      const attrs = { class: `node ${n.cls}`, cx: x, cy: y, r: Math.min(14, gap / 2.6) };
      if (c.layer) { attrs["data-layer"] = c.layer; attrs["data-node"] = n.id; }
      if (n.cls.startsWith("gateway")) attrs["data-gateway"] = n.id;
      svg("title", {}, svg("circle", attrs, root)).textContent = c.layer ? `layer ${c.layer} mixnode ${n.id}` : n.cls.startsWith("gateway") ? `gateway ${n.id}` : "this client";
      if (n.label) svg("text", { x, y: y + Math.min(14, gap / 2.6) + 11, "text-anchor": "middle" }, root).textContent = n.label;
    });
    return { x, band };
  });
  svg("g", { id: "packets" }, root);
}

/** One packet crossing the layers: a dot from column to column (per layer, not per node). */
function animatePacket(kind) {
  const layer = $("packets");
  if (!layer || picture.columns.length === 0 || picture.packets > 40) return;
  picture.packets++;
  const y = 150 + (Math.random() - 0.5) * 200;
  const dot = svg("circle", { class: `packet ${kind}`, r: kind === "real" ? 6 : 4, cx: picture.columns[0].x, cy: y }, layer);
  const hop = Math.max(260, hopDelayMs * 12);
  const t0 = performance.now();
  const last = picture.columns.length - 1;
  let lit = -1;
  const frame = (t) => {
    // (a frame's timestamp may be a little before t0; the picture may have been redrawn)
    const pos = Math.max(0, Math.min((t - t0) / hop, last));
    const i = Math.min(Math.floor(pos), picture.columns.length - 1);
    const a = picture.columns[i], b = picture.columns[Math.min(i + 1, picture.columns.length - 1)];
    if (!a || !b) { dot.remove(); picture.packets--; return; }
    dot.setAttribute("cx", a.x + (b.x - a.x) * (pos - i));
    if (kind === "real" && i !== lit) {
      picture.columns[lit]?.band.classList.remove("lit");
      a.band.classList.add("lit");
      lit = i;
    }
    if (pos < last) requestAnimationFrame(frame);
    else {
      picture.columns[lit]?.band.classList.remove("lit");
      dot.remove();
      picture.packets--;
    }
  };
  requestAnimationFrame(frame);
}

// ---- counters ---------------------------------------------------------------

let previous = null;
function updateCounters() {
  if (!client) return;
  const s = client.stats();
  const at = performance.now();
  if (previous) {
    const dt = (at - previous.at) / 1000;
    const real = s.realPacketsSent - previous.s.realPacketsSent;
    const cover = s.coverPacketsSent - previous.s.coverPacketsSent;
    $("rate-real").textContent = (real / dt).toFixed(1);
    $("rate-cover").textContent = (cover / dt).toFixed(1);
    for (let i = 0; i < Math.min(real, 6); i++) setTimeout(() => animatePacket("real"), i * 60);
    for (let i = 0; i < Math.min(cover, 3); i++) setTimeout(() => animatePacket("cover"), i * 90);
  }
  previous = { s, at };
  $("real-sent").textContent = s.realPacketsSent;
  $("cover-sent").textContent = s.coverPacketsSent;
  $("acks").textContent = s.acksReceived;
  $("retransmissions").textContent = s.retransmissions;
  $("packets-in").textContent = s.packetsReceived;
  $("messages-in").textContent = s.messagesReceived;
}

// ---- loop latency histogram -------------------------------------------------

function drawLatency() {
  const xs = window.nymLatencies;
  const root = $("latency");
  root.replaceChildren();
  if (xs.length === 0) return;
  const sorted = [...xs].sort((a, b) => a - b);
  const max = Math.max(sorted[sorted.length - 1], 1);
  const bins = 12;
  const width = Math.ceil(max / bins / 10) * 10 || 10;
  const counts = new Array(bins).fill(0);
  for (const x of xs) counts[Math.min(Math.floor(x / width), bins - 1)]++;
  const peak = Math.max(...counts);
  const W = 300, H = 110, base = H - 16, bw = W / bins;
  counts.forEach((c, i) => {
    const h = (c / peak) * (base - 6);
    svg("title", {}, svg("rect", { x: i * bw + 1, y: base - h, width: bw - 2, height: h, "data-count": c }, root)).textContent = `${i * width}–${(i + 1) * width} ms: ${c}`;
  });
  svg("text", { x: 0, y: H - 3 }, root).textContent = "0 ms";
  svg("text", { x: W, y: H - 3, "text-anchor": "end" }, root).textContent = `${width * bins} ms`;
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  $("latency-summary").textContent = `${xs.length} loop messages: median ${Math.round(q(0.5))} ms, p90 ${Math.round(q(0.9))} ms`;
}

function recordLatency(ms) {
  window.nymLatencies.push(ms);
  drawLatency();
}

let probeSeq = 0;
function sendProbe() {
  if (!client || !$("probes").checked) return;
  const text = `${PROBE}${++probeSeq}`;
  pings.set(text, performance.now());
  client.send(client.selfAddress(), text).catch(() => pings.delete(text));
}

// ---- messages ---------------------------------------------------------------

let replyTag = null;
function openReply(tag) {
  replyTag = tag;
  $("reply-tag").textContent = `${tag.slice(0, 10)}…`;
  $("reply-box").hidden = false;
  $("reply-message").focus();
}

function showMessage(msg, senderTag) {
  if (typeof msg === "string" && msg.startsWith(PROBE)) {
    const sent = pings.get(msg);
    if (sent !== undefined) {
      pings.delete(msg);
      recordLatency(performance.now() - sent);
    }
    return;
  }
  window.nymMessages.push(msg);
  window.nymReceived.push({ message: msg, senderTag });
  const from = senderTag === undefined ? "" : `anonymous (tag ${senderTag.slice(0, 8)}…): `;
  let li;
  if (typeof msg === "string") {
    const sent = pings.get(msg);
    if (sent !== undefined) {
      pings.delete(msg);
      const ms = performance.now() - sent;
      recordLatency(ms);
      $("ping-result").textContent = `arrived after ${Math.round(ms)} ms: “${msg}”`;
    }
    li = log(from + msg, "in");
  } else {
    const url = URL.createObjectURL(new Blob([msg]));
    const a = document.createElement("a");
    a.href = url;
    a.download = "nym-message.bin";
    a.textContent = `${from}binary message, ${msg.length} bytes (download)`;
    li = log(a, "in");
  }
  if (senderTag !== undefined) {
    const button = document.createElement("button");
    button.className = "reply";
    button.textContent = "reply";
    button.dataset.tag = senderTag;
    button.onclick = () => openReply(senderTag);
    li.append(button);
  }
}

async function main() {
  $("directory").textContent = directory;
  $("probes").checked = params.get("probes") !== "0";
  await init();
  setStatus("fetching topology and connecting to a gateway…");
  client = await NymClient.start(directory, options);
  window.nymClient = client;
  const me = client.selfAddress();
  $("address").textContent = me;
  $("mode").textContent = client.inWorker ? "in a Web Worker" : "in this page";
  setStatus(`connected${fast ? " (fast mode: no mixing delays)" : ""}`);
  client.onMessage(showMessage);
  client.onError((e) => log(`error: ${e.message}`, "err"));
  client.onEvent((e) => {
    if (e.type === "connected") setStatus(`connected${fast ? " (fast mode: no mixing delays)" : ""}`);
    if (e.type === "disconnected") setStatus(`reconnecting: ${e.message}`, true);
  });
  for (const id of ["copy", "ping", "send", "send-file"]) $(id).disabled = false;
  const topology = await client.topology();
  if (topology) drawNetwork(topology);
  setInterval(updateCounters, 500);
  setInterval(sendProbe, 2000);
  setInterval(async () => {
    const t = await client.topology().catch(() => null);
    if (t && JSON.stringify(t) !== JSON.stringify(window.nymTopology)) drawNetwork(t);
  }, 30000);

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
    const anonymous = $("anonymous").checked;
    try {
      await (anonymous ? client.sendAnonymous(to, text) : client.send(to, text));
      log(`to ${to.slice(0, 12)}…${anonymous ? " (anonymously)" : ""}: ${text}`, "out");
      $("message").value = "";
    } catch (e) {
      log(`error: ${e.message}`, "err");
    }
  };
  $("message").addEventListener("keydown", (e) => { if (e.key === "Enter") $("send").click(); });
  $("reply-send").onclick = async () => {
    const text = $("reply-message").value;
    try {
      await client.reply(replyTag, text);
      log(`reply to ${replyTag.slice(0, 8)}…: ${text}`, "out");
      $("reply-message").value = "";
      $("reply-box").hidden = true;
    } catch (e) {
      log(`error: ${e.message}`, "err");
    }
  };
  $("reply-message").addEventListener("keydown", (e) => { if (e.key === "Enter") $("reply-send").click(); });
  $("reply-cancel").onclick = () => { $("reply-box").hidden = true; };
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
