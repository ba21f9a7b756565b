//! Framing tests: CRC-32C check values, COBS known vectors and errors, the documented frame
//! layout, every decode error, and property tests of the streaming decoder (round trip, random
//! input in random chunks, single bit flips, resynchronisation after garbage).

use proptest::prelude::*;
use spinloop_firmware::cobs::{self, CobsError};
use spinloop_firmware::crc32c::{Crc32c, crc32c};
use spinloop_firmware::{
    Decoder, Frame, FrameError, FrameType, MAX_ENCODED_FRAME_LEN, MAX_PAYLOAD_LEN,
    MAX_WIRE_FRAME_LEN,
};

fn drain(decoder: &mut Decoder) -> Vec<Result<Frame, FrameError>> {
    std::iter::from_fn(|| decoder.poll()).collect()
}

fn decode_all(bytes: &[u8]) -> Vec<Result<Frame, FrameError>> {
    let mut d = Decoder::new();
    d.push(bytes);
    drain(&mut d)
}

/// Header and payload with a correct CRC appended, then stuffed and delimited: for building
/// frames that pass the CRC but break some other rule.
fn wire_from_body(body: &[u8]) -> Vec<u8> {
    let mut raw = body.to_vec();
    raw.extend_from_slice(&crc32c(body).to_le_bytes());
    let mut wire = cobs::encode(&raw);
    wire.push(0);
    wire
}

fn sample_frame() -> Frame {
    Frame {
        kind: FrameType::Ack,
        flags: 0x80,
        seq: 0x1234,
        payload: vec![0xAA, 0xBB],
    }
}

#[test]
fn crc32c_check_values() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    let mut c = Crc32c::new();
    c.update(b"1234");
    c.update(b"");
    c.update(b"56789");
    assert_eq!(c.finish(), 0xE306_9283);
}

#[test]
fn cobs_known_vectors() {
    let up_to = |a: u8, b: u8| (a..=b).collect::<Vec<u8>>();
    let cat = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (vec![], vec![0x01]),
        (vec![0x00], vec![0x01, 0x01]),
        (vec![0x00, 0x00], vec![0x01, 0x01, 0x01]),
        (vec![0x00, 0x11, 0x00], vec![0x01, 0x02, 0x11, 0x01]),
        (
            vec![0x11, 0x22, 0x00, 0x33],
            vec![0x03, 0x11, 0x22, 0x02, 0x33],
        ),
        (
            vec![0x11, 0x22, 0x33, 0x44],
            vec![0x05, 0x11, 0x22, 0x33, 0x44],
        ),
        (
            vec![0x11, 0x00, 0x00, 0x00],
            vec![0x02, 0x11, 0x01, 0x01, 0x01],
        ),
        // 254 non-zero bytes: one full block, no trailing empty block.
        (up_to(0x01, 0xFE), cat(&[&[0xFF], &up_to(0x01, 0xFE)])),
        // 255 bytes starting with zero.
        (up_to(0x00, 0xFE), cat(&[&[0x01, 0xFF], &up_to(0x01, 0xFE)])),
        // 255 non-zero bytes: a full block, then a block of one.
        (
            up_to(0x01, 0xFF),
            cat(&[&[0xFF], &up_to(0x01, 0xFE), &[0x02, 0xFF]]),
        ),
        (
            cat(&[&up_to(0x02, 0xFF), &[0x00]]),
            cat(&[&[0xFF], &up_to(0x02, 0xFF), &[0x01, 0x01]]),
        ),
        (
            cat(&[&up_to(0x03, 0xFF), &[0x00, 0x01]]),
            cat(&[&[0xFE], &up_to(0x03, 0xFF), &[0x02, 0x01]]),
        ),
    ];
    for (plain, stuffed) in cases {
        assert_eq!(cobs::encode(&plain), stuffed, "encode {plain:02x?}");
        assert_eq!(
            cobs::decode(&stuffed).unwrap(),
            plain,
            "decode {stuffed:02x?}"
        );
        assert!(stuffed.len() <= cobs::max_encoded_len(plain.len()));
    }
}

