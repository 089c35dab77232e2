// nym-client-wasm: the page-facing API. NymClient runs the engine (the
// wasm NymEngine) in a Web Worker by default and is a thin proxy to it;
// with { worker: false } (or where there are no workers) it runs it in the
// page. Identity, reply store, kept messages and the pinned directory key
// live in IndexedDB (storage.js), optionally encrypted with a passphrase.
import initWasm from "./nym_client_wasm.js";
import { startEngine } from "./engine.js";
import { readLegacy, removeLegacy, deleteDatabase } from "./storage.js";

export { benchPacketBuild, version } from "./nym_client_wasm.js";

let loading = null;
let compiled = null;

/** A compiled WebAssembly.Module from what wasm-bindgen's init accepts. */
async function compile(source) {
  source = await source;
  if (source instanceof WebAssembly.Module) return source;
  if (typeof source === "string" || source instanceof URL || (typeof Request === "function" && source instanceof Request)) {
    source = await fetch(source);
  }
  if (typeof Response === "function" && source instanceof Response) {
    if (!source.ok) throw new Error(`cannot load the wasm from ${source.url}: HTTP ${source.status}`);
    try {
      return await WebAssembly.compileStreaming(source.clone());
    } catch {
      return WebAssembly.compile(await source.arrayBuffer()); // e.g. not served as application/wasm
    }
  }
  return WebAssembly.compile(source);
}

/** Loads the wasm in this page (for in-page mode, version() and benchPacketBuild;
 * workers get the compiled module from here, without fetching it again).
 * Accepts what wasm-bindgen's init does: nothing (the .wasm next to this
 * module), or { module_or_path } (URL, Response, bytes or WebAssembly.Module). */
export default function init(input) {
  if (!loading) {
    loading = (async () => {
      let source = input !== null && typeof input === "object" && Object.getPrototypeOf(input) === Object.prototype ? input.module_or_path : input;
      source ??= new URL("./nym_client_wasm_bg.wasm", import.meta.url);
      compiled = await compile(source);
      return initWasm({ module_or_path: compiled });
    })().catch((e) => {
      loading = null;
      throw e;
    });
  }
  return loading;
}

/** The compiled wasm module, to instantiate in workers. */
function compiledModule() {
  return compiled;
}

const PRIVATE = Symbol("NymClient");

function asError(message) {
  return message instanceof Error ? message : new Error(String(message));
}

function copyMessage(message) {
  // Workers get copies: the caller's buffer stays theirs.
  return message instanceof Uint8Array ? message.slice() : message;
}

export class NymClient {
  #engine = null; // in-page mode
  #kv = null; // in-page mode: the identity's store, closed at stop
  #worker = null; // worker mode
  #calls = new Map();
  #nextCall = 1;
  #address = "";
  #stats = null;
  #connected = false;
  #onMessage = null;
  #onError = null;
  #onEvent = null;
  #stopped = false;
  #persistent = false;

  constructor(token) {
    if (token !== PRIVATE) throw new TypeError("use NymClient.start(directoryUrl, options)");
  }

  /** Starts a client: see the package README. `options.worker` (default true) runs the engine in a Web Worker. */
  static async start(directoryUrl, options) {
    await init();
    const o = options ?? {};
    const object = typeof o === "object";
    const ephemeral = object && o.ephemeral === true;
    const storageKey = object && typeof o.storageKey === "string" ? o.storageKey : "default";
    const legacy = ephemeral ? undefined : readLegacy(storageKey);
    const inWorker = !(object && o.worker === false) && typeof Worker !== "undefined";
    const client = new NymClient(PRIVATE);
    const migrated = inWorker
      ? await client.#startWorker(directoryUrl, o, legacy)
      : await client.#startInPage(directoryUrl, o, legacy);
    if (migrated) removeLegacy(storageKey);
    return client;
  }

