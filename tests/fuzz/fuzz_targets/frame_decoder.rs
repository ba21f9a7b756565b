//! Fuzz target `frame_decoder`: the firmware framing layer of `spinloop-firmware` on arbitrary
//! bytes.
//!
//! The input is fed three ways: to [`Frame::from_raw`] (an unstuffed frame), to
//! [`Frame::decode`] (one stuffed frame without its delimiter) and to a streaming [`Decoder`] in
//! chunks whose sizes come from the input itself. Checked besides "no panic":
//! - a frame that `from_raw` accepts re-encodes to exactly the input (`to_raw`), and a frame
//!   that `decode` accepts survives `encode` → `decode`;
//! - the decoder never buffers more than `MAX_ENCODED_FRAME_LEN` bytes of a partial frame;
//! - feeding the whole input at once and in chunks yields the same results;
//! - every frame out of the decoder carries at most `MAX_PAYLOAD_LEN` payload bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinloop_firmware::{Decoder, Frame, FrameError, MAX_ENCODED_FRAME_LEN, MAX_PAYLOAD_LEN};

fn drain(decoder: &mut Decoder, out: &mut Vec<Result<Frame, FrameError>>) {
    while let Some(result) = decoder.poll() {
        if let Ok(frame) = &result {
            assert!(frame.payload.len() <= MAX_PAYLOAD_LEN);
        }
        out.push(result);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::from_raw(data) {
        assert_eq!(frame.to_raw().expect("an accepted frame encodes"), data);
    }
    if let Ok(frame) = Frame::decode(data) {
        let wire = frame.encode().expect("an accepted frame encodes");
        let again = Frame::decode(&wire[..wire.len() - 1]).expect("re-decodes");
        assert_eq!(again, frame);
    }

    let mut whole = Decoder::new();
    whole.push(data);
    let mut expected = Vec::new();
    drain(&mut whole, &mut expected);

    // Chunk sizes from the input bytes (1..=64), so splits land everywhere.
    let mut chunked = Decoder::new();
    let mut got = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (usize::from(data[i % data.len()]) % 64 + 1).min(rest.len());
        chunked.push(&rest[..n]);
        assert!(chunked.partial_len() <= MAX_ENCODED_FRAME_LEN);
        drain(&mut chunked, &mut got);
        rest = &rest[n..];
        i += 1;
    }
    assert_eq!(got, expected, "chunked and whole-input decoding differ");
    assert_eq!(chunked.partial_len(), whole.partial_len());
});
