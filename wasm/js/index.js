// nym-client-wasm: the page-facing API. NymClient runs the engine (the
// wasm NymEngine) in a Web Worker by default, through a WorkerProxy
// (worker-proxy.js); with { worker: false } (or where there are no workers)
// it runs it in the page, through an EngineBackend (engine.js). Both have one
// interface, chosen once at start. Identity, reply store, kept messages and
// the pinned directory key or authorities live in IndexedDB (storage.js), optionally
// encrypted with a passphrase.
import initWasm from "./nym_client_wasm.js";
import { EngineBackend } from "./engine.js";
import { WorkerProxy } from "./worker-proxy.js";
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

/** Calls an application callback; what it throws is logged, not passed to the engine. */
function callBack(callback, ...args) {
  try {
    callback(...args);
  } catch (e) {
    console.error("nym-client-wasm: a callback threw:", e);
  }
}

export class NymClient {
  // The engine, chosen at start: an EngineBackend (in this page) or a
  // WorkerProxy (in a Web Worker), with the same methods.
  #backend = null;
  #onError = null;
  #onEvent = null;

  constructor(token) {
    if (token !== PRIVATE) throw new TypeError("use NymClient.start(authorities, options)");
  }

  /** Starts a client: see the package README. `authorities`: the directory's URL, or the network's
   * authorities as [{ url, key }, ...] (`options.threshold` of their signatures needed, default a
   * majority). `options.worker` (default true) runs the engine in a Web Worker. */
  static async start(authorities, options) {
    await init();
    const o = options ?? {};
    const object = typeof o === "object";
    const ephemeral = object && o.ephemeral === true;
    const storageKey = object && typeof o.storageKey === "string" ? o.storageKey : "default";
    const legacy = ephemeral ? undefined : readLegacy(storageKey);
    const inWorker = !(object && o.worker === false) && typeof Worker !== "undefined";
    const client = new NymClient(PRIVATE);
    const handlers = { error: (e) => client.#error(e), event: (e) => client.#event(e) };
    client.#backend = inWorker
      ? await WorkerProxy.start(compiledModule(), authorities, o, legacy, handlers)
      : await EngineBackend.start(authorities, o, legacy, handlers);
    if (client.#backend.migrated) removeLegacy(storageKey);
    return client;
  }

  #error(error) {
    if (this.#onError) callBack(this.#onError, error);
    else console.warn(`nym-client-wasm: ${error.message}`);
  }

  #event(event) {
    if (this.#onEvent) callBack(this.#onEvent, event);
  }

  /** Whether the engine runs in a Web Worker (false: in this page). */
  get inWorker() {
    return this.#backend.inWorker;
  }

  /** Whether the identity is kept in IndexedDB (false: ephemeral). */
  get persistent() {
    return this.#backend.persistent;
  }

  selfAddress() {
    return this.#backend.address;
  }

  /** Resolves to the message id, the one a later `sendFailed` event names. */
  async send(recipient, message) {
    return this.#backend.send(recipient, message);
  }

  /** Resolves to the message id. */
  async sendAnonymous(recipient, message, replySurbs) {
    return this.#backend.sendAnonymous(recipient, message, replySurbs);
  }

  /** Resolves to the message id. */
  async reply(senderTag, message) {
    return this.#backend.reply(senderTag, message);
  }

  onMessage(callback) {
    if (typeof callback !== "function") throw new TypeError("onMessage needs a function");
    this.#backend.onMessage((message, senderTag) => callBack(callback, message, senderTag ?? undefined));
  }

  onError(callback) {
    this.#onError = callback;
  }

  /** Every engine event, as an object: { type, message, ... } (see NymClientEvent). */
  onEvent(callback) {
    this.#onEvent = callback;
  }

  isConnected() {
    return this.#backend.isConnected();
  }

  stats() {
    return this.#backend.stats();
  }

  /** The topology in use: { layers: [{ layer, nodes }], gateways: [{ identityKey, mixAddress }], ourGateway }. */
  async topology() {
    return this.#backend.topology();
  }

  async stop() {
    return this.#backend.stop();
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