#[test]
fn cobs_accepts_trailing_empty_block_after_full_block() {
    let plain: Vec<u8> = (0x01..=0xFE).collect();
    let mut stuffed = vec![0xFF];
    stuffed.extend_from_slice(&plain);
    stuffed.push(0x01);
    assert_eq!(cobs::decode(&stuffed).unwrap(), plain);
}

#[test]
fn cobs_decode_errors() {
    assert_eq!(cobs::decode(&[]), Err(CobsError::Empty));
    assert_eq!(
        cobs::decode(&[0x03, 0x11, 0x00, 0x01]),
        Err(CobsError::ZeroByte { offset: 2 })
    );
    assert_eq!(
        cobs::decode(&[0x02, 0x11, 0x00]),
        Err(CobsError::ZeroByte { offset: 2 })
    );
    assert_eq!(
        cobs::decode(&[0x05, 0x11, 0x22]),
        Err(CobsError::Truncated {
            offset: 0,
            code: 5,
            needed: 4,
            available: 2
        })
    );
    assert_eq!(
        cobs::decode(&[0x02, 0x11, 0x04, 0x22]),
        Err(CobsError::Truncated {
            offset: 2,
            code: 4,
            needed: 3,
            available: 1
        })
    );
    let mut small = [0u8; 2];
    assert_eq!(
        cobs::decode_to_slice(&[0x04, 0x11, 0x22, 0x33], &mut small),
        Err(CobsError::OutputTooSmall { capacity: 2 })
    );
    let mut exact = [0u8; 3];
    assert_eq!(
        cobs::decode_to_slice(&[0x04, 0x11, 0x22, 0x33], &mut exact),
        Ok(3)
    );
    assert_eq!(exact, [0x11, 0x22, 0x33]);
    // Error messages name what was wrong.
    let msg = CobsError::ZeroByte { offset: 7 }.to_string();
    assert!(msg.contains("zero byte") && msg.contains('7'), "{msg}");
}

#[test]
fn frame_layout_matches_the_documented_byte_table() {
    let frame = sample_frame();
    let raw = frame.to_raw().unwrap();
    let body = [0x53, 0x01, 0x02, 0x80, 0x34, 0x12, 0x02, 0x00, 0xAA, 0xBB];
    assert_eq!(&raw[..10], &body);
    assert_eq!(&raw[10..], &crc32c(&body).to_le_bytes());
    let wire = frame.encode().unwrap();
    let mut expected = cobs::encode(&raw);
    expected.push(0x00);
    assert_eq!(wire, expected);
    assert!(!wire[..wire.len() - 1].contains(&0));
    assert_eq!(Frame::decode(&wire[..wire.len() - 1]).unwrap(), frame);
    assert_eq!(Frame::from_raw(&raw).unwrap(), frame);
}

#[test]
fn frame_type_codes() {
    let codes: Vec<u8> = FrameType::ALL.iter().map(|k| k.code()).collect();
    assert_eq!(
        codes,
        [
            0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x11, 0x12, 0x13, 0x20, 0x30, 0x31, 0x32
        ]
    );
    for code in 0..=255u8 {
        match FrameType::try_from(code) {
            Ok(kind) => assert_eq!(u8::from(kind), code),
            Err(e) => {
                assert!(!codes.contains(&code));
                assert_eq!(e, FrameError::UnknownType { code });
            }
        }
    }
}

