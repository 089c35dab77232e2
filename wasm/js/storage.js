// The identity's store: one IndexedDB database per identity name
// ("nym-client-wasm/<name>"), one object store of records (bytes), which the
// engine reads and writes (sealed with the passphrase's key when there is
// one). Also the localStorage entries of the version before IndexedDB,
// which the page reads once to migrate them (workers have no localStorage).
const PREFIX = "nym-client-wasm/";
const RECORDS = "records";

export const databaseName = (name) => `${PREFIX}${name}`;

function described(e) {
  if (e && typeof e === "object" && "message" in e) return `${e.name ? `${e.name}: ` : ""}${e.message}`;
  return String(e);
}

function openDatabase(idb, name, version) {
  return new Promise((resolve, reject) => {
    let request;
    try {
      request = version === undefined ? idb.open(name) : idb.open(name, version);
    } catch (e) {
      reject(e);
      return;
    }
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(RECORDS)) request.result.createObjectStore(RECORDS);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error("the database is blocked by another connection"));
  });
}

/** Opens (creating) the identity's database; a probe write checks that the
 * browser lets us store (private mode and full quotas refuse here). */
export async function openKv(name) {
  const idb = globalThis.indexedDB;
  if (!idb) throw new Error("IndexedDB is not available in this context");
  let db = await openDatabase(idb, databaseName(name), undefined);
  if (!db.objectStoreNames.contains(RECORDS)) {
    // Made by someone else without our object store (e.g. opened by hand): add it.
    const version = db.version + 1;
    db.close();
    db = await openDatabase(idb, databaseName(name), version);
  }
  // forgetIdentity (here or in another tab) deletes the database: let it.
  db.onversionchange = () => db.close();
  const run = (mode, act) => new Promise((resolve, reject) => {
    const tx = db.transaction(RECORDS, mode);
    const request = act(tx.objectStore(RECORDS));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error ?? request.error);
    tx.onabort = () => reject(tx.error ?? new Error("the storage transaction was aborted"));
  });
  const kv = {
    get: (key) => run("readonly", (s) => s.get(key)),
    put: (key, value) => run("readwrite", (s) => s.put(value, key)).then(() => undefined),
    delete: (key) => run("readwrite", (s) => s.delete(key)).then(() => undefined),
    close: () => db.close(),
  };
  try {
    await kv.put("probe", new Uint8Array([1]));
  } catch (e) {
    db.close();
    throw e;
  }
  return kv;
}

/** Deletes the identity's database (other connections to it close themselves). */
export function deleteDatabase(name) {
  return new Promise((resolve, reject) => {
    const idb = globalThis.indexedDB;
    if (!idb) { resolve(); return; }
    const request = idb.deleteDatabase(databaseName(name));
    request.onsuccess = () => resolve();
    request.onerror = () => reject(new Error(`cannot delete IndexedDB '${databaseName(name)}': ${described(request.error)}`));
  });
}

const legacyKeys = (name) => ({
  identity: `${PREFIX}${name}`,
  replies: `${PREFIX}${name}/replies`,
  received: `${PREFIX}${name}/received`,
  directoryKey: `${PREFIX}${name}/directory-key`,
});

function localStorageOrNull() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // some browsers throw when storage is disabled
  }
}

function fromBase64(text) {
  if (text === null) return undefined;
  try {
    return Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
  } catch {
    return undefined; // unreadable: not migrated (the gateway delivers unacknowledged messages again)
  }
}

/** What the localStorage version kept under `name`, or undefined. */
export function readLegacy(name) {
  const ls = localStorageOrNull();
  if (!ls) return undefined;
  const keys = legacyKeys(name);
  const identity = ls.getItem(keys.identity);
  if (identity === null) return undefined;
  return {
    identity,
    replies: fromBase64(ls.getItem(keys.replies)),
    received: fromBase64(ls.getItem(keys.received)),
    directoryKey: ls.getItem(keys.directoryKey) ?? undefined,
  };
}

export function removeLegacy(name) {
  const ls = localStorageOrNull();
  if (!ls) return;
  for (const key of Object.values(legacyKeys(name))) ls.removeItem(key);
}
