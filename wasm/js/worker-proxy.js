// The page's side of worker mode: the same interface as EngineBackend
// (engine.js), each method a request to the worker (worker.js) in the
// protocol of protocol.js. The worker's counters come with its notices, so
// stats() and isConnected() answer synchronously.
import { Op, Notice, request, isAnswer, errorText } from "./protocol.js";

function copyMessage(message) {
  // The worker gets a copy: the caller's buffer stays theirs.
  return message instanceof Uint8Array ? message.slice() : message;
}

export class WorkerProxy {
  #worker;
  #handlers;
  #calls = new Map();
  #nextCall = 1;
  #onMessage = null;
  #address = "";
  #persistent = false;
  #migrated = false;
  #stats = null;
  #connected = false;
  #started = false;
  #stopped = false;

  constructor(handlers) {
    this.#handlers = handlers;
  }

  /** Starts a module worker and the engine in it (with the page's compiled
   * wasm `module`); resolves once it is started, as EngineBackend.start does. */
  static async start(module, authorities, options, legacy, handlers) {
    const proxy = new WorkerProxy(handlers);
    await proxy.#start(module, authorities, options, legacy);
    return proxy;
  }

  async #start(module, authorities, options, legacy) {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "nym-client-wasm" });
    this.#worker = worker;
    worker.onmessage = ({ data }) => (isAnswer(data) ? this.#settle(data) : this.#notice(data));
    worker.onerror = (e) => {
      e.preventDefault?.();
      const error = new Error(`the client's worker failed: ${e.message || "it could not be loaded"}`);
      for (const { reject } of this.#calls.values()) reject(error);
      this.#calls.clear();
      if (this.#started && !this.#stopped) this.#handlers.error(error);
    };
    try {
      const started = await this.#call(Op.START, [module, authorities, options, legacy]);
      this.#address = started.address;
      this.#persistent = started.persistent;
      this.#migrated = started.migrated;
      this.#stats = started.stats;
      this.#connected = true;
      this.#started = true;
    } catch (e) {
      worker.terminate();
      this.#stopped = true;
      throw e;
    }
  }

  #call(op, args = []) {
    if (this.#stopped) return Promise.reject(new Error("the client is stopped"));
    return new Promise((resolve, reject) => {
      const id = this.#nextCall++;
      this.#calls.set(id, { resolve, reject });
      try {
        this.#worker.postMessage(request(id, op, args));
      } catch (e) {
        this.#calls.delete(id);
        reject(new Error(errorText(e)));
      }
    });
  }

  #settle({ id, ok, value, error }) {
    const call = this.#calls.get(id);
    if (!call) return;
    this.#calls.delete(id);
    if (ok) call.resolve(value);
    else call.reject(new Error(error));
  }

  #notice(data) {
    if (data.stats) {
      this.#stats = data.stats;
      this.#connected = data.stats.connected;
    }
    switch (data.notice) {
      case Notice.MESSAGE:
        this.#onMessage?.(data.message, data.senderTag);
        break;
      case Notice.ERROR:
        this.#handlers.error(new Error(data.message));
        break;
      case Notice.EVENT:
        if (data.value?.type === "connected") this.#connected = true;
        if (data.value?.type === "disconnected") this.#connected = false;
        this.#handlers.event(data.value);
        break;
      case Notice.STATS:
        break;
    }
  }

  get inWorker() {
    return true;
  }

  get address() {
    return this.#address;
  }

  get persistent() {
    return this.#persistent;
  }

  get migrated() {
    return this.#migrated;
  }

  send(recipient, message) {
    return this.#call(Op.SEND, [recipient, copyMessage(message)]);
  }

  sendAnonymous(recipient, message, replySurbs) {
    return this.#call(Op.SEND_ANONYMOUS, [recipient, copyMessage(message), replySurbs]);
  }

  reply(senderTag, message) {
    return this.#call(Op.REPLY, [senderTag, copyMessage(message)]);
  }

  onMessage(callback) {
    const first = this.#onMessage === null;
    this.#onMessage = callback;
    if (first && !this.#stopped) this.#call(Op.SUBSCRIBE_MESSAGES).catch((e) => this.#handlers.error(e));
  }

  isConnected() {
    return !this.#stopped && this.#connected;
  }

  stats() {
    return { ...this.#stats, connected: this.isConnected() };
  }

  topology() {
    return this.#call(Op.TOPOLOGY);
  }

  async stop() {
    if (this.#stopped) return;
    try {
      const last = await this.#call(Op.STOP);
      if (last) this.#stats = last;
    } finally {
      this.#stopped = true;
      this.#connected = false;
      this.#worker.terminate();
    }
  }
}
