//! The simulated instrument on its own: parsing, error queue, byte order, fault injection.

use std::time::Instant;

use spinloop_scpi::block::encode_block;
use spinloop_scpi::command::{Param, header_matches, parse_program_message};
use spinloop_scpi::{
    EchoHook, ErrorEntry, InstrumentConfig, InstrumentEvent, Response, ResponseKind, SimInstrument,
    parse_response,
};

fn inst() -> SimInstrument {
    SimInstrument::new(
        InstrumentConfig {
            error_queue_capacity: 3,
            ..InstrumentConfig::default()
        },
        Box::new(EchoHook { dwell_s: 1e-6 }),
    )
}

/// Sends `msg` and returns all response lines.
fn ask(i: &mut SimInstrument, msg: &[u8]) -> Vec<Vec<u8>> {
    i.handle_input(msg, Instant::now());
    std::iter::from_fn(|| i.poll_transmit()).collect()
}

fn err(i: &mut SimInstrument) -> ErrorEntry {
    let r = ask(i, b"SYST:ERR?\n");
    match parse_response(ResponseKind::SystemError, &r[0]) {
        Ok(Response::Error(e)) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn common_commands() {
    let mut i = inst();
    assert_eq!(
        ask(&mut i, b"*IDN?\n"),
        [b"spinloop,SIM-AWG,0,1.0\n".to_vec()]
    );
    assert_eq!(ask(&mut i, b"*opc?\r\n"), [b"1\n".to_vec()]);
    assert_eq!(ask(&mut i, b"SYST:ERR?\n"), [b"0,\"No error\"\n".to_vec()]);
    assert_eq!(
        ask(&mut i, b":SYSTem:ERRor:NEXT?\n"),
        [b"0,\"No error\"\n".to_vec()]
    );
    // Several queries in one message: one line joined by ';'.
    assert_eq!(ask(&mut i, b"*OPC?;*OPC?\n"), [b"1;1\n".to_vec()]);
}

#[test]
fn undefined_header_and_queue_overflow() {
    let mut i = inst();
    assert!(ask(&mut i, b"FOO:BAR 1\n").is_empty());
    assert_eq!(
        err(&mut i),
        ErrorEntry {
            code: -113,
            message: "Undefined header;FOO:BAR".into()
        }
    );
    assert_eq!(err(&mut i).code, 0);
    for _ in 0..5 {
        ask(&mut i, b"BOGUS\n");
    }
    // Capacity 3: two real entries, then -350 replacing the newest.
    assert_eq!(err(&mut i).code, -113);
    assert_eq!(err(&mut i).code, -113);
    assert_eq!(
        err(&mut i),
        ErrorEntry {
            code: -350,
            message: "Queue overflow".into()
        }
    );
    assert_eq!(err(&mut i).code, 0);
    ask(&mut i, b"BOGUS\n");
    ask(&mut i, b"*CLS\n");
    assert_eq!(err(&mut i).code, 0);
}

#[test]
fn error_aborts_rest_of_message() {
    let mut i = inst();
    assert!(ask(&mut i, b"BOGUS;*OPC?\n").is_empty());
    assert_eq!(err(&mut i).code, -113);
}

#[test]
fn data_type_and_parameter_errors() {
    let mut i = inst();
    ask(&mut i, b"WAV:DATA A1,5\n");
    assert_eq!(err(&mut i).code, -104);
    ask(&mut i, b"WAV:DATA A1\n");
    assert_eq!(err(&mut i).code, -109);
    ask(&mut i, b"*RST 1\n");
    assert_eq!(err(&mut i).code, -108);
    ask(&mut i, b"WAV:DATA 1A,#14abcd\n");
    assert_eq!(err(&mut i).code, -224);
    ask(&mut i, b"WAV:DATA A1,#0abcd\n");
    let e = err(&mut i);
    assert_eq!(e.code, -161);
    assert!(e.message.contains("indefinite"), "{e:?}");
    ask(&mut i, b"WAV:DATA A1,#13abc\n");
    assert_eq!(err(&mut i).code, -161);
    ask(&mut i, b"FORM:BORD SIDEWAYS\n");
    assert_eq!(err(&mut i).code, -224);
    ask(&mut i, b"WAV:DATA A1,\"unterminated\n");
    assert_eq!(err(&mut i).code, -151);
    ask(&mut i, b"ACQ:ID -3\n");
    assert_eq!(err(&mut i).code, -104);
}

#[test]
fn stores_waveform_in_selected_byte_order() {
    let mut i = inst();
    // Big-endian by default after power-on.
    let mut msg = b"WAV:DATA w1,".to_vec();
    msg.extend(encode_block(&[0x01, 0x02, 0xFF, 0xFE]));
    msg.push(b'\n');
    ask(&mut i, &msg);
    assert_eq!(i.waveform("W1").unwrap(), &[[0x0102, -2]]);
    ask(&mut i, b"FORM:BORD SWAP\n");
    assert_eq!(ask(&mut i, b"FORM:BORD?\n"), [b"SWAP\n".to_vec()]);
    ask(&mut i, &msg);
    assert_eq!(i.waveform("w1").unwrap(), &[[0x0201, -257]]);
    let crc = spinloop_firmware::crc32c(&[0x01, 0x02, 0xFF, 0xFE]);
    assert_eq!(
        ask(&mut i, b"WAV:CRC? W1\n"),
        [format!("{crc}\n").into_bytes()]
    );
    ask(&mut i, b"*RST\n");
    assert!(!i.is_little_endian());
    assert!(i.waveform("W1").is_some());
}

#[test]
fn out_of_range_codes_and_limits() {
    let mut i = SimInstrument::new(
        InstrumentConfig {
            dac: spinloop_scpi::DacConfig {
                full_scale_hz: 1.0,
                max_code: 8191,
                amplitude_limit_hz: 1.0,
            },
            max_points: 2,
            max_waveforms: 1,
            ..InstrumentConfig::default()
        },
        Box::new(EchoHook { dwell_s: 1e-6 }),
    );
    ask(&mut i, b"FORM:BORD SWAP\n");
    let data = |codes: &[i16]| {
        let mut m = b"WAV:DATA A,".to_vec();
        let bytes: Vec<u8> = codes.iter().flat_map(|c| c.to_le_bytes()).collect();
        m.extend(encode_block(&bytes));
        m.push(b'\n');
        m
    };
    ask(&mut i, &data(&[0, 8192]));
    let e = err(&mut i);
    assert_eq!(e.code, -222);
    assert_eq!(e.message, "Data out of range;point 0");
    ask(&mut i, &data(&[0, 0, 0, 0, 0, 0]));
    assert_eq!(err(&mut i).code, -223);
    ask(&mut i, &data(&[8191, -8191]));
    assert_eq!(err(&mut i).code, 0);
    let mut other = data(&[1, 1]);
    other[9] = b'B';
    ask(&mut i, &other);
    assert_eq!(err(&mut i).code, -225);
}

#[test]
fn play_needs_selection_and_fetch_needs_acquisition() {
    let mut i = inst();
    ask(&mut i, b"INIT\n");
    assert_eq!(err(&mut i).code, -221);
    ask(&mut i, b"WAV:SEL NOPE\n");
    assert_eq!(err(&mut i).code, -224);
    assert!(ask(&mut i, b"FETC:FID? 3\n").is_empty());
    assert_eq!(err(&mut i).code, -230);
    ask(&mut i, b"FORM:BORD SWAP;:WAV:DATA A,#14\x01\x00\x02\x00\n");
    ask(
        &mut i,
        b"WAVeform:SELect a;:ACQuire:ID 3;:INITiate:IMMediate\n",
    );
    assert_eq!(err(&mut i).code, 0);
    assert_eq!(ask(&mut i, b"WAV:SEL?\n"), [b"\"A\"\n".to_vec()]);
    let lsb = 1000.0 / 32767.0;
    let fid = ask(&mut i, b"FETC:FID? 3\n");
    let Ok(Response::Block(data)) = parse_response(ResponseKind::Block, &fid[0]) else {
        panic!("{fid:?}");
    };
    let expected: Vec<u8> = [lsb as f32, 2.0 * lsb as f32]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(data, expected);
    assert_eq!(ask(&mut i, b"FETC:DWEL? 3\n"), [b"+1.0E-6\n".to_vec()]);
    let events: Vec<_> = std::iter::from_fn(|| i.poll_event()).collect();
    assert!(events.contains(&InstrumentEvent::Played {
        name: "A".into(),
        acquisition: 3
    }));
}

#[test]
fn fault_injection() {
    let mut i = inst();
    i.drop_next_responses(1);
    assert!(ask(&mut i, b"*IDN?\n").is_empty());
    assert_eq!(ask(&mut i, b"*OPC?\n"), [b"1\n".to_vec()]);
    i.inject_error(-300, "Device-specific error");
    assert_eq!(err(&mut i).code, -300);
    i.corrupt_next_blocks(1);
    ask(&mut i, b"FORM:BORD SWAP;:WAV:DATA A,#14\x00\x00\x00\x00\n");
    assert_eq!(i.waveform("A").unwrap(), &[[0, 1]]); // bit 0 of byte 2 flipped
    let events: Vec<_> = std::iter::from_fn(|| i.poll_event()).collect();
    assert!(events.contains(&InstrumentEvent::BlockCorrupted));
    assert!(events.contains(&InstrumentEvent::ResponseDropped));
}

#[test]
fn oversize_message_is_an_input_buffer_overrun() {
    let mut i = SimInstrument::new(
        InstrumentConfig {
            max_message_len: 64,
            ..InstrumentConfig::default()
        },
        Box::new(EchoHook { dwell_s: 1e-6 }),
    );
    let mut msg = b"WAV:DATA A,".to_vec();
    msg.extend(encode_block(&[0u8; 400]));
    msg.extend(b"\n*OPC?\n");
    assert_eq!(ask(&mut i, &msg), [b"1\n".to_vec()]);
    assert_eq!(err(&mut i).code, -363);
}

#[test]
fn program_message_parsing() {
    let units = parse_program_message(b":WAV:DATA  name , #12\n;,\"s;\", x ;*OPC?");
    let u0 = units[0].as_ref().unwrap();
    assert_eq!(u0.header, "WAV:DATA");
    assert!(!u0.query);
    assert_eq!(
        u0.params,
        [
            Param::Text("name".into()),
            Param::Block(b"\n;".to_vec()),
            Param::Str("s;".into()),
            Param::Text("x".into())
        ]
    );
    let u1 = units[1].as_ref().unwrap();
    assert_eq!((u1.header.as_str(), u1.query), ("*OPC", true));
    assert_eq!(units.len(), 2);
    assert!(parse_program_message(b"WAV:DATA,").last().unwrap().is_err());
    assert!(parse_program_message(b"A::B").last().unwrap().is_err());
}

#[test]
fn header_matching_short_long_optional() {
    assert!(header_matches("WAVeform:DATA", "WAV:DATA"));
    assert!(header_matches("WAVeform:DATA", "WAVEFORM:DATA"));
    assert!(!header_matches("WAVeform:DATA", "WAVE:DATA"));
    assert!(header_matches("INITiate[:IMMediate]", "INIT"));
    assert!(header_matches("INITiate[:IMMediate]", "INIT:IMM"));
    assert!(!header_matches("INITiate[:IMMediate]", "INIT:FOO"));
    assert!(header_matches("[SOURce:]FUNCtion", "FUNC"));
    assert!(header_matches("[SOURce:]FUNCtion", "SOUR:FUNC"));
    assert!(header_matches("*IDN", "*IDN"));
    assert!(!header_matches("*IDN", "*IDN:X"));
}
