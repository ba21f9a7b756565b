//! Fuzz target `link_input`: the firmware link layer (`spinloop_firmware::link::Link`) driven
//! by arbitrary received bytes, interleaved with sends and timer ticks on a virtual clock.
//!
//! The input is a script of operations, each starting with an opcode byte:
//! - `0x00..=0x7F`: the next `opcode + 1` bytes (or what is left) arrive from the port
//!   (`handle_input`);
//! - `0x80..=0x9F`: the clock advances by `(opcode - 0x80) * 50` ms and `handle_timeout` runs;
//! - `0xA0..=0xBF`: `send` of the frame type with code from the next byte and a payload of
//!   `opcode - 0xA0` bytes taken from the input (invalid types are refused by `send`);
//! - `0xC0..=0xFF`: everything the link transmitted so far is looped back into it (its own
//!   frames arriving as if from the peer).
//!
//! After every operation all transmit buffers and events are drained. Checked besides "no
//! panic": every transmitted buffer is one whole frame that the framing layer decodes, the
//! number of unacknowledged frames stays within `max_queued + 1`, and an `Acked`/`Failed`
//! event only ever names a sequence number that `send` returned.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use spinloop_firmware::link::{Link, LinkConfig, LinkEvent};
use spinloop_firmware::{Frame, FrameType};

fuzz_target!(|data: &[u8]| {
    let config = LinkConfig::default();
    let max_unacked = config.max_queued + 1;
    let mut now = Instant::now();
    let mut link = Link::new(config, now);
    let mut sent: HashSet<u16> = HashSet::new();
    let mut looped: Vec<u8> = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op {
            0x00..=0x7F => {
                let n = (usize::from(op) + 1).min(rest.len());
                link.handle_input(&rest[..n], now);
                rest = &rest[n..];
            }
            0x80..=0x9F => {
                now += Duration::from_millis(u64::from(op - 0x80) * 50);
                link.handle_timeout(now);
            }
            0xA0..=0xBF => {
                let Some((&code, tail)) = rest.split_first() else {
                    break;
                };
                let n = usize::from(op - 0xA0).min(tail.len());
                let payload = tail[..n].to_vec();
                rest = &tail[n..];
                if let Some(kind) = FrameType::from_code(code)
                    && let Ok(seq) = link.send(kind, payload, now)
                {
                    sent.insert(seq);
                }
            }
            0xC0..=0xFF => {
                let bytes = std::mem::take(&mut looped);
                link.handle_input(&bytes, now);
            }
        }
        assert!(link.unacked() <= max_unacked, "send queue over its bound");
        while let Some(wire) = link.poll_transmit() {
            let (&last, stuffed) = wire.split_last().expect("non-empty transmit buffer");
            assert_eq!(last, 0, "transmit buffer ends with the delimiter");
            Frame::decode(stuffed).expect("the link transmits valid frames");
            looped.extend_from_slice(&wire);
        }
        // Bound the loop-back buffer (the link keeps answering its own frames).
        if looped.len() > 64 * 1024 {
            looped.clear();
        }
        while let Some(event) = link.poll_event() {
            match event {
                LinkEvent::Acked { seq } | LinkEvent::Failed { seq, .. } => {
                    assert!(
                        sent.contains(&seq),
                        "outcome for a sequence number never sent"
                    );
                }
                _ => {}
            }
        }
    }
});
