//! Application payload layouts: exact bytes, round trips, validation, and no panics on any
//! input.

use num_complex::Complex32;
use proptest::prelude::*;
use spinloop_firmware::FrameType;
use spinloop_firmware::app::{
    Capabilities, Chunk, ErrorReport, FidEnd, Hello, MAX_CHUNK_SAMPLES, Message, MessageError,
    Play, RejectReason, Role, WaveformBegin, WaveformCommit, WaveformStatus, chunks, samples_crc,
};
use spinloop_firmware::crc32c;

fn caps() -> Capabilities {
    Capabilities {
        f0_hz: 127.74e6,
        rf_dt_ns: 4000,
        max_waveform_samples: 4096,
        acquisition_points: 512,
        dwell_ns: 10_000,
        max_b1_hz: 1000.0,
    }
}

fn all_messages() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            protocol_version: 1,
            role: Role::Host,
            nonce: 7,
            reply_to: 0,
            console_id: "spinloopd".into(),
            capabilities: None,
        }),
        Message::Hello(Hello {
            protocol_version: 1,
            role: Role::Device,
            nonce: 0xDEAD_BEEF,
            reply_to: 7,
            console_id: "console-ü".into(),
            capabilities: Some(caps()),
        }),
        Message::Error(ErrorReport {
            code: 3,
            message: "no waveform 9".into(),
        }),
        Message::WaveformBegin(WaveformBegin {
            waveform_id: 9,
            sample_count: 300,
            sample_dt_ns: 4000,
            format: 1,
        }),
        Message::WaveformChunk(Chunk {
            id: 9,
            offset: 127,
            samples: vec![Complex32::new(1.5, -2.0); MAX_CHUNK_SAMPLES],
        }),
        Message::WaveformCommit(WaveformCommit {
            waveform_id: 9,
            crc: 0x1234_5678,
            sample_count: 300,
        }),
        Message::WaveformStatus(WaveformStatus {
            waveform_id: 9,
            result: Ok(()),
        }),
        Message::WaveformStatus(WaveformStatus {
            waveform_id: 9,
            result: Err(RejectReason::AmplitudeOverLimit),
        }),
        Message::Play(Play {
            waveform_id: 9,
            acquisition_id: 44,
            averages: 4,
        }),
        Message::FidChunk(Chunk {
            id: 44,
            offset: 0,
            samples: vec![Complex32::new(0.25, 0.5)],
        }),
        Message::FidEnd(FidEnd {
            acquisition_id: 44,
            waveform_id: 9,
            total_points: 512,
            dwell_ns: 10_000,
            crc: 0xCAFE_F00D,
            timestamp_us: 1 << 40,
        }),
        Message::FidStored { acquisition_id: 44 },
    ]
}

#[test]
fn every_message_round_trips() {
    for m in all_messages() {
        let bytes = m.encode().unwrap();
        assert!(bytes.len() <= 1024);
        assert_eq!(Message::decode(m.frame_type(), &bytes).unwrap(), m, "{m:?}");
    }
}

#[test]
fn exact_layouts() {
    let play = Message::Play(Play {
        waveform_id: 0x0102_0304,
        acquisition_id: 5,
        averages: 6,
    });
    assert_eq!(play.encode().unwrap(), [4, 3, 2, 1, 5, 0, 0, 0, 6, 0, 0, 0]);
    let status = Message::WaveformStatus(WaveformStatus {
        waveform_id: 2,
        result: Err(RejectReason::ChecksumMismatch),
    });
    assert_eq!(status.encode().unwrap(), [2, 0, 0, 0, 1, 1]);
    let hello = Message::Hello(Hello {
        protocol_version: 1,
        role: Role::Host,
        nonce: 0x0A0B_0C0D,
        reply_to: 0,
        console_id: "ab".into(),
        capabilities: None,
    });
    assert_eq!(
        hello.encode().unwrap(),
        [1, 0, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0, 0, 0, 2, b'a', b'b']
    );
    let device = Message::Hello(Hello {
        protocol_version: 1,
        role: Role::Device,
        nonce: 1,
        reply_to: 0x0102_0304,
        console_id: String::new(),
        capabilities: Some(caps()),
    });
    let bytes = device.encode().unwrap();
    assert_eq!(bytes.len(), 11 + 32);
    assert_eq!(&bytes[6..10], &[4, 3, 2, 1]);
    assert_eq!(&bytes[11..19], &127.74e6f64.to_le_bytes());
    assert_eq!(&bytes[19..23], &4000u32.to_le_bytes());
    assert_eq!(&bytes[35..43], &1000.0f64.to_le_bytes());
    let chunk = Message::FidChunk(Chunk {
        id: 1,
        offset: 2,
        samples: vec![Complex32::new(1.0, -1.0)],
    });
    let mut expected = vec![1, 0, 0, 0, 2, 0, 0, 0];
    expected.extend_from_slice(&1.0f32.to_le_bytes());
    expected.extend_from_slice(&(-1.0f32).to_le_bytes());
    assert_eq!(chunk.encode().unwrap(), expected);
    assert_eq!(
        Message::FidEnd(FidEnd {
            acquisition_id: 1,
            waveform_id: 2,
            total_points: 3,
            dwell_ns: 4,
            crc: 5,
            timestamp_us: 6
        })
        .encode()
        .unwrap()
        .len(),
        28
    );
}

