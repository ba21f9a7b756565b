//! Fuzz target `scpi_response`: the SCPI response parser of `spinloop-scpi`
//! (`spinloop_scpi::parse_response`) and its stream framer (`spinloop_scpi::framer::Framer`).
//!
//! Input layout: the first byte selects the expected [`ResponseKind`] (its value modulo 8, in
//! the order of `KINDS`), the rest is the received bytes. They are parsed whole as one
//! response, then pushed through a block-aware `Framer` in chunks (sizes from the input) and
//! every message it yields is parsed as that kind. Checked besides "no panic": a block response
//! is never longer than its input, and a parsed `SYST:ERR?` entry prints (`Display`, the wire
//! form) to a response that parses back to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinloop_scpi::framer::Framer;
use spinloop_scpi::{Response, ResponseKind, parse_response};

const KINDS: [ResponseKind; 8] = [
    ResponseKind::Integer,
    ResponseKind::Number,
    ResponseKind::QuotedString,
    ResponseKind::Text,
    ResponseKind::Idn,
    ResponseKind::SystemError,
    ResponseKind::Opc,
    ResponseKind::Block,
];

fn check(kind: ResponseKind, bytes: &[u8]) {
    match parse_response(kind, bytes) {
        Ok(Response::Block(data)) => assert!(data.len() <= bytes.len()),
        Ok(Response::Error(entry)) => {
            let wire = entry.to_string();
            let back = parse_response(ResponseKind::SystemError, wire.as_bytes())
                .expect("a printed error entry parses");
            assert_eq!(back, Response::Error(entry));
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(selector % 8)];
    check(kind, bytes);

    let mut framer = Framer::new(1024, true);
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (usize::from(bytes[i % bytes.len()]) % 97 + 1).min(rest.len());
        framer.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
        while let Some(message) = framer.next_message() {
            if let Ok(message) = message {
                check(kind, &message);
            }
        }
    }
});
