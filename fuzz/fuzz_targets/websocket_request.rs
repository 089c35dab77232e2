//! The native client's local websocket API parsers
//! (`nym_client_core::parse_text_request`, `parse_binary_request`): text frames (as valid `str` and as lossy
//! UTF-8) and binary frames. Never panics; every error is a non-empty
//! message that survives the `{"type":"error"}` JSON reply; accepted
//! requests are consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_client_core::{
    delivery_frame, parse_binary_request, parse_text_request, AppRequest, AppResponse, DeliveryFrame, Recipient,
    ADDRESS_BYTES,
};

fn check_text(text: &str) {
    match parse_text_request(text) {
        Ok(AppRequest::Send { recipient, .. }) => {
            let again: Recipient = recipient.to_string().parse().expect("a recipient's own text parses");
            assert_eq!(again, recipient);
        }
        Ok(AppRequest::SendAnonymous { recipient, reply_surbs, .. }) => {
            let again: Recipient = recipient.to_string().parse().expect("a recipient's own text parses");
            assert_eq!(again, recipient);
            assert!(reply_surbs <= nym_client_core::fuzzing::reply::MAX_SURBS_PER_MESSAGE);
        }
        Ok(AppRequest::SelfAddress | AppRequest::Reply { .. }) => {}
        Err(e) => check_error(&e),
    }
}

fn check_error(e: &str) {
    assert!(!e.is_empty(), "empty error message");
    let reply = AppResponse::Error(e.to_string()).to_json();
    let v: serde_json::Value = serde_json::from_str(&reply).expect("error reply is JSON");
    assert_eq!(v["type"], "error");
    assert_eq!(v["message"], e);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
    check_text(&String::from_utf8_lossy(data));

    match parse_binary_request(data) {
        Ok(AppRequest::Send { recipient, message }) => {
            assert_eq!(&recipient.to_bytes()[..], &data[..ADDRESS_BYTES]);
            assert_eq!(message, &data[ADDRESS_BYTES..]);
        }
        Ok(AppRequest::SelfAddress | AppRequest::SendAnonymous { .. } | AppRequest::Reply { .. }) => {
            panic!("a binary frame is always a plain send")
        }
        Err(e) => {
            assert!(data.len() < ADDRESS_BYTES);
            check_error(&e);
        }
    }

    for text_last in [true, false] {
        match delivery_frame(data.to_vec(), text_last) {
            DeliveryFrame::Text(t) => assert!(text_last && t.as_bytes() == data),
            DeliveryFrame::Binary(b) => assert_eq!(b, data),
        }
    }
});
