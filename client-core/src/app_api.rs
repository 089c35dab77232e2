//! The application-facing websocket protocol of the native client (the seed's
//! "Message Types"), as pure parsing and formatting: no sockets here.
//!
//! Text frames carry JSON requests:
//! - `{"type":"send","message":..,"recipient":"<b58>@<b58>"}`;
//!   `recipient_address` is accepted as well (the seed's name). `message` is a
//!   string (sent as its UTF-8 bytes) or any other JSON value (sent as its
//!   compact serde_json text: no whitespace, object keys in serde_json's order). Answered with `{"type":"send"}`.
//! - `{"type":"selfAddress"}`, answered `{"type":"selfAddress","address":".."}`.
//!
//! Binary frames: 64 bytes of recipient (32 client key, 32 gateway key), then
//! the payload; answered `{"type":"send"}`.
//!
//! Every bad request is answered `{"type":"error","message":".."}` with a
//! message naming the problem; the parsers below produce that text.
//!
//! Messages received from the mixnet are pushed as they are (no envelope): a
//! text frame when the connection's last request was a text frame and the
//! message is valid UTF-8, a binary frame otherwise ([`delivery_frame`]).
//!
//! Anonymous replies (0.8.0's SURBs, with today's Nym names):
//! - `{"type":"sendAnonymous","recipient":..,"message":..,"replySurbs":N}`
//!   sends with N single-use reply blocks (default 10); the receiver never
//!   learns our address. Answered `{"type":"send"}`.
//! - The receiver gets `{"type":"received","message":..,"senderTag":".."}`
//!   ([`received_json`]); `message` is the text, or, when the bytes are not
//!   UTF-8, their base58 with `"encoding":"base58"`.
//! - `{"type":"reply","senderTag":..,"message":..}` answers through a stored
//!   SURB; answered `{"type":"send"}`, or an error for an unknown or used-up tag.

use crate::address::{Recipient, ADDRESS_BYTES};
use crate::reply::{SenderTag, MAX_SURBS_PER_MESSAGE};
use serde_json::{json, Map, Value};

/// A valid request from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRequest {
    /// Send `message` to `recipient` through the mixnet.
    Send {
        /// Whom to.
        recipient: Recipient,
        /// The bytes to deliver.
        message: Vec<u8>,
    },
    /// Ask for this client's own address.
    SelfAddress,
    /// Send anonymously, with `reply_surbs` reply blocks.
    SendAnonymous {
        /// Whom to (they learn a sender tag, not our address).
        recipient: Recipient,
        /// The bytes to deliver.
        message: Vec<u8>,
        /// Single-use reply blocks sent along, at most
        /// `MAX_SURBS_PER_MESSAGE`.
        reply_surbs: usize,
    },
    /// Answer an anonymous message through its sender's SURBs.
    Reply {
        /// The tag the anonymous message came with.
        sender_tag: SenderTag,
        /// The answer.
        message: Vec<u8>,
    },
}

/// SURBs sent with `sendAnonymous` when `replySurbs` is not given.
pub(crate) const DEFAULT_REPLY_SURBS: usize = 10;

/// The frame an anonymous message is delivered in.
pub fn received_json(message: &[u8], sender_tag: &SenderTag) -> String {
    let tag = crate::reply::encode_sender_tag(sender_tag);
    match std::str::from_utf8(message) {
        Ok(text) => json!({ "type": "received", "message": text, "senderTag": tag }),
        Err(_) => json!({ "type": "received", "message": bs58::encode(message).into_string(), "encoding": "base58", "senderTag": tag }),
    }
    .to_string()
}

/// A reply from the client to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppResponse {
    /// A send request (`send`, `sendAnonymous`, `reply`) was accepted
    /// (queued for the mixnet): `{"type":"send","id":N}`. `id` names the
    /// message in a later [`AppResponse::SendFailed`] about it.
    Send {
        /// The message's id.
        id: u64,
    },
    /// This client's address: `{"type":"selfAddress","address":...}`.
    SelfAddress(String),
    /// A request was refused, or a problem not about one message:
    /// `{"type":"error","message":...}`.
    Error(String),
    /// A message accepted earlier could not be delivered (pushed, not an
    /// answer): `{"type":"error","message":...,"id":N}`, `id` as its
    /// [`AppResponse::Send`] gave it.
    SendFailed {
        /// The message's id.
        id: u64,
        /// What went wrong, in words.
        message: String,
    },
}

