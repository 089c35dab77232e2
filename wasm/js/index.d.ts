// Types of nym-client-wasm's API (index.js). The engine's own bindings are in
// nym_client_wasm.d.ts (NymEngine: internal, used through NymClient).

/** Options of `NymClient.start`. Every field is optional. */
export interface NymClientOptions {
  /** Run the engine in a Web Worker (default true; where there are no workers it runs in the page). false: in this page's main thread. */
  worker?: boolean;
  /** base58 identity key of the gateway to use. Default: the saved identity's gateway, else a random gateway from the topology. */
  gateway?: string;
  /** With one directory URL: its base58 ed25519 key, as its operator publishes it: only topologies signed by it are believed. Default: the key kept with the saved identity, else the key the directory presents on first contact (trust on first use), then kept with the identity. Not with a list of authorities (each carries its key). */
  directoryKey?: string;
  /** With a list of authorities: how many of their valid signatures a topology needs (a whole number, 1 to their count). Default: a majority (N/2 + 1). */
  threshold?: number;
  /** Don't read or write anything in storage: a fresh address every start. Default false. */
  ephemeral?: boolean;
  /** Name of the saved identity: its IndexedDB database is `nym-client-wasm/<storageKey>` (identity, reply store, kept messages, pinned directory key). Default "default". */
  storageKey?: string;
  /** Encrypt what is stored (Argon2id key from it, ChaCha20-Poly1305 per record). Needed again at every start of that identity; a wrong one rejects `start`. */
  passphrase?: string;
  /** When IndexedDB refuses (private browsing, quota, disabled), run ephemeral (with a console warning) instead of rejecting `start`. Default false. */
  fallbackToEphemeral?: boolean;
  /** Mean gap (ms) of the main Poisson stream (real or cover packets). 0: no throttling, real packets go out at once and this stream sends no cover. Default 20. */
  averagePacketDelayMs?: number;
  /** Mean per-hop mixing delay (ms) put in each packet. 0: no delay. Default 15. */
  averageHopDelayMs?: number;
  /** Mean gap (ms) of the loop cover stream. 0: off. Default 200. */
  loopCoverDelayMs?: number;
  /** How often (ms) to fetch the topology again. Default 30000. */
  topologyRefreshMs?: number;
  /** How long (ms) a connection to the gateway may take from opening to a completed handshake. Default 15000. */
  connectTimeoutMs?: number;
  /** How long (ms) the engine may work (build and send packets) before it yields to the event loop, so acks, timers and, in-page, the page get their turn. 0: never yield. Default 20. */
  flushSliceMs?: number;
}

/**
 * The `onMessage` callback. `senderTag` is the base58 sender tag of an anonymous
 * message (sent with `sendAnonymous`): answer it with `client.reply(senderTag, ...)`.
 * It is `undefined` for plain messages and for replies to our own anonymous messages.
 */
export type NymMessageCallback = (message: string | Uint8Array, senderTag: string | undefined) => void;

/** What `NymClient.stats()` returns: the engine's counters. */
export interface NymClientStats {
  connected: boolean;
  queuedPackets: number;
  realPacketsSent: number;
  coverPacketsSent: number;
  packetsReceived: number;
  coverPacketsReceived: number;
  messagesReceived: number;
  duplicateFragments: number;
  malformedPackets: number;
  expiredSets: number;
  acksReceived: number;
  retransmissions: number;
  reroutedPackets: number;
  deliveriesAcknowledged: number;
  /** The URL of the authority (or directory) the topology in use came from; null before one. */
  lastAuthority: string | null;
  /** Topology fetches that failed or were refused, after which the next went to another authority. */
  authorityFailovers: number;
}

/** One directory authority of the network: where it serves and its base58 ed25519 key. */
export interface NymAuthority {
  /** `http://host:port` or `https://...` */
  url: string;
  /** base58 ed25519 key, as the authorities file lists it. */
  key: string;
}

