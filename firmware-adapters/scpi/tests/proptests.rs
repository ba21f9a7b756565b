//! Property tests: garbage never panics, blocks round-trip, DAC scaling within half an LSB.

mod common;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use spinloop_scpi::block::{decode_block, encode_block};
use spinloop_scpi::command::parse_program_message;
use spinloop_scpi::dac::{DacConfig, scale, unscale};
use spinloop_scpi::framer::Framer;
use spinloop_scpi::{
    AwgClient, ClientConfig, EchoHook, InstrumentConfig, Response, ResponseKind, SimInstrument,
    parse_response,
};

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

/// Bytes biased towards SCPI syntax, so the parsers get past their first check.
fn scpi_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            any::<u8>(),
            prop::sample::select(b"#0123456789,;:\"' \n\r+-.eEHQB*?".to_vec()),
        ],
        0..64,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_response_never_panics(kind in 0usize..8, bytes in scpi_bytes()) {
        let _ = parse_response(KINDS[kind], &bytes);
    }

    #[test]
    fn parse_response_never_panics_on_raw_bytes(kind in 0usize..8, bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_response(KINDS[kind], &bytes);
    }

    #[test]
    fn program_parser_never_panics(bytes in scpi_bytes()) {
        let _ = parse_program_message(&bytes);
    }

    #[test]
    fn instrument_never_panics(chunks in prop::collection::vec(scpi_bytes(), 0..8)) {
        let mut i = SimInstrument::new(
            InstrumentConfig { max_message_len: 40, ..InstrumentConfig::default() },
            Box::new(EchoHook { dwell_s: 1e-6 }),
        );
        let now = Instant::now();
        for c in &chunks {
            i.handle_input(c, now);
            while i.poll_transmit().is_some() {}
        }
    }

    #[test]
    fn client_never_panics(chunks in prop::collection::vec(scpi_bytes(), 0..8), ops in prop::collection::vec(0u8..4, 0..6)) {
        let mut cfg = ClientConfig::new(common::dac());
        cfg.max_response_len = 48;
        let mut now = Instant::now();
        let mut c = AwgClient::new(cfg, now).unwrap();
        for (k, chunk) in chunks.iter().enumerate() {
            match ops.get(k) {
                Some(0) => { let _ = c.upload(k as u64, &common::waveform(4), now); }
                Some(1) => { let _ = c.play(k as u64, 1, now); }
                Some(2) => { let _ = c.fetch(1, now); }
                Some(_) => { now += Duration::from_secs(3); c.handle_timeout(now); }
                None => {}
            }
            c.handle_input(chunk, now);
            while c.poll_transmit().is_some() {}
            while c.poll_event().is_some() {}
        }
    }

    #[test]
    fn block_round_trip(data in prop::collection::vec(any::<u8>(), 0..3000), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut enc = encode_block(&data);
        let len = enc.len();
        enc.extend_from_slice(&tail);
        let (dec, used) = decode_block(&enc).unwrap();
        prop_assert_eq!(dec, data.as_slice());
        prop_assert_eq!(used, len);
        prop_assert_eq!(
            parse_response(ResponseKind::Block, &enc[..len]).unwrap(),
            Response::Block(data.clone())
        );
    }

    #[test]
    fn framer_reassembles_blocks_split_anywhere(
        data in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut stream = b"WAV:DATA A,".to_vec();
        stream.extend(encode_block(&data));
        stream.extend(b";\"#1\n\"\n*OPC?\n");
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut f = Framer::new(10_000, true);
        let mut msgs = Vec::new();
        for w in points.windows(2) {
            f.push(&stream[w[0]..w[1]]);
            while let Some(m) = f.next_message() {
                msgs.push(m.unwrap());
            }
        }
        // The LF inside the quoted string ends a message: LF always terminates outside blocks.
        prop_assert_eq!(msgs.len(), 3);
        let mut first = b"WAV:DATA A,".to_vec();
        first.extend(encode_block(&data));
        first.extend(b";\"#1");
        prop_assert_eq!(&msgs[0], &first);
        prop_assert_eq!(&msgs[2], &b"*OPC?".to_vec());
    }

    #[test]
    fn dac_round_trip_within_half_lsb(
        max_code in prop_oneof![Just(32767i16), Just(8191i16), 1i16..32767],
        full_scale_hz in 1.0f64..1e5,
        samples in prop::collection::vec((-1.0f64..=1.0, -1.0f64..=1.0), 1..64),
    ) {
        let cfg = DacConfig { full_scale_hz, max_code, amplitude_limit_hz: 2.0 * full_scale_hz };
        let w: Vec<[f64; 2]> = samples.iter().map(|&(i, q)| [i * full_scale_hz, q * full_scale_hz]).collect();
        let q = scale(&cfg, &w).unwrap();
        let back = unscale(&cfg, &q.codes);
        let half = cfg.max_channel_error_hz() * (1.0 + 1e-12);
        for (a, b) in w.iter().zip(&back) {
            prop_assert!((a[0] - b[0]).abs() <= half);
            prop_assert!((a[1] - b[1]).abs() <= half);
        }
        for c in &q.codes {
            prop_assert!(c[0].abs() <= max_code && c[1].abs() <= max_code);
        }
        prop_assert!(q.report.max_channel_error_hz <= half);
        prop_assert!(q.report.max_magnitude_error_hz <= cfg.max_magnitude_error_hz() * (1.0 + 1e-12));
        // Codes are a fixed point: unscale then scale gives the same codes.
        prop_assert_eq!(scale(&cfg, &back).unwrap().codes, q.codes);
    }

    #[test]
    fn numbers_round_trip_through_nr3(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        let text = format!("{v:+E}");
        prop_assert_eq!(parse_response(ResponseKind::Number, text.as_bytes()).unwrap(), Response::Number(v));
    }
}
