//! Client ↔ simulated instrument, back to back in memory.

mod common;

use std::time::Duration;

use common::{Harness, dac, inst_config, waveform};
use spinloop_scpi::{
    ClientError, ClientEvent, DacError, FailReason, InstrumentEvent, SimInstrument,
    dac::{Channel, scale},
    instrument::{AcquisitionRequest, Fid},
};

#[test]
fn connect_identifies_and_sets_byte_order() {
    let mut h = Harness::new(Harness::default_config());
    let ev = h.run();
    let [ClientEvent::Connected { idn }] = ev.as_slice() else {
        panic!("events: {ev:?}");
    };
    assert_eq!(idn.manufacturer, "spinloop");
    assert_eq!(idn.model, "SIM-AWG");
    assert_eq!(h.client.idn(), Some(idn));
    assert_eq!(
        h.sent_text(),
        ["*CLS", "*IDN?", "FORM:BORD SWAP", "SYST:ERR?"]
    );
    assert!(h.inst.is_little_endian());
    assert_eq!(h.client.state(), spinloop_scpi::ConnectionState::Connected);
}

#[test]
fn connect_with_reset_and_matching_model() {
    let mut cfg = Harness::default_config();
    cfg.reset_on_connect = true;
    cfg.expected_model = Some("sim-awg".into());
    let mut h = Harness::new(cfg);
    let ev = h.run();
    assert!(
        matches!(ev.as_slice(), [ClientEvent::Connected { .. }]),
        "{ev:?}"
    );
    assert_eq!(
        h.sent_text(),
        ["*CLS", "*RST", "*IDN?", "FORM:BORD SWAP", "SYST:ERR?"]
    );
}

#[test]
fn wrong_model_fails_connect_and_refuses_operations() {
    let mut cfg = Harness::default_config();
    cfg.expected_model = Some("33522B".into());
    let mut h = Harness::new(cfg);
    // Queued before the connect finishes: fails with NotConnected.
    h.client.upload(1, &waveform(16), h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(&ev[0], ClientEvent::ConnectFailed { reason: FailReason::ModelMismatch { expected, idn } }
            if expected == "33522B" && idn.model == "SIM-AWG"),
        "{ev:?}"
    );
    assert_eq!(
        ev[1],
        ClientEvent::UploadFailed {
            id: 1,
            reason: FailReason::NotConnected
        }
    );
    assert_eq!(
        h.client.upload(2, &waveform(16), h.now),
        Err(ClientError::NotConnected)
    );
    assert!(h.inst.waveform("SL1").is_none());
}

#[test]
fn upload_stores_exact_codes() {
    let mut h = Harness::connected(Harness::default_config());
    let w = waveform(256);
    let report = h.client.upload(7, &w, h.now).unwrap();
    let ev = h.run();
    let [
        ClientEvent::Uploaded {
            id: 7,
            name,
            crc,
            attempts: 1,
        },
    ] = ev.as_slice()
    else {
        panic!("events: {ev:?}");
    };
    assert_eq!(name, "SL7");
    let expected = scale(&dac(), &w).unwrap();
    assert_eq!(h.inst.waveform("SL7").unwrap(), expected.codes.as_slice());
    assert_eq!(
        *crc,
        spinloop_firmware::crc32c(&spinloop_scpi::dac::encode_codes(&expected.codes))
    );
    assert_eq!(report, expected.report);
    assert!(report.max_channel_error_hz <= dac().max_channel_error_hz());
    assert_eq!(
        h.sent_text(),
        [
            "WAV:DATA SL7,#<block>",
            "WAV:CRC? SL7",
            "*OPC?",
            "SYST:ERR?"
        ]
    );
    // The block header is exact: 256 points × 4 bytes = 1024 bytes.
    assert!(h.sent[0].starts_with(b"WAV:DATA SL7,#41024"));
    assert_eq!(h.sent[0].len(), "WAV:DATA SL7,#41024".len() + 1024 + 1);
}