  async #startInPage(directoryUrl, options, legacy) {
    const { engine, kv } = await startEngine(directoryUrl, options, legacy);
    this.#engine = engine;
    this.#kv = kv;
    this.#address = engine.selfAddress();
    this.#persistent = engine.persistent;
    engine.onError((e) => this.#error(e));
    engine.onEvent((event) => this.#event(event));
    return engine.migrated;
  }

  async #startWorker(directoryUrl, options, legacy) {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "nym-client-wasm" });
    this.#worker = worker;
    worker.onmessage = ({ data }) => this.#fromWorker(data);
    worker.onerror = (e) => {
      e.preventDefault?.();
      const error = new Error(`the client's worker failed: ${e.message || "it could not be loaded"}`);
      for (const { reject } of this.#calls.values()) reject(error);
      this.#calls.clear();
      if (!this.#stopped && this.#address) this.#error(error);
    };
    try {
      const started = await this.#call("start", [compiledModule(), directoryUrl, options, legacy]);
      this.#address = started.address;
      this.#stats = started.stats;
      this.#connected = true;
      this.#persistent = started.persistent;
      return started.migrated;
    } catch (e) {
      worker.terminate();
      this.#stopped = true;
      throw e;
    }
  }

  #call(op, args = []) {
    if (this.#stopped && op !== "stop") return Promise.reject(new Error("the client is stopped"));
    return new Promise((resolve, reject) => {
      const id = this.#nextCall++;
      this.#calls.set(id, { resolve, reject });
      try {
        this.#worker.postMessage({ id, op, args });
      } catch (e) {
        this.#calls.delete(id);
        reject(asError(e?.message ?? e));
      }
    });
  }

  #fromWorker(data) {
    if (data.id !== undefined) {
      const call = this.#calls.get(data.id);
      if (!call) return;
      this.#calls.delete(data.id);
      if (data.ok) call.resolve(data.value);
      else call.reject(new Error(data.error));
      return;
    }
    if (data.stats) {
      this.#stats = data.stats;
      this.#connected = data.stats.connected;
    }
    switch (data.event) {
      case "message":
        if (this.#onMessage) this.#deliver(this.#onMessage, data.message, data.senderTag);
        break;
      case "error":
        this.#error(new Error(data.message));
        break;
      case "event":
        if (data.value?.type === "connected") this.#connected = true;
        if (data.value?.type === "disconnected") this.#connected = false;
        this.#event(data.value);
        break;
    }
  }

  #deliver(callback, message, senderTag) {
    try {
      callback(message, senderTag ?? undefined);
    } catch (e) {
      console.error("nym-client-wasm: a callback threw:", e);
    }
  }

  #error(error) {
    if (this.#onError) {
      try { this.#onError(error); } catch (e) { console.error("nym-client-wasm: a callback threw:", e); }
    } else {
      console.warn(`nym-client-wasm: ${error.message}`);
    }
  }

  #event(event) {
    if (this.#onEvent) {
      try { this.#onEvent(event); } catch (e) { console.error("nym-client-wasm: a callback threw:", e); }
    }
  }

  /** Whether the engine runs in a Web Worker (false: in this page). */
  get inWorker() {
    return this.#worker !== null;
  }

  /** Whether the identity is kept in IndexedDB (false: ephemeral). */
  get persistent() {
    return this.#persistent;
  }

  selfAddress() {
    return this.#address;
  }

  send(recipient, message) {
    if (this.#engine) return this.#engine.send(recipient, message);
    return this.#call("send", [recipient, copyMessage(message)]);
  }

  sendAnonymous(recipient, message, replySurbs) {
    if (this.#engine) return this.#engine.sendAnonymous(recipient, message, replySurbs);
    return this.#call("sendAnonymous", [recipient, copyMessage(message), replySurbs]);
  }

  reply(senderTag, message) {
    if (this.#engine) return this.#engine.reply(senderTag, message);
    return this.#call("reply", [senderTag, copyMessage(message)]);
  }

  onMessage(callback) {
    if (typeof callback !== "function") throw new TypeError("onMessage needs a function");
    if (this.#engine) {
      this.#engine.onMessage((message, senderTag) => this.#deliver(callback, message, senderTag));
      return;
    }
    const first = this.#onMessage === null;
    this.#onMessage = callback;
    if (first && !this.#stopped) this.#call("onMessage").catch((e) => this.#error(asError(e)));
  }

  onError(callback) {
    this.#onError = callback;
  }

  /** Every engine event, as an object: { type, message, ... } (see NymClientEvent). */
  onEvent(callback) {
    this.#onEvent = callback;
  }

  isConnected() {
    if (this.#engine) return this.#engine.isConnected();
    return !this.#stopped && this.#connected;
  }

  stats() {
    if (this.#engine) return this.#engine.stats();
    return { ...this.#stats, connected: this.isConnected() };
  }

  /** The topology in use: { layers: [{ layer, nodes }], gateways: [{ identityKey, mixAddress }], ourGateway }. */
  async topology() {
    if (this.#engine) return this.#engine.topology();
    return this.#call("topology");
  }

  async stop() {
    if (this.#engine) {
      await this.#engine.stop();
      this.#kv?.close();
      this.#kv = null;
      return;
    }
    if (this.#stopped) return;
    try {
      const last = await this.#call("stop");
      if (last) this.#stats = last;
    } finally {
      this.#stopped = true;
      this.#connected = false;
      this.#worker.terminate();
    }
  }
}

/** Deletes everything kept under `storageKey` (default "default"): the IndexedDB
 * database of that identity (identity, reply store, kept messages, pinned
 * directory key, passphrase salt) and any localStorage entries of the version
 * before. Stop a client using it first. */
export async function forgetIdentity(storageKey) {
  const name = storageKey ?? "default";
  removeLegacy(name);
  await deleteDatabase(name);
}