impl AppResponse {
    /// The response as a compact JSON text frame.
    pub fn to_json(&self) -> String {
        let v = match self {
            AppResponse::Send { id } => json!({ "type": "send", "id": id }),
            AppResponse::SelfAddress(address) => json!({ "type": "selfAddress", "address": address }),
            AppResponse::Error(message) => json!({ "type": "error", "message": message }),
            AppResponse::SendFailed { id, message } => json!({ "type": "error", "message": message, "id": id }),
        };
        v.to_string()
    }
}

/// How a received message goes down the websocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFrame {
    /// A JSON text frame (`{"type":"received",...}`).
    Text(String),
    /// A binary frame: the message's bytes as they are.
    Binary(Vec<u8>),
}

/// A text frame when the application's last request was text and `message`
/// is UTF-8, a binary frame otherwise.
pub fn delivery_frame(message: Vec<u8>, last_request_was_text: bool) -> DeliveryFrame {
    if last_request_was_text {
        match String::from_utf8(message) {
            Ok(text) => DeliveryFrame::Text(text),
            Err(e) => DeliveryFrame::Binary(e.into_bytes()),
        }
    } else {
        DeliveryFrame::Binary(message)
    }
}

const KNOWN_TYPES: &str = "'send', 'sendAnonymous', 'reply', 'selfAddress'";

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one text frame from the application.
pub fn parse_text_request(text: &str) -> Result<AppRequest, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON request: {e}"))?;
    let obj = match value {
        Value::Object(obj) => obj,
        other => return Err(format!("request must be a JSON object, got {}", json_kind(&other))),
    };
    let kind = match obj.get("type") {
        None => return Err(format!("missing field 'type' (one of {KNOWN_TYPES})")),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("field 'type' must be a string, got {}", json_kind(other))),
    };
    match kind {
        "send" => parse_send(&obj),
        "selfAddress" => Ok(AppRequest::SelfAddress),
        "sendAnonymous" => parse_send_anonymous(&obj),
        "reply" => parse_reply(&obj),
        t => Err(format!("unknown request type '{t}' (expected one of {KNOWN_TYPES})")),
    }
}

/// What a Nym 0.8 program asking for a reply SURB should send instead.
const SPEAKS_07: &str = "this client speaks Nym 0.7's websocket API, with anonymous replies as in today's Nym";

fn parse_send(obj: &Map<String, Value>) -> Result<AppRequest, String> {
    if obj.contains_key("withReplySurb") {
        return Err(format!(
            "'withReplySurb' is Nym 0.8's API: {SPEAKS_07}. Send \
             {{\"type\":\"sendAnonymous\",\"recipient\":\"...\",\"message\":\"...\",\"replySurbs\":10}}; \
             the recipient gets {{\"type\":\"received\",\"message\":\"...\",\"senderTag\":\"...\"}} and answers with \
             {{\"type\":\"reply\",\"senderTag\":\"...\",\"message\":\"...\"}}"
        ));
    }
    let (recipient, message) = recipient_and_message(obj, "send")?;
    Ok(AppRequest::Send { recipient, message })
}

fn parse_send_anonymous(obj: &Map<String, Value>) -> Result<AppRequest, String> {
    let (recipient, message) = recipient_and_message(obj, "sendAnonymous")?;
    let reply_surbs = match obj.get("replySurbs") {
        None => DEFAULT_REPLY_SURBS,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if n as usize <= MAX_SURBS_PER_MESSAGE => n as usize,
            _ => {
                return Err(format!(
                    "field 'replySurbs' must be a whole number from 0 to {MAX_SURBS_PER_MESSAGE}, got {n}"
                ))
            }
        },
        Some(other) => return Err(format!("field 'replySurbs' must be a number, got {}", json_kind(other))),
    };
    Ok(AppRequest::SendAnonymous { recipient, message, reply_surbs })
}