/** The engine's events (`onEvent`); `message` is their text. */
export type NymClientEvent = { message: string } & (
  | { type: "connected"; url: string }
  | { type: "disconnected"; url: string; reason: string; retryInMs: number }
  /** `messageId`: what `send`, `sendAnonymous` or `reply` resolved to for that message. */
  | { type: "sendFailed"; messageId: number; recipient: string | null; reason: string }
  | { type: "gatewayError"; reason: string }
  /** A fetch failed or its document was refused (`reason` names the authority); the previous topology stays, the next fetch asks the next authority. */
  | { type: "topologyRefused"; reason: string }
  /** The topology in use expired and no authority served an acceptable one: `reason` names each authority's last failure. */
  | { type: "noCurrentTopology"; reason: string }
  /** After `noCurrentTopology`: an authority served an acceptable topology again. */
  | { type: "topologyRestored"; url: string }
  | { type: "gatewayMoved"; url: string }
  | { type: "routeRefused"; firstHop: string }
  | { type: "keptMessagesDropped"; count: number; bytes: number }
);

/** The topology the client routes through. */
export interface NymTopology {
  /** Layers 1 to 3; each node as its `host:port`. */
  layers: { layer: number; nodes: string[] }[];
  gateways: { identityKey: string; mixAddress: string }[];
  /** Identity key of this client's gateway. */
  ourGateway: string;
}

/** A Nym mixnet client: the nym-client-core engine, in a Web Worker by default. */
export class NymClient {
  private constructor();
  /**
   * Fetches the topology, loads or creates the identity (IndexedDB unless `ephemeral`), connects to the gateway; resolves once the handshake completed. Rejects with an Error saying what went wrong.
   * `authorities`: one directory's URL (pinned by `options.directoryKey`, or trusted on first use), or the network's authorities: a topology is believed when `options.threshold` of their keys signed it (default a majority); fetched from any of them, the next one when one fails. Kept with the identity (the ones given at each start win).
   */
  static start(authorities: string | NymAuthority[], options?: NymClientOptions): Promise<NymClient>;
  /** Whether the engine runs in a Web Worker. */
  readonly inWorker: boolean;
  /** Whether the identity is kept in IndexedDB (false: ephemeral, also after a `fallbackToEphemeral`). */
  readonly persistent: boolean;
  /** `<base58 client key>@<base58 gateway identity key>` */
  selfAddress(): string;
  /** Queues a message (string as UTF-8, or bytes); resolves once queued, to the message's id: the `messageId` of a later `sendFailed` event about it. */
  send(recipient: string, message: string | Uint8Array): Promise<number>;
  /** Like `send`, anonymous: the recipient gets a sender tag and `replySurbs` (default 10, 0 to 200) reply blocks. Resolves to the message's id. */
  sendAnonymous(recipient: string, message: string | Uint8Array, replySurbs?: number): Promise<number>;
  /** Answers an anonymous message through its sender's reply blocks. Resolves to the message's id. */
  reply(senderTag: string, message: string | Uint8Array): Promise<number>;
  /** Whole messages; those that came before it was set are delivered when it is. */
  onMessage(callback: NymMessageCallback): void;
  /** Problems after start (default: console.warn). */
  onError(callback: (error: Error) => void): void;
  /** Every engine event (connected, disconnected, sendFailed, ...). */
  onEvent(callback: (event: NymClientEvent) => void): void;
  isConnected(): boolean;
  /** The engine's counters (in worker mode, as of at most 250 ms ago, and of every delivered message). */
  stats(): NymClientStats;
  /** The topology in use, or null before one. */
  topology(): Promise<NymTopology | null>;
  /** Closes the connection, stops timers (and the worker). */
  stop(): Promise<void>;
}

/** What `init` accepts: nothing (fetches the .wasm next to the module), or where/what the wasm is. */
export type InitInput = { module_or_path?: RequestInfo | URL | Response | BufferSource | WebAssembly.Module | Promise<any> } | undefined;

/** Loads the wasm in this page; `NymClient.start` calls it when needed. */
export default function init(input?: InitInput): Promise<unknown>;

/** Deletes everything stored for `storageKey` (default "default"): its IndexedDB database and any localStorage entries of the older version. Stop a client using it first. */
export function forgetIdentity(storageKey?: string): Promise<void>;

/** Benchmark: ms per Sphinx packet built (in this page). */
export function benchPacketBuild(n: number): number;

/** The engine version (nodes must match its major.minor). */
export function version(): string;
