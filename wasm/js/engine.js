// The engine in this context, behind the interface NymClient (index.js) uses
// for either backend: EngineBackend runs it right here (the page in in-page
// mode, or the worker, worker.js); WorkerProxy (worker-proxy.js) has the same
// methods and forwards them to a worker that runs an EngineBackend.
import { NymEngine } from "./nym_client_wasm.js";
import { openKv } from "./storage.js";

function described(e) {
  if (e && typeof e === "object" && "message" in e) return `${e.name && e.name !== "Error" ? `${e.name}: ` : ""}${e.message}`;
  return String(e);
}

/** The wasm engine and its store (none when ephemeral). */
export class EngineBackend {
  #engine;
  #kv;

  constructor(engine, kv) {
    this.#engine = engine;
    this.#kv = kv;
  }

  /** Opens the identity's store and starts the engine. `handlers.error(Error)`
   * hears problems after start, `handlers.event(object)` every engine event.
   * Resolves once the gateway handshake completed; rejects with an Error. */
  static async start(authorities, options, legacy, handlers) {
    const opts = options && typeof options === "object" ? { ...options } : options;
    let kv = null;
    if (opts && typeof opts === "object" && opts.ephemeral !== true) {
      const name = typeof opts.storageKey === "string" ? opts.storageKey : "default";
      try {
        kv = await openKv(name);
      } catch (e) {
        const why = `storage: IndexedDB refused to keep the identity '${name}' (${described(e)}): private browsing, a full quota or storage disabled?`;
        if (opts.fallbackToEphemeral !== true) {
          throw new Error(`${why} Pass { ephemeral: true }, or { fallbackToEphemeral: true } to run without storage when it fails`);
        }
        console.warn(`nym-client-wasm: ${why} Running ephemeral (fallbackToEphemeral): a fresh address, nothing kept.`);
        opts.ephemeral = true;
        delete opts.passphrase;
        legacy = undefined;
      }
    }
    let engine;
    try {
      engine = await NymEngine.start(authorities, opts, kv, legacy);
    } catch (e) {
      kv?.close();
      throw e;
    }
    engine.onError(handlers.error);
    engine.onEvent(handlers.event);
    return new EngineBackend(engine, kv);
  }

  get inWorker() {
    return false;
  }

  get address() {
    return this.#engine.selfAddress();
  }

  get persistent() {
    return this.#engine.persistent;
  }

  /** Whether start moved an identity from localStorage (the previous version) into IndexedDB. */
  get migrated() {
    return this.#engine.migrated;
  }

  /** Resolves to the message id (the one a later sendFailed event names). */
  send(recipient, message) {
    return this.#engine.send(recipient, message);
  }

  sendAnonymous(recipient, message, replySurbs) {
    return this.#engine.sendAnonymous(recipient, message, replySurbs);
  }

  reply(senderTag, message) {
    return this.#engine.reply(senderTag, message);
  }

  /** `callback(message, senderTag)` for every whole message; replaces the one before. */
  onMessage(callback) {
    this.#engine.onMessage(callback);
  }

  isConnected() {
    return this.#engine.isConnected();
  }

  stats() {
    return this.#engine.stats();
  }

  topology() {
    return this.#engine.topology();
  }

  async stop() {
    await this.#engine.stop();
    this.#kv?.close();
    this.#kv = null;
  }
}