#[test]
fn crc_mismatch_retries_and_succeeds() {
    let mut h = Harness::connected(Harness::default_config());
    h.inst.corrupt_next_blocks(2);
    let w = waveform(64);
    h.client.upload(3, &w, h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(
            ev.as_slice(),
            [ClientEvent::Uploaded {
                id: 3,
                attempts: 3,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(
        h.inst.waveform("SL3").unwrap(),
        scale(&dac(), &w).unwrap().codes.as_slice()
    );
    assert_eq!(
        h.sent_text(),
        [
            "WAV:DATA SL3,#<block>",
            "WAV:CRC? SL3",
            "*CLS",
            "WAV:DATA SL3,#<block>",
            "WAV:CRC? SL3",
            "*CLS",
            "WAV:DATA SL3,#<block>",
            "WAV:CRC? SL3",
            "*OPC?",
            "SYST:ERR?"
        ]
    );
}

#[test]
fn crc_mismatch_exhausts_retries() {
    let mut cfg = Harness::default_config();
    cfg.max_upload_retries = 1;
    let mut h = Harness::connected(cfg);
    h.inst.corrupt_next_blocks(5);
    h.client.upload(3, &waveform(64), h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(ev.as_slice(), [ClientEvent::UploadFailed { id: 3, reason: FailReason::CrcMismatch { attempts: 2, local, reported } }] if local != reported),
        "{ev:?}"
    );
    // The session carries on.
    h.inst.corrupt_next_blocks(0);
    h.client.upload(4, &waveform(8), h.now).unwrap();
    assert!(matches!(
        h.run().as_slice(),
        [ClientEvent::Uploaded { id: 4, .. }]
    ));
}

#[test]
fn instrument_error_fails_upload_with_its_code_and_message() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.upload(5, &waveform(32), h.now).unwrap();
    // A device error raised while the upload is in progress (queued before SYST:ERR? runs).
    h.inst.inject_error(-222, "Data out of range;amplifier");
    let ev = h.run();
    assert_eq!(
        ev,
        [ClientEvent::UploadFailed {
            id: 5,
            reason: FailReason::Instrument {
                code: -222,
                message: "Data out of range;amplifier".into(),
                more: vec![]
            }
        }]
    );
    // The queue was drained until 0: the next upload succeeds.
    h.client.upload(6, &waveform(32), h.now).unwrap();
    assert!(matches!(
        h.run().as_slice(),
        [ClientEvent::Uploaded { id: 6, .. }]
    ));
}

#[test]
fn multiple_instrument_errors_are_all_reported() {
    let mut h = Harness::connected(Harness::default_config());
    h.inst.inject_error(-113, "Undefined header");
    h.inst.inject_error(-350, "Queue overflow");
    h.client.upload(5, &waveform(32), h.now).unwrap();
    let ev = h.run();
    let [
        ClientEvent::UploadFailed {
            reason:
                FailReason::Instrument {
                    code,
                    message,
                    more,
                },
            ..
        },
    ] = ev.as_slice()
    else {
        panic!("{ev:?}");
    };
    assert_eq!((*code, message.as_str()), (-113, "Undefined header"));
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].code, -350);
    assert_eq!(h.inst.error_queue().count(), 0);
}

#[test]
fn out_of_range_codes_rejected_by_instrument() {
    // The client believes the DAC is 16-bit; the instrument is 14-bit: -222 from the device.
    let mut cfg = Harness::default_config();
    cfg.dac = spinloop_scpi::DacConfig::new_16bit(1000.0);
    let mut h = Harness::connected(cfg);
    h.client.upload(9, &[[900.0, 0.0]], h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(&ev[..], [ClientEvent::UploadFailed { id: 9, reason: FailReason::Instrument { code: -222, message, .. } }] if message.starts_with("Data out of range")),
        "{ev:?}"
    );
    assert!(h.inst.waveform("SL9").is_none());
}

#[test]
fn amplitude_over_limit_refused_before_sending() {
    let mut h = Harness::connected(Harness::default_config());
    let mut w = waveform(32);
    w[17] = [600.0, 600.0]; // |B1| = 848.5 Hz > 800 Hz
    let err = h.client.upload(1, &w, h.now).unwrap_err();
    let ClientError::Dac(DacError::OverLimit {
        index,
        magnitude_hz,
        limit_hz,
    }) = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(index, 17);
    assert!((magnitude_hz - 848.528).abs() < 1e-3);
    assert_eq!(limit_hz, 800.0);
    assert!(h.client.poll_transmit().is_none());
    assert!(h.client.is_idle());
    assert!(h.run().is_empty());
}

#[test]
fn nan_and_inf_refused_before_sending() {
    let mut h = Harness::connected(Harness::default_config());
    let mut w = waveform(8);
    w[3][1] = f64::NAN;
    let err = h.client.upload(1, &w, h.now).unwrap_err();
    assert!(
        matches!(err, ClientError::Dac(DacError::NonFinite { index: 3, channel: Channel::Q, value }) if value.is_nan()),
        "{err:?}"
    );
    w[3][1] = 0.0;
    w[5][0] = f64::NEG_INFINITY;
    let err = h.client.upload(1, &w, h.now).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Dac(DacError::NonFinite {
            index: 5,
            channel: Channel::I,
            ..
        })
    ));
    assert!(h.client.poll_transmit().is_none());
}

