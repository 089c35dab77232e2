// A TypeScript program that uses the package as an application would: every
// export, every NymClient method and getter, every option, every event. It is
// never run, only compiled (`tsc -p tsconfig.json` in run.sh) against the
// installed package's index.d.ts, so a declaration that goes missing or
// changes shape fails the test command. The `@ts-expect-error` lines are
// misuses the types must refuse (so they are not `any`).
import init, {
  NymClient,
  forgetIdentity,
  benchPacketBuild,
  version,
  type InitInput,
  type NymAuthority,
  type NymClientEvent,
  type NymClientOptions,
  type NymClientStats,
  type NymMessageCallback,
  type NymTopology,
} from "nym-client-wasm";

const options: Required<NymClientOptions> = {
  worker: true,
  gateway: "2xU4CBE6QiiYt6EyBXSALwxkNvM7gqJfjHXaMkjiFGzM",
  directoryKey: "9oF4CT5pXuP6cVJ3nNWbDE5m5mUgyWyZG7t5X6GkbYvV",
  threshold: 2,
  ephemeral: false,
  storageKey: "consumer",
  passphrase: "correct horse battery staple",
  fallbackToEphemeral: true,
  averagePacketDelayMs: 20,
  averageHopDelayMs: 15,
  loopCoverDelayMs: 200,
  topologyRefreshMs: 30000,
  connectTimeoutMs: 15000,
  flushSliceMs: 20,
};

function describe(event: NymClientEvent): string {
  switch (event.type) {
    case "connected":
      return `${event.message}: ${event.url}`;
    case "disconnected":
      return `${event.url} ${event.reason}, again in ${event.retryInMs.toFixed(0)} ms`;
    case "sendFailed": {
      const id: number = event.messageId;
      const to: string | null = event.recipient;
      return `message ${id} to ${to ?? "an anonymous sender"}: ${event.reason}`;
    }
    case "gatewayError":
    case "topologyRefused":
    case "noCurrentTopology":
      return event.reason;
    case "topologyRestored":
      return event.url;
    case "gatewayMoved":
      return event.url;
    case "routeRefused":
      return event.firstHop;
    case "keptMessagesDropped":
      return `${event.count} messages, ${event.bytes} bytes`;
    default: {
      // Every event type is handled above.
      const none: never = event;
      return none;
    }
  }
}

function counters(stats: NymClientStats): number {
  const connected: boolean = stats.connected;
  return (
    (connected ? 1 : 0) +
    stats.queuedPackets +
    stats.realPacketsSent +
    stats.coverPacketsSent +
    stats.packetsReceived +
    stats.coverPacketsReceived +
    stats.messagesReceived +
    stats.duplicateFragments +
    stats.malformedPackets +
    stats.expiredSets +
    stats.acksReceived +
    stats.retransmissions +
    stats.reroutedPackets +
    stats.deliveriesAcknowledged +
    stats.authorityFailovers +
    (stats.lastAuthority === null ? 0 : stats.lastAuthority.length)
  );
}

function route(topology: NymTopology | null): string[] {
  if (topology === null) return [];
  const nodes = topology.layers.flatMap(({ layer, nodes }) => nodes.map((node) => `${layer}: ${node}`));
  const gateways = topology.gateways.map((g) => `${g.identityKey} at ${g.mixAddress}`);
  return [...nodes, ...gateways, topology.ourGateway];
}

export async function use(directoryUrl: string, wasm: ArrayBuffer): Promise<string[]> {
  const input: InitInput = { module_or_path: wasm };
  await init(input);
  await init();
  const engineVersion: string = version();
  const msPerPacket: number = benchPacketBuild(10);

  const client: NymClient = await NymClient.start(directoryUrl, options);
  const minimal: NymClient = await NymClient.start(directoryUrl);
  const authorities: NymAuthority[] = [{ url: directoryUrl, key: "9oF4CT5pXuP6cVJ3nNWbDE5m5mUgyWyZG7t5X6GkbYvV" }];
  const several: NymClient = await NymClient.start(authorities, { threshold: 1, ephemeral: true });
  const inPage = await NymClient.start(directoryUrl, { worker: false, ephemeral: true });

  const inWorker: boolean = client.inWorker;
  const persistent: boolean = client.persistent;
  const address: string = client.selfAddress();

  const log: string[] = [engineVersion, String(msPerPacket), String(inWorker), String(persistent)];
  const onMessage: NymMessageCallback = (message, senderTag) => {
    const text = typeof message === "string" ? message : new TextDecoder().decode(message);
    if (senderTag !== undefined) void client.reply(senderTag, `got ${text.length} characters`);
    log.push(text);
  };
  client.onMessage(onMessage);
  client.onError((error: Error) => log.push(error.message));
  client.onEvent((event) => log.push(describe(event)));

  // Each send resolves to the id a later sendFailed event names.
  const ids: number[] = [
    await client.send(address, "text"),
    await client.send(address, new Uint8Array([1, 2, 3])),
    await client.sendAnonymous(address, "anonymous"),
    await client.sendAnonymous(address, new Uint8Array(8), 5),
    await client.reply("1111111111111111", "answer"),
  ];
  log.push(...ids.map((id) => id.toFixed(0)));

  const connected: boolean = client.isConnected();
  log.push(String(connected), String(counters(client.stats())), ...route(await client.topology()));

  const stopped: void = await client.stop();
  void stopped;
  await minimal.stop();
  await several.stop();
  await inPage.stop();
  await forgetIdentity();
  await forgetIdentity("consumer");
  return log;
}

// Misuses the types refuse.
export async function misuse(client: NymClient): Promise<void> {
  // @ts-expect-error: the constructor is private (NymClient.start makes clients)
  new NymClient();
  // @ts-expect-error: a message is a string or a Uint8Array
  await client.send(client.selfAddress(), 42);
  // @ts-expect-error: send resolves to a number, not a string
  const notText: string = await client.send(client.selfAddress(), "x");
  void notText;
  // @ts-expect-error: not an option
  await NymClient.start("http://127.0.0.1:8080", { workers: false });
  // @ts-expect-error: an authority names its key
  await NymClient.start([{ url: "http://127.0.0.1:8080" }]);
  // @ts-expect-error: options are typed
  await NymClient.start("http://127.0.0.1:8080", { averagePacketDelayMs: "20" });
  // @ts-expect-error: stats are read-only counters of known names
  client.stats().packetsSent;
  // @ts-expect-error: inWorker is read-only
  client.inWorker = false;
  client.onEvent((event) => {
    // @ts-expect-error: only sendFailed carries a messageId; narrow on `type` first
    void event.messageId;
  });
}
