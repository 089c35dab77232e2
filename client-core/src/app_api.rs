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
//! Request types of later versions (`sendAnonymous`, `reply`) are recognised
//! and refused with a clear "not supported yet" error, so adding them later is
//! a matter of new [`AppRequest`] variants.

use crate::address::{Recipient, ADDRESS_BYTES};
use serde_json::{json, Map, Value};

/// A valid request from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRequest {
    /// Send `message` to `recipient` through the mixnet.
    Send { recipient: Recipient, message: Vec<u8> },
    /// Ask for this client's own address.
    SelfAddress,
}

/// A reply from the client to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppResponse {
    /// A send request was accepted (queued for the mixnet).
    Send,
    SelfAddress(String),
    Error(String),
}

impl AppResponse {
    /// The response as a compact JSON text frame.
    pub fn to_json(&self) -> String {
        let v = match self {
            AppResponse::Send => json!({ "type": "send" }),
            AppResponse::SelfAddress(address) => json!({ "type": "selfAddress", "address": address }),
            AppResponse::Error(message) => json!({ "type": "error", "message": message }),
        };
        v.to_string()
    }
}

/// How a received message goes down the websocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFrame {
    Text(String),
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

/// Request types this version knows of but does not serve yet.
const NOT_YET_SUPPORTED: &[&str] = &["sendAnonymous", "reply"];
const KNOWN_TYPES: &str = "'send', 'selfAddress'";

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
        t if NOT_YET_SUPPORTED.contains(&t) => {
            Err(format!("request type '{t}' is not supported yet by this client (supported: {KNOWN_TYPES})"))
        }
        t => Err(format!("unknown request type '{t}' (expected one of {KNOWN_TYPES})")),
    }
}

fn parse_send(obj: &Map<String, Value>) -> Result<AppRequest, String> {
    let recipient_text = match (obj.get("recipient"), obj.get("recipient_address")) {
        (None, None) => return Err("missing field 'recipient' (or 'recipient_address') in 'send' request".into()),
        (Some(a), Some(b)) if a != b => {
            return Err("'recipient' and 'recipient_address' are both given and differ".into())
        }
        (Some(v), _) | (None, Some(v)) => match v {
            Value::String(s) => s,
            other => return Err(format!("field 'recipient' must be a string, got {}", json_kind(other))),
        },
    };
    let message = match obj.get("message") {
        None => return Err("missing field 'message' in 'send' request".into()),
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_string().into_bytes(),
    };
    let recipient: Recipient = recipient_text.parse().map_err(|e: crate::Error| e.to_string())?;
    Ok(AppRequest::Send { recipient, message })
}

/// Parses one binary frame: 64 bytes of recipient, then the payload.
pub fn parse_binary_request(bytes: &[u8]) -> Result<AppRequest, String> {
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
    fn self_address() {
        assert_eq!(parse_text_request(r#"{"type":"selfAddress"}"#).unwrap(), AppRequest::SelfAddress);
    }

    #[test]
    fn bad_text_requests_say_what_is_wrong() {
        let a = addr().to_string();
        assert!(err("{not json").contains("malformed JSON"));
        assert!(err("").contains("malformed JSON"));
        assert!(err("[1,2]").contains("must be a JSON object, got an array"));
        assert!(err(r#"{"message":"x"}"#).contains("missing field 'type'"));
        assert!(err(r#"{"type":7}"#).contains("'type' must be a string"));
        assert!(err(r#"{"type":"dance"}"#).contains("unknown request type 'dance'"));
        assert!(err(r#"{"type":"reply"}"#).contains("'reply' is not supported yet"));
        assert!(err(r#"{"type":"sendAnonymous"}"#).contains("'sendAnonymous' is not supported yet"));
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
        assert_eq!(AppResponse::Send.to_json(), r#"{"type":"send"}"#);
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