#[test]
fn response_timeout_reports_error_and_resyncs() {
    let mut h = Harness::connected(Harness::default_config());
    h.inst.drop_next_responses(1); // the WAV:CRC? answer is lost
    let t0 = h.now;
    h.client.upload(2, &waveform(16), h.now).unwrap();
    h.pump();
    assert!(h.client.poll_event().is_none());
    let deadline = h.client.poll_timeout().expect("query timer");
    assert_eq!(deadline, t0 + Duration::from_secs(2));
    // Nothing happens before the deadline.
    h.client.handle_timeout(deadline - Duration::from_millis(1));
    assert!(h.client.poll_event().is_none());
    h.sent.clear();
    let ev = h.run();
    assert_eq!(
        ev,
        [
            ClientEvent::UploadFailed {
                id: 2,
                reason: FailReason::Timeout {
                    query: "WAV:CRC? SL2".into()
                }
            },
            ClientEvent::Resynced
        ]
    );
    assert_eq!(h.sent_text(), ["*CLS"]);
    // In step again: the next upload works.
    h.client.upload(3, &waveform(16), h.now).unwrap();
    assert!(matches!(
        h.run().as_slice(),
        [ClientEvent::Uploaded { id: 3, .. }]
    ));
}

#[test]
fn late_response_during_drain_is_discarded() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.play(1, 1, h.now).unwrap(); // unknown waveform → -224 later
    // Hold the instrument's answer back: deliver the client's bytes only.
    while let Some(b) = h.client.poll_transmit() {
        h.inst.handle_input(&b, h.now);
    }
    let late: Vec<Vec<u8>> = std::iter::from_fn(|| h.inst.poll_transmit()).collect();
    let deadline = h.client.poll_timeout().unwrap();
    h.now = deadline;
    h.client.handle_timeout(h.now);
    for l in &late {
        h.client.handle_input(l, h.now); // arrives during the drain
    }
    let ev = h.run();
    assert!(
        matches!(
            &ev[..],
            [
                ClientEvent::PlayFailed {
                    reason: FailReason::Timeout { .. },
                    ..
                },
                ClientEvent::Resynced
            ]
        ),
        "{ev:?}"
    );
}

#[test]
fn garbled_response_fails_and_resyncs() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.play(1, 1, h.now).unwrap();
    while let Some(b) = h.client.poll_transmit() {
        h.inst.handle_input(&b, h.now);
    }
    while h.inst.poll_transmit().is_some() {}
    h.client.handle_input(b"\xff\xfegarbage\n", h.now);
    let ev = h.run();
    assert!(
        matches!(&ev[..], [ClientEvent::PlayFailed { reason: FailReason::BadResponse { query, .. }, .. }, ClientEvent::Resynced] if query == "*OPC?"),
        "{ev:?}"
    );
}

#[test]
fn play_unknown_waveform_fails_with_instrument_error() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.play(42, 1, h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(&ev[..], [ClientEvent::PlayFailed { id: 42, acquisition: 1, reason: FailReason::Instrument { code: -224, message, .. } }] if message.contains("SL42")),
        "{ev:?}"
    );
}

#[test]
fn play_and_fetch_round_trip_within_quantization_bound() {
    let mut h = Harness::connected(Harness::default_config());
    let w = waveform(200);
    h.client.upload(1, &w, h.now).unwrap();
    h.client.play(1, 77, h.now).unwrap();
    h.client.fetch(77, h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(ev[0], ClientEvent::Uploaded { id: 1, .. }),
        "{ev:?}"
    );
    assert_eq!(
        ev[1],
        ClientEvent::Played {
            id: 1,
            acquisition: 77
        }
    );
    let ClientEvent::Fid {
        acquisition: 77,
        points,
        dwell_s,
    } = &ev[2]
    else {
        panic!("{ev:?}");
    };
    assert_eq!(ev.len(), 3);
    assert_eq!(*dwell_s, 1e-5);
    assert_eq!(points.len(), w.len());
    // Echo hook: FID = played waveform in Hz as f32. Bound: half an LSB per channel plus f32
    // rounding of values below 1000 Hz (< 1e-4 Hz).
    let bound = dac().max_channel_error_hz() + 1e-4;
    for (p, x) in points.iter().zip(&w) {
        assert!((f64::from(p[0]) - x[0]).abs() <= bound);
        assert!((f64::from(p[1]) - x[1]).abs() <= bound);
    }
    let dialogue = h.sent_text();
    assert_eq!(
        &dialogue[4..],
        [
            "WAV:SEL SL1;:ACQ:ID 77;:INIT",
            "*OPC?",
            "SYST:ERR?",
            "FETC:FID? 77",
            "FETC:CRC? 77",
            "FETC:DWEL? 77"
        ]
    );
    assert!(h.inst.fid(77).is_some());
}