fn parse_reply(obj: &Map<String, Value>) -> Result<AppRequest, String> {
    if obj.contains_key("replySurb") && !obj.contains_key("senderTag") {
        return Err(format!(
            "'replySurb' is Nym 0.8's API: {SPEAKS_07}. Answer an anonymous message with \
             {{\"type\":\"reply\",\"senderTag\":\"<the senderTag it came with>\",\"message\":\"...\"}}"
        ));
    }
    let tag = match obj.get("senderTag") {
        None => return Err("missing field 'senderTag' in 'reply' request".into()),
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("field 'senderTag' must be a string, got {}", json_kind(other))),
    };
    let sender_tag = crate::reply::decode_sender_tag(tag).map_err(|e| e.to_string())?;
    Ok(AppRequest::Reply { sender_tag, message: message_field(obj, "reply")? })
}

fn message_field(obj: &Map<String, Value>, kind: &str) -> Result<Vec<u8>, String> {
    match obj.get("message") {
        None => Err(format!("missing field 'message' in '{kind}' request")),
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(other) => Ok(other.to_string().into_bytes()),
    }
}

fn recipient_and_message(obj: &Map<String, Value>, kind: &str) -> Result<(Recipient, Vec<u8>), String> {
    let recipient_text = match (obj.get("recipient"), obj.get("recipient_address")) {
        (None, None) => return Err(format!("missing field 'recipient' (or 'recipient_address') in '{kind}' request")),
        (Some(a), Some(b)) if a != b => {
            return Err("'recipient' and 'recipient_address' are both given and differ".into())
        }
        (Some(v), _) | (None, Some(v)) => match v {
            Value::String(s) => s,
            other => return Err(format!("field 'recipient' must be a string, got {}", json_kind(other))),
        },
    };
    let message = message_field(obj, kind)?;
    let recipient: Recipient = recipient_text.parse().map_err(|e: crate::Error| e.to_string())?;
    Ok((recipient, message))
}

