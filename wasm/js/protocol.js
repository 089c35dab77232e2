// The one protocol between the page (worker-proxy.js) and the engine's
// worker (worker.js); both import it, so a kind can't be spelt two ways.
//
// page -> worker, a request:  { id, op, args }          op: one of Op
// worker -> page, its answer: { id, ok: true, value }   or { id, ok: false, error: "text" }
// worker -> page, a notice:   { notice, stats, ... }    notice: one of Notice
//
// Every request gets exactly one answer with its id. Notices carry the
// engine's counters (`stats`), so the page's synchronous stats() and
// isConnected() stay current.

/** What the page asks the worker to do. The args of each, in order. */
export const Op = Object.freeze({
  /** [compiled WebAssembly.Module, authorities, options, legacy] -> { address, persistent, migrated, stats } */
  START: "start",
  /** [recipient, message] -> the message id (what the engine resolved to) */
  SEND: "send",
  /** [recipient, message, replySurbs] -> the message id */
  SEND_ANONYMOUS: "sendAnonymous",
  /** [senderTag, message] -> the message id */
  REPLY: "reply",
  /** [] -> undefined; from then on whole messages come as Notice.MESSAGE */
  SUBSCRIBE_MESSAGES: "onMessage",
  /** [] -> the topology in use, or null */
  TOPOLOGY: "topology",
  /** [] -> the last stats */
  STOP: "stop",
});

/** What the worker tells the page without being asked. */
export const Notice = Object.freeze({
  /** { message, senderTag } (message: string or Uint8Array, its buffer transferred) */
  MESSAGE: "message",
  /** { message: "text" } */
  ERROR: "error",
  /** { value: NymClientEvent } */
  EVENT: "event",
  /** {} (the counters only, four times a second) */
  STATS: "stats",
});

/** How often (ms) the worker sends its counters when nothing else happens. */
export const STATS_INTERVAL_MS = 250;

export const request = (id, op, args) => ({ id, op, args });
export const answer = (id, value) => ({ id, ok: true, value });
export const failure = (id, error) => ({ id, ok: false, error: errorText(error) });
export const notice = (kind, stats, fields = {}) => ({ ...fields, notice: kind, stats });

/** Whether a message from the worker answers a request (else it is a notice). */
export const isAnswer = (data) => data.id !== undefined;

/** The text of anything thrown (errors cross the worker boundary as text). */
export function errorText(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === "string") return e;
  return String(e?.message ?? e);
}
