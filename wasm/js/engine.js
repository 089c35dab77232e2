// Starts the wasm engine with its store: shared by the worker (worker.js)
// and the in-page mode (index.js, { worker: false }).
import { NymEngine } from "./nym_client_wasm.js";
import { openKv } from "./storage.js";

function described(e) {
  if (e && typeof e === "object" && "message" in e) return `${e.name && e.name !== "Error" ? `${e.name}: ` : ""}${e.message}`;
  return String(e);
}

/** Resolves with { engine, kv } (kv null when ephemeral), or rejects with an Error. */
export async function startEngine(directoryUrl, options, legacy) {
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
  try {
    const engine = await NymEngine.start(directoryUrl, opts, kv, legacy);
    return { engine, kv };
  } catch (e) {
    kv?.close();
    throw e;
  }
}