#[test]
fn maximum_payload_fits_the_documented_bounds() {
    for fill in [0x00u8, 0x01, 0xFF] {
        let frame = Frame::new(
            FrameType::WaveformChunk,
            0xFFFF,
            vec![fill; MAX_PAYLOAD_LEN],
        );
        let wire = frame.encode().unwrap();
        assert!(wire.len() <= MAX_WIRE_FRAME_LEN, "{} bytes", wire.len());
        assert_eq!(decode_all(&wire), vec![Ok(frame)]);
    }
    assert_eq!(MAX_ENCODED_FRAME_LEN, 1041);
    assert_eq!(MAX_WIRE_FRAME_LEN, 1042);
    let too_big = Frame::new(FrameType::FidChunk, 0, vec![1; MAX_PAYLOAD_LEN + 1]);
    assert_eq!(
        too_big.encode(),
        Err(FrameError::PayloadTooLarge {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
}

#[test]
fn each_decode_error_is_reported_and_the_next_frame_still_decodes() {
    let good = sample_frame();
    let good_wire = good.encode().unwrap();
    let mut corrupted_crc = good.to_raw().unwrap();
    let last = corrupted_crc.len() - 1;
    corrupted_crc[last] ^= 0x01;
    let mut corrupted_crc_wire = cobs::encode(&corrupted_crc);
    corrupted_crc_wire.push(0);

    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (
            wire_from_body(&[0x54, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00]),
            FrameError::BadMagic { found: 0x54 },
        ),
        (
            wire_from_body(&[0x53, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00]),
            FrameError::BadVersion { found: 2 },
        ),
        (
            wire_from_body(&[0x53, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00, 0x00]),
            FrameError::UnknownType { code: 0x99 },
        ),
        (
            wire_from_body(&[0x53, 0x01, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0xAA]),
            FrameError::LengthMismatch {
                declared: 3,
                actual: 1,
            },
        ),
        (
            wire_from_body(&[0x53, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x04]),
            FrameError::PayloadTooLarge {
                len: 1025,
                max: MAX_PAYLOAD_LEN,
            },
        ),
        (
            wire_from_body(&[0x53, 0x01, 0x02]),
            FrameError::TooShort { len: 7, min: 12 },
        ),
        (
            corrupted_crc_wire,
            FrameError::CrcMismatch {
                received: crc32c(&corrupted_crc[..last - 3]) ^ 0x0100_0000,
                computed: crc32c(&corrupted_crc[..last - 3]),
            },
        ),
        (
            vec![0x05, 0x11, 0x00],
            FrameError::Cobs(CobsError::Truncated {
                offset: 0,
                code: 5,
                needed: 4,
                available: 1,
            }),
        ),
    ];
    for (bad, error) in cases {
        let mut stream = bad.clone();
        stream.extend_from_slice(&good_wire);
        assert_eq!(
            decode_all(&stream),
            vec![Err(error.clone()), Ok(good.clone())],
            "{error}"
        );
    }
}

#[test]
fn oversize_block_is_discarded_without_unbounded_buffering() {
    let good = sample_frame();
    let mut d = Decoder::new();
    d.push(&[0x00]);
    for _ in 0..1000 {
        d.push(&[0x07; 997]);
        assert!(d.partial_len() <= MAX_ENCODED_FRAME_LEN);
    }
    d.push(&[0x00]); // ends the oversize block
    d.push(&good.encode().unwrap());
    assert_eq!(
        drain(&mut d),
        vec![
            Err(FrameError::Oversize {
                max: MAX_ENCODED_FRAME_LEN
            }),
            Ok(good.clone())
        ]
    );
    // Exactly the maximum is not oversize (it fails COBS/CRC instead); one more byte is.
    let mut at_max = vec![0x07; MAX_ENCODED_FRAME_LEN];
    at_max.push(0);
    assert!(!matches!(
        decode_all(&at_max)[..],
        [Err(FrameError::Oversize { .. })]
    ));
    let mut over = vec![0x07; MAX_ENCODED_FRAME_LEN + 1];
    over.push(0);
    assert_eq!(
        decode_all(&over),
        vec![Err(FrameError::Oversize {
            max: MAX_ENCODED_FRAME_LEN
        })]
    );
    assert_eq!(
        Frame::decode(&over[..MAX_ENCODED_FRAME_LEN + 1]),
        Err(FrameError::Oversize {
            max: MAX_ENCODED_FRAME_LEN
        })
    );
}

#[test]
fn byte_at_a_time_and_empty_blocks() {
    let frames = [
        sample_frame(),
        Frame::new(FrameType::Hello, 0, vec![]),
        Frame::new(FrameType::FidEnd, 65535, vec![0; 300]),
    ];
    let mut d = Decoder::new();
    d.push(&[0, 0, 0]);
    let mut got = Vec::new();
    for f in &frames {
        for &b in &f.encode().unwrap() {
            d.push(&[b]);
            got.extend(drain(&mut d));
        }
        d.push(&[0, 0]);
    }
    assert_eq!(got, frames.iter().cloned().map(Ok).collect::<Vec<_>>());
    assert_eq!(d.partial_len(), 0);
    d.push(&[0x01, 0x02]);
    assert_eq!(d.partial_len(), 2);
    d.reset();
    d.push(&frames[0].encode().unwrap());
    assert_eq!(drain(&mut d), vec![Ok(frames[0].clone())]);
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        proptest::sample::select(FrameType::ALL.to_vec()),
        any::<u8>(),
        any::<u16>(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..=32),
            proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD_LEN),
            proptest::collection::vec(prop_oneof![Just(0u8), 1..=255u8], 0..=MAX_PAYLOAD_LEN),
        ],
    )
        .prop_map(|(kind, flags, seq, payload)| Frame {
            kind,
            flags,
            seq,
            payload,
        })
}