/// Parses one binary frame: 64 bytes of recipient, then the payload.
pub fn parse_binary_request(bytes: &[u8]) -> Result<AppRequest, String> {
    if bytes == [0x02] {
        // Nym 0.8's tagged binary selfAddress request.
        return Err(format!(
            "a one-byte 0x02 frame is Nym 0.8's binary selfAddress request: {SPEAKS_07}. \
             Send the text frame {{\"type\":\"selfAddress\"}}; binary frames are sends: the 64-byte recipient, then the data"
        ));
    }
    if bytes.len() < ADDRESS_BYTES {
        return Err(format!(
            "binary request too short: {} bytes, but it must start with the {ADDRESS_BYTES}-byte recipient \
             (32-byte client key, 32-byte gateway key)",
            bytes.len()
        ));
    }
    let recipient = Recipient::from_bytes(&bytes[..ADDRESS_BYTES]).map_err(|e| e.to_string())?;
    Ok(AppRequest::Send { recipient, message: bytes[ADDRESS_BYTES..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> Recipient {
        Recipient::new([3u8; 32], [4u8; 32])
    }

    fn err(text: &str) -> String {
        parse_text_request(text).unwrap_err()
    }

    #[test]
    fn send_with_string_message() {
        let a = addr();
        for field in ["recipient", "recipient_address"] {
            let req = json!({"type": "send", "message": "hello", field: a.to_string()}).to_string();
            assert_eq!(
                parse_text_request(&req).unwrap(),
                AppRequest::Send { recipient: a, message: b"hello".to_vec() }
            );
        }
    }

    #[test]
    fn send_with_json_message_delivers_compact_json_text() {
        let a = addr();
        let req = format!(
            r#"{{ "type": "send", "message": {{ "sender": "x", "chatMessage": "hi julia!" }}, "recipient_address": "{a}" }}"#
        );
        let AppRequest::Send { message, .. } = parse_text_request(&req).unwrap() else { panic!() };
        // Compact serde_json text (object keys in serde_json's order).
        assert_eq!(String::from_utf8(message).unwrap(), r#"{"chatMessage":"hi julia!","sender":"x"}"#);
        let req = json!({"type": "send", "message": 42, "recipient": a.to_string()}).to_string();
        let AppRequest::Send { message, .. } = parse_text_request(&req).unwrap() else { panic!() };
        assert_eq!(message, b"42");
    }

    #[test]
    fn anonymous_sends_and_replies() {
        let a = addr();
        let req = json!({"type": "sendAnonymous", "message": "psst", "recipient": a.to_string(), "replySurbs": 3})
            .to_string();
        assert_eq!(
            parse_text_request(&req).unwrap(),
            AppRequest::SendAnonymous { recipient: a, message: b"psst".to_vec(), reply_surbs: 3 }
        );
        let req = json!({"type": "sendAnonymous", "message": "psst", "recipient": a.to_string()}).to_string();
        let AppRequest::SendAnonymous { reply_surbs, .. } = parse_text_request(&req).unwrap() else { panic!() };
        assert_eq!(reply_surbs, DEFAULT_REPLY_SURBS);
        let tag = [7u8; 16];
        let req =
            json!({"type": "reply", "senderTag": crate::reply::encode_sender_tag(&tag), "message": "back"}).to_string();
        assert_eq!(parse_text_request(&req).unwrap(), AppRequest::Reply { sender_tag: tag, message: b"back".to_vec() });
        let v: Value = serde_json::from_str(&received_json(b"hi", &tag)).unwrap();
        assert_eq!(v["type"], "received");
        assert_eq!(v["message"], "hi");
        assert_eq!(v["senderTag"], crate::reply::encode_sender_tag(&tag));
        let v: Value = serde_json::from_str(&received_json(&[0xff, 0], &tag)).unwrap();
        assert_eq!(v["encoding"], "base58");
    }

    #[test]
    fn self_address() {
        assert_eq!(parse_text_request(r#"{"type":"selfAddress"}"#).unwrap(), AppRequest::SelfAddress);
    }

    #[test]
    fn bad_text_requests_say_what_is_wrong() {
        let a = addr().to_string();
        // Nym 0.8 programs are told what to send instead
        let e = err(&format!(r#"{{"type":"send","recipient":"{a}","message":"hi","withReplySurb":true}}"#));
        assert!(e.contains("Nym 0.8") && e.contains("sendAnonymous") && e.contains("senderTag"), "{e}");
        let e = err(r#"{"type":"reply","replySurb":"abc","message":"hi"}"#);
        assert!(e.contains("Nym 0.8") && e.contains("senderTag"), "{e}");
        let e = parse_binary_request(&[0x02]).unwrap_err();
        assert!(e.contains("0.8") && e.contains("selfAddress"), "{e}");
        assert!(err("{not json").contains("malformed JSON"));
        assert!(err("").contains("malformed JSON"));
        assert!(err("[1,2]").contains("must be a JSON object, got an array"));
        assert!(err(r#"{"message":"x"}"#).contains("missing field 'type'"));
        assert!(err(r#"{"type":7}"#).contains("'type' must be a string"));
        assert!(err(r#"{"type":"dance"}"#).contains("unknown request type 'dance'"));
        assert!(err(r#"{"type":"reply"}"#).contains("missing field 'senderTag' in 'reply' request"));
        assert!(err(r#"{"type":"reply","senderTag":"abc","message":"x"}"#).contains("sender tag"));
        assert!(err(r#"{"type":"reply","senderTag":7}"#).contains("'senderTag' must be a string"));
        assert!(err(r#"{"type":"sendAnonymous"}"#)
            .contains("missing field 'recipient' (or 'recipient_address') in 'sendAnonymous' request"));
        assert!(err(&format!(r#"{{"type":"sendAnonymous","recipient":"{a}","message":"m","replySurbs":-1}}"#))
            .contains("'replySurbs' must be a whole number"));
        assert!(err(&format!(r#"{{"type":"sendAnonymous","recipient":"{a}","message":"m","replySurbs":"3"}}"#))
            .contains("'replySurbs' must be a number"));
        assert!(err(r#"{"type":"send","message":"x"}"#).contains("missing field 'recipient'"));
        assert!(err(&format!(r#"{{"type":"send","recipient":"{a}"}}"#)).contains("missing field 'message'"));
        assert!(err(r#"{"type":"send","message":"x","recipient":5}"#).contains("'recipient' must be a string"));
        assert!(err(r#"{"type":"send","message":"x","recipient":"nope"}"#).contains("invalid address: missing '@'"));
        let other = Recipient::new([5u8; 32], [4u8; 32]).to_string();
        assert!(err(&format!(r#"{{"type":"send","message":"x","recipient":"{a}","recipient_address":"{other}"}}"#))
            .contains("differ"));
    }

    #[test]
    fn binary_requests() {
        let a = addr();
        let mut frame = a.to_bytes().to_vec();
        assert_eq!(parse_binary_request(&frame).unwrap(), AppRequest::Send { recipient: a, message: vec![] });
        frame.extend_from_slice(b"data");
        assert_eq!(parse_binary_request(&frame).unwrap(), AppRequest::Send { recipient: a, message: b"data".to_vec() });
        let e = parse_binary_request(&frame[..10]).unwrap_err();
        assert!(e.contains("too short: 10 bytes") && e.contains("64-byte recipient"), "{e}");
        assert!(parse_binary_request(&[]).unwrap_err().contains("too short: 0 bytes"));
    }

    #[test]
    fn responses_format() {
        let v: Value = serde_json::from_str(&AppResponse::Send { id: 7 }.to_json()).unwrap();
        assert_eq!(v, json!({"type": "send", "id": 7}));
        let v: Value =
            serde_json::from_str(&AppResponse::SendFailed { id: 7, message: "lost".into() }.to_json()).unwrap();
        assert_eq!(v, json!({"type": "error", "message": "lost", "id": 7}));
        let v: Value = serde_json::from_str(&AppResponse::SelfAddress("a@b".into()).to_json()).unwrap();
        assert_eq!(v, json!({"type": "selfAddress", "address": "a@b"}));
        let v: Value = serde_json::from_str(&AppResponse::Error("bad \"x\"\n".into()).to_json()).unwrap();
        assert_eq!(v, json!({"type": "error", "message": "bad \"x\"\n"}));
    }

    #[test]
    fn delivery_frames() {
        assert_eq!(delivery_frame(b"hi".to_vec(), true), DeliveryFrame::Text("hi".into()));
        assert_eq!(delivery_frame(b"hi".to_vec(), false), DeliveryFrame::Binary(b"hi".to_vec()));
        assert_eq!(delivery_frame(vec![0xff, 0xfe], true), DeliveryFrame::Binary(vec![0xff, 0xfe]));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".*") {
            match parse_text_request(&s) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }

        #[test]
        fn arbitrary_binary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let r = parse_binary_request(&b);
            prop_assert_eq!(r.is_ok(), b.len() >= 64);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            t in proptest::option::of(prop_oneof![Just("send".to_string()), Just("selfAddress".to_string()), ".*"]),
            m in proptest::option::of(".*"),
            r in proptest::option::of(".*"),
        ) {
            let mut obj = Map::new();
            if let Some(t) = t { obj.insert("type".into(), Value::String(t)); }
            if let Some(m) = m { obj.insert("message".into(), Value::String(m)); }
            if let Some(r) = r { obj.insert("recipient".into(), Value::String(r)); }
            let _ = parse_text_request(&Value::Object(obj).to_string());
        }

        #[test]
        fn valid_sends_round_trip(c in any::<[u8; 32]>(), g in any::<[u8; 32]>(), msg in ".*") {
            let a = Recipient::new(c, g);
            let req = json!({"type": "send", "message": msg.clone(), "recipient": a.to_string()}).to_string();
            prop_assert_eq!(parse_text_request(&req).unwrap(), AppRequest::Send { recipient: a, message: msg.into_bytes() });
            let mut frame = a.to_bytes().to_vec();
            frame.extend_from_slice(b"xyz");
            prop_assert_eq!(parse_binary_request(&frame).unwrap(), AppRequest::Send { recipient: a, message: b"xyz".to_vec() });
        }
    }
}
