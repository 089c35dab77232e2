// The engine's Web Worker: runs an EngineBackend (engine.js) and answers the
// page's WorkerProxy (worker-proxy.js) in the protocol of protocol.js.
// Importing this module starts listening (it is the package's one module
// with a side effect).
import init from "./nym_client_wasm.js";
import { EngineBackend } from "./engine.js";
import { Op, Notice, STATS_INTERVAL_MS, answer, failure, notice, errorText } from "./protocol.js";

let backend = null;
let statsTimer = null;

const post = (message, transfer = []) => self.postMessage(message, transfer);
const stats = () => backend?.stats();

const handlers = {
  async [Op.START](module, authorities, options, legacy) {
    await init({ module_or_path: module });
    backend = await EngineBackend.start(authorities, options, legacy, {
      error: (e) => post(notice(Notice.ERROR, stats(), { message: errorText(e) })),
      event: (value) => post(notice(Notice.EVENT, stats(), { value })),
    });
    statsTimer = setInterval(() => post(notice(Notice.STATS, stats())), STATS_INTERVAL_MS);
    return { address: backend.address, migrated: backend.migrated, persistent: backend.persistent, stats: stats() };
  },
  [Op.SEND]: (recipient, message) => started().send(recipient, message),
  [Op.SEND_ANONYMOUS]: (recipient, message, replySurbs) => started().sendAnonymous(recipient, message, replySurbs),
  [Op.REPLY]: (senderTag, message) => started().reply(senderTag, message),
  [Op.SUBSCRIBE_MESSAGES]() {
    started().onMessage((message, senderTag) => {
      const transfer = message instanceof Uint8Array ? [message.buffer] : [];
      post(notice(Notice.MESSAGE, stats(), { message, senderTag }), transfer);
    });
  },
  [Op.TOPOLOGY]: () => started().topology(),
  async [Op.STOP]() {
    clearInterval(statsTimer);
    if (backend) await backend.stop();
    return stats();
  },
};

function started() {
  if (!backend) throw new Error("the client is not started");
  return backend;
}

self.onmessage = async ({ data }) => {
  const { id, op, args } = data;
  try {
    const handler = Object.hasOwn(handlers, op) ? handlers[op] : null;
    if (!handler) throw new Error(`unknown operation ${op}`);
    post(answer(id, await handler(...(args ?? []))));
  } catch (e) {
    post(failure(id, e));
  }
};