/// Feeds `bytes` in chunks whose sizes cycle through `sizes`, polling after every push.
fn decode_chunked(bytes: &[u8], sizes: &[usize]) -> Vec<Result<Frame, FrameError>> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        out.extend(drain(&mut d));
        i += 1;
    }
    assert!(d.partial_len() <= MAX_ENCODED_FRAME_LEN);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn cobs_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..=1200)) {
        let stuffed = cobs::encode(&plain);
        prop_assert!(!stuffed.contains(&0));
        prop_assert!(stuffed.len() <= cobs::max_encoded_len(plain.len()));
        prop_assert_eq!(cobs::decode(&stuffed).unwrap(), plain);
    }

    #[test]
    fn frame_round_trip(frame in arb_frame(), sizes in proptest::collection::vec(1usize..300, 1..8)) {
        let wire = frame.encode().unwrap();
        prop_assert!(wire.len() <= MAX_WIRE_FRAME_LEN);
        prop_assert_eq!(*wire.last().unwrap(), 0);
        prop_assert!(!wire[..wire.len() - 1].contains(&0));
        prop_assert_eq!(decode_chunked(&wire, &sizes), vec![Ok(frame.clone())]);
        prop_assert_eq!(Frame::decode(&wire[..wire.len() - 1]).unwrap(), frame);
    }

    #[test]
    fn arbitrary_streams_in_any_chunking_never_panic(
        pieces in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..400),
                proptest::collection::vec(prop_oneof![Just(0u8), 1..=255u8], 0..1500),
                arb_frame().prop_map(|f| f.encode().unwrap()),
            ],
            0..8,
        ),
        sizes in proptest::collection::vec(1usize..2000, 1..8),
    ) {
        let stream = pieces.concat();
        let chunked = decode_chunked(&stream, &sizes);
        // Chunking does not change the outcome.
        prop_assert_eq!(&chunked, &decode_all(&stream));
        // Every accepted frame is a valid frame.
        for frame in chunked.into_iter().flatten() {
            prop_assert!(frame.payload.len() <= MAX_PAYLOAD_LEN);
            let wire = frame.encode().unwrap();
            prop_assert_eq!(decode_all(&wire), vec![Ok(frame)]);
        }
    }

    #[test]
    fn single_bit_flip_is_never_accepted_as_another_frame(frame in arb_frame(), bit in any::<usize>()) {
        let mut wire = frame.encode().unwrap();
        let bit = bit % (wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        wire.push(0); // in case the delimiter was the flipped byte
        for got in decode_all(&wire).into_iter().flatten() {
            prop_assert_eq!(got, frame.clone());
        }
        // Before stuffing, CRC-32C catches every single-bit error.
        let mut raw = frame.to_raw().unwrap();
        let raw_bit = bit % (raw.len() * 8);
        raw[raw_bit / 8] ^= 1 << (raw_bit % 8);
        let is_crc_mismatch = matches!(Frame::from_raw(&raw), Err(FrameError::CrcMismatch { .. }));
        prop_assert!(is_crc_mismatch);
    }

    #[test]
    fn frames_separated_by_garbage_are_all_recovered(
        parts in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200), arb_frame()),
            1..6,
        ),
        sizes in proptest::collection::vec(1usize..500, 1..8),
    ) {
        let mut stream = Vec::new();
        for (garbage, frame) in &parts {
            stream.extend_from_slice(garbage);
            stream.push(0);
            stream.extend_from_slice(&frame.encode().unwrap());
        }
        let recovered: Vec<Frame> = decode_chunked(&stream, &sizes)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let expected: Vec<Frame> = parts.into_iter().map(|(_, f)| f).collect();
        prop_assert_eq!(recovered, expected);
    }
}