#[test]
fn corrupted_fid_is_fetched_again() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.upload(1, &waveform(50), h.now).unwrap();
    h.client.play(1, 5, h.now).unwrap();
    h.run();
    h.inst.corrupt_next_fids(1);
    h.client.fetch(5, h.now).unwrap();
    let ev = h.run();
    let [ClientEvent::Fid { points, .. }] = ev.as_slice() else {
        panic!("{ev:?}");
    };
    assert_eq!(points, &h.inst.fid(5).unwrap().points);
    assert_eq!(
        h.sent_text()[h.sent.len() - 5..],
        [
            "FETC:FID? 5",
            "FETC:CRC? 5",
            "FETC:FID? 5",
            "FETC:CRC? 5",
            "FETC:DWEL? 5"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()[..]
    );
}

#[test]
fn fetch_unknown_acquisition_times_out() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.fetch(999, h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(
            &ev[..],
            [
                ClientEvent::FetchFailed {
                    acquisition: 999,
                    reason: FailReason::Timeout { .. }
                },
                ClientEvent::Resynced
            ]
        ),
        "{ev:?}"
    );
}

#[test]
fn hook_receives_waveform_and_acquisition() {
    let hook = |req: &AcquisitionRequest<'_>| -> Result<Fid, String> {
        if req.acquisition == 13 {
            return Err("RF amplifier fault".into());
        }
        Ok(Fid {
            points: vec![[req.codes.len() as f32, req.acquisition as f32]],
            dwell_s: 2.5e-6,
        })
    };
    let inst = SimInstrument::new(inst_config(), Box::new(hook));
    let mut h = Harness::with_instrument(Harness::default_config(), inst);
    h.run();
    h.client.upload(1, &waveform(10), h.now).unwrap();
    h.client.play(1, 12, h.now).unwrap();
    h.client.play(1, 13, h.now).unwrap();
    h.client.fetch(12, h.now).unwrap();
    let ev = h.run();
    assert!(matches!(ev[0], ClientEvent::Uploaded { .. }));
    assert_eq!(
        ev[1],
        ClientEvent::Played {
            id: 1,
            acquisition: 12
        }
    );
    assert!(
        matches!(&ev[2], ClientEvent::PlayFailed { acquisition: 13, reason: FailReason::Instrument { code: -240, message, .. }, .. } if message.contains("RF amplifier fault")),
        "{ev:?}"
    );
    assert_eq!(
        ev[3],
        ClientEvent::Fid {
            acquisition: 12,
            points: vec![[10.0, 12.0]],
            dwell_s: 2.5e-6
        }
    );
    let played: Vec<_> = std::iter::from_fn(|| h.inst.poll_event())
        .filter(|e| matches!(e, InstrumentEvent::Played { .. }))
        .collect();
    assert_eq!(
        played,
        [InstrumentEvent::Played {
            name: "SL1".into(),
            acquisition: 12
        }]
    );
}

#[test]
fn byte_time_extends_the_timeout_of_a_large_upload() {
    let mut cfg = Harness::default_config();
    cfg.byte_time = Duration::from_micros(87);
    let mut h = Harness::connected(cfg);
    let t0 = h.now;
    h.client.upload(1, &waveform(1000), h.now).unwrap();
    let line_len: usize = "WAV:DATA SL1,#44000".len() + 4000 + 1 + "WAV:CRC? SL1\n".len();
    let expected = t0 + Duration::from_secs(2) + Duration::from_micros(87) * line_len as u32;
    assert_eq!(h.client.poll_timeout(), Some(expected));
}

#[test]
fn queued_operations_run_in_order_after_connect() {
    let mut h = Harness::new(Harness::default_config());
    h.client.upload(1, &waveform(10), h.now).unwrap();
    h.client.upload(2, &waveform(20), h.now).unwrap();
    h.client.play(2, 1, h.now).unwrap();
    let ev = h.run();
    assert!(matches!(ev[0], ClientEvent::Connected { .. }));
    assert!(matches!(ev[1], ClientEvent::Uploaded { id: 1, .. }));
    assert!(matches!(ev[2], ClientEvent::Uploaded { id: 2, .. }));
    assert_eq!(
        ev[3],
        ClientEvent::Played {
            id: 2,
            acquisition: 1
        }
    );
    assert_eq!(ev.len(), 4);
}