#[test]
fn samples_crc_is_crc32c_of_wire_bytes() {
    let s = vec![Complex32::new(1.0, 2.0), Complex32::new(-3.5, 0.0)];
    let mut bytes = Vec::new();
    for x in &s {
        bytes.extend_from_slice(&x.re.to_le_bytes());
        bytes.extend_from_slice(&x.im.to_le_bytes());
    }
    assert_eq!(samples_crc(&s), crc32c(&bytes));
}

#[test]
fn chunking_covers_samples_in_order() {
    let s: Vec<Complex32> = (0..300).map(|i| Complex32::new(i as f32, 0.0)).collect();
    let c: Vec<Chunk> = chunks(3, &s).collect();
    assert_eq!(c.len(), 3);
    assert_eq!(c[1].offset, 127);
    assert_eq!(c[2].samples.len(), 300 - 254);
    let joined: Vec<Complex32> = c.into_iter().flat_map(|c| c.samples).collect();
    assert_eq!(joined, s);
}

#[test]
fn validation_errors() {
    // NaN sample
    let mut p = vec![1, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&f32::NAN.to_le_bytes());
    p.extend_from_slice(&0f32.to_le_bytes());
    assert_eq!(
        Message::decode(FrameType::WaveformChunk, &p),
        Err(MessageError::NonFinite { field: "samples" })
    );
    // ragged chunk
    assert!(matches!(
        Message::decode(FrameType::FidChunk, &p[..12]),
        Err(MessageError::BadLength { .. })
    ));
    // infinite f0
    let mut c = caps();
    c.f0_hz = f64::INFINITY;
    let mut bytes = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&c.f0_hz.to_le_bytes());
    bytes.extend_from_slice(&[1; 24]);
    assert_eq!(
        Message::decode(FrameType::Hello, &bytes),
        Err(MessageError::NonFinite { field: "f0_hz" })
    );
    // host hello with capabilities, device hello without
    assert!(Message::decode(FrameType::Hello, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
    assert!(Message::decode(FrameType::Hello, &[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    // bad role, overlong / non-UTF-8 id
    assert!(matches!(
        Message::decode(FrameType::Hello, &[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(MessageError::UnknownCode { field: "role", .. })
    ));
    assert!(matches!(
        Message::decode(FrameType::Hello, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 65]),
        Err(MessageError::StringTooLong { .. })
    ));
    assert_eq!(
        Message::decode(FrameType::Hello, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF]),
        Err(MessageError::BadUtf8 {
            field: "console_id"
        })
    );
    // zero averages, unknown format, unknown reason, status committed with reason
    assert!(Message::decode(FrameType::Play, &[0; 12]).is_err());
    let mut begin = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
    assert!(matches!(
        Message::decode(FrameType::WaveformBegin, &begin),
        Err(MessageError::UnknownCode {
            field: "format",
            ..
        })
    ));
    begin[12] = 1;
    assert!(Message::decode(FrameType::WaveformBegin, &begin).is_ok());
    assert!(Message::decode(FrameType::WaveformStatus, &[0, 0, 0, 0, 1, 99]).is_err());
    assert!(Message::decode(FrameType::WaveformStatus, &[0, 0, 0, 0, 0, 1]).is_err());
    assert_eq!(
        Message::decode(FrameType::Ack, &[]),
        Err(MessageError::NotApplication(FrameType::Ack))
    );
    // encoding limits
    let too_many = Message::WaveformChunk(Chunk {
        id: 0,
        offset: 0,
        samples: vec![Complex32::new(0.0, 0.0); MAX_CHUNK_SAMPLES + 1],
    });
    assert!(too_many.encode().is_err());
    let long_id = Message::Hello(Hello {
        protocol_version: 1,
        role: Role::Host,
        nonce: 0,
        reply_to: 0,
        console_id: "x".repeat(65),
        capabilities: None,
    });
    assert!(matches!(
        long_id.encode(),
        Err(MessageError::StringTooLong { .. })
    ));
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic(
        code in proptest::sample::select(FrameType::ALL.to_vec()),
        bytes in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        if let Ok(m) = Message::decode(code, &bytes) {
            // anything accepted re-encodes to the same bytes
            prop_assert_eq!(m.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn chunks_round_trip(
        id in any::<u32>(),
        offset in 0u32..1_000_000,
        raw in proptest::collection::vec((-1e6f32..1e6, -1e6f32..1e6), 1..=MAX_CHUNK_SAMPLES),
    ) {
        let m = Message::WaveformChunk(Chunk {
            id,
            offset,
            samples: raw.into_iter().map(|(a, b)| Complex32::new(a, b)).collect(),
        });
        prop_assert_eq!(Message::decode(FrameType::WaveformChunk, &m.encode().unwrap()).unwrap(), m);
    }
}
