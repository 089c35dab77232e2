// The engine's Web Worker: NymClient (index.js) posts { id, op, args } and
// gets { id, ok, value | error }, plus events: { event: "message" | "error" |
// "event" | "stats", ... }. Stats go with every event and four times a
// second, so the page's synchronous stats() and isConnected() stay current.
import init from "./nym_client_wasm.js";
import { startEngine } from "./engine.js";

let engine = null;
let kv = null;
let statsTimer = null;

const post = (message, transfer = []) => self.postMessage(message, transfer);
const stats = () => engine?.stats();
const errorText = (e) => (e instanceof Error ? e.message : typeof e === "string" ? e : String(e?.message ?? e));

async function handle(op, args) {
  switch (op) {
    case "start": {
      const [module, directoryUrl, options, legacy] = args;
      await init({ module_or_path: module });
      ({ engine, kv } = await startEngine(directoryUrl, options, legacy));
      engine.onError((e) => post({ event: "error", message: errorText(e) }));
      engine.onEvent((value) => post({ event: "event", value, stats: stats() }));
      statsTimer = setInterval(() => post({ event: "stats", stats: stats() }), 250);
      return { address: engine.selfAddress(), migrated: engine.migrated, persistent: engine.persistent, stats: stats() };
    }
    case "send":
      return engine.send(args[0], args[1]);
    case "sendAnonymous":
      return engine.sendAnonymous(args[0], args[1], args[2]);
    case "reply":
      return engine.reply(args[0], args[1]);
    case "onMessage":
      engine.onMessage((message, senderTag) => {
        post({ event: "message", message, senderTag, stats: stats() }, message instanceof Uint8Array ? [message.buffer] : []);
      });
      return undefined;
    case "topology":
      return engine.topology();
    case "stop": {
      clearInterval(statsTimer);
      if (engine) await engine.stop();
      kv?.close();
      return stats();
    }
    default:
      throw new Error(`unknown operation ${op}`);
  }
}

self.onmessage = async ({ data }) => {
  const { id, op, args } = data;
  try {
    const value = await handle(op, args ?? []);
    post({ id, ok: true, value });
  } catch (e) {
    post({ id, ok: false, error: errorText(e) });
  }
};