#[test]
fn idn_with_hash_in_serial_is_read_as_a_line() {
    let inst = SimInstrument::new(
        spinloop_scpi::InstrumentConfig {
            idn: spinloop_scpi::Idn {
                manufacturer: "ACME".into(),
                model: "AWG-1".into(),
                serial: "#12345".into(),
                firmware: "1.0".into(),
            },
            ..inst_config()
        },
        Box::new(spinloop_scpi::EchoHook { dwell_s: 1e-6 }),
    );
    let mut h = Harness::with_instrument(Harness::default_config(), inst);
    let ev = h.run();
    assert!(
        matches!(&ev[..], [ClientEvent::Connected { idn }] if idn.serial == "#12345"),
        "{ev:?}"
    );
}

#[test]
fn unsolicited_input_is_reported_and_ignored() {
    let mut h = Harness::connected(Harness::default_config());
    h.client.handle_input(b"stray\n", h.now);
    assert_eq!(
        h.client.poll_event(),
        Some(ClientEvent::Unsolicited {
            bytes: b"stray".to_vec()
        })
    );
    h.client.upload(1, &waveform(4), h.now).unwrap();
    assert!(matches!(
        h.run().as_slice(),
        [ClientEvent::Uploaded { id: 1, .. }]
    ));
}

#[test]
fn reconnect_after_failed_connect() {
    let mut h = Harness::new(Harness::default_config());
    h.inst.drop_next_responses(1); // *IDN? lost
    let ev = h.run();
    assert!(
        matches!(&ev[..], [ClientEvent::ConnectFailed { reason: FailReason::Timeout { query } }, ClientEvent::Resynced] if query == "*IDN?"),
        "{ev:?}"
    );
    assert_eq!(
        h.client.state(),
        spinloop_scpi::ConnectionState::Disconnected
    );
    h.client.reconnect(h.now);
    h.client.upload(1, &waveform(4), h.now).unwrap();
    let ev = h.run();
    assert!(matches!(ev[0], ClientEvent::Connected { .. }), "{ev:?}");
    assert!(
        matches!(ev[1], ClientEvent::Uploaded { id: 1, .. }),
        "{ev:?}"
    );
}

#[test]
fn custom_command_templates() {
    let mut cfg = Harness::default_config();
    cfg.upload_command = "WAVeform:DATA {name}, {block}".into();
    cfg.play_command = "WAVeform:SELect {name};:ACQuire:ID {acq};:INITiate:IMMediate".into();
    cfg.fid_crc_query = None;
    cfg.name_prefix = "RF_".into();
    let mut h = Harness::connected(cfg);
    h.client.upload(2, &waveform(4), h.now).unwrap();
    h.client.play(2, 9, h.now).unwrap();
    h.client.fetch(9, h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(&ev[0], ClientEvent::Uploaded { name, .. } if name == "RF_2"),
        "{ev:?}"
    );
    assert!(
        matches!(ev[2], ClientEvent::Fid { acquisition: 9, .. }),
        "{ev:?}"
    );
    assert_eq!(
        h.sent_text()[h.sent.len() - 2..],
        ["FETC:FID? 9".to_string(), "FETC:DWEL? 9".to_string()]
    );
}

#[test]
fn invalid_client_config_is_refused() {
    let mut cfg = Harness::default_config();
    cfg.upload_command = "WAV:DATA {name}".into();
    assert!(matches!(
        spinloop_scpi::AwgClient::new(cfg, std::time::Instant::now()),
        Err(ClientError::InvalidConfig(_))
    ));
    let mut cfg = Harness::default_config();
    cfg.name_prefix = "1x".into();
    assert!(spinloop_scpi::AwgClient::new(cfg, std::time::Instant::now()).is_err());
}

#[test]
fn error_poll_budget_is_bounded_and_queue_cleared() {
    let mut cfg = Harness::default_config();
    cfg.max_error_polls = 2;
    let mut h = Harness::connected(cfg);
    for k in 0..5 {
        h.inst.inject_error(-300 - k, "Device-specific error");
    }
    h.client.upload(1, &waveform(4), h.now).unwrap();
    let ev = h.run();
    assert!(
        matches!(&ev[..], [ClientEvent::UploadFailed { id: 1, reason: FailReason::Instrument { code: -300, more, .. } }] if more.len() == 1 && more[0].code == -301),
        "{ev:?}"
    );
    assert_eq!(h.sent_text().last().map(String::as_str), Some("*CLS"));
    assert_eq!(h.inst.error_queue().count(), 0);
    h.client.upload(2, &waveform(4), h.now).unwrap();
    assert!(matches!(
        h.run().as_slice(),
        [ClientEvent::Uploaded { id: 2, .. }]
    ));
}
