//! Response parser cases from real instrument formats.

use spinloop_scpi::response::{parse_error_entry, parse_integer, parse_number, parse_quoted};
use spinloop_scpi::{ErrorEntry, Idn, Response, ResponseKind, ScpiError, parse_response};

fn num(s: &str) -> f64 {
    match parse_response(ResponseKind::Number, s.as_bytes()) {
        Ok(Response::Number(v)) => v,
        other => panic!("{s:?}: {other:?}"),
    }
}

#[test]
fn numbers_nr1_nr2_nr3() {
    assert_eq!(num("+1.00000E+00\n"), 1.0); // Keysight NR3
    assert_eq!(num("-2.50000000000000E-03"), -2.5e-3);
    assert_eq!(num("9.9E37"), 9.9e37); // SCPI "not a number" marker is still a number
    assert_eq!(num("+5"), 5.0);
    assert_eq!(num("  -0.125\r\n"), -0.125);
    assert_eq!(num(".5"), 0.5);
    assert_eq!(num("5."), 5.0);
    assert_eq!(num("1e-5"), 1e-5);
    assert_eq!(num("+1.0000000000000001E-5"), 1e-5);
    assert_eq!(num("#H1F"), 31.0);
    for bad in [
        "", "E5", "1E", "1.2.3", "inf", "NaN", "+", "1 2", "0x10", "1,2",
    ] {
        assert!(
            parse_response(ResponseKind::Number, bad.as_bytes()).is_err(),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        parse_number("1E999"),
        Err(ScpiError::NumberOutOfRange(_))
    ));
}

#[test]
fn integers_and_non_decimal_forms() {
    assert_eq!(parse_integer("+0").unwrap(), 0);
    assert_eq!(parse_integer("-113").unwrap(), -113);
    assert_eq!(parse_integer("3825607106").unwrap(), 3_825_607_106);
    assert_eq!(parse_integer("#HFF").unwrap(), 255);
    assert_eq!(parse_integer("#hff").unwrap(), 255);
    assert_eq!(parse_integer("#Q17").unwrap(), 15);
    assert_eq!(parse_integer("#B101").unwrap(), 5);
    assert!(parse_integer("#B102").is_err());
    assert!(parse_integer("#H").is_err());
    assert!(parse_integer("1.0").is_err());
    assert!(matches!(
        parse_integer("99999999999999999999"),
        Err(ScpiError::NumberOutOfRange(_))
    ));
    assert_eq!(
        parse_response(ResponseKind::Integer, b"+42\n"),
        Ok(Response::Integer(42))
    );
}

#[test]
fn quoted_strings() {
    assert_eq!(parse_quoted("\"No error\"").unwrap(), "No error");
    assert_eq!(parse_quoted("'single'").unwrap(), "single");
    assert_eq!(parse_quoted("\"say \"\"hi\"\"\"").unwrap(), "say \"hi\"");
    assert_eq!(parse_quoted("\"\"").unwrap(), "");
    assert!(parse_quoted("\"open").is_err());
    assert!(parse_quoted("\"a\"b").is_err());
    assert!(parse_quoted("bare").is_err());
    assert_eq!(
        parse_response(ResponseKind::QuotedString, b"\"ARB1\"\n"),
        Ok(Response::Text("ARB1".into()))
    );
}

#[test]
fn idn_from_real_instruments() {
    let cases = [
        (
            "Agilent Technologies,33522A,MY50001234,2.09-1.19-2.00-52-00\n",
            [
                "Agilent Technologies",
                "33522A",
                "MY50001234",
                "2.09-1.19-2.00-52-00",
            ],
        ),
        (
            "Rigol Technologies,DG4162,DG4E123456789,00.01.06\r\n",
            ["Rigol Technologies", "DG4162", "DG4E123456789", "00.01.06"],
        ),
        (
            "GW INSTEK,AFG-2225,SN:EN123456,V1.04",
            ["GW INSTEK", "AFG-2225", "SN:EN123456", "V1.04"],
        ),
        // Firmware field with commas keeps the rest of the line.
        ("ACME,X1,0,1.0,build 7", ["ACME", "X1", "0", "1.0,build 7"]),
    ];
    for (text, [m, model, s, f]) in cases {
        let Ok(Response::Idn(idn)) = parse_response(ResponseKind::Idn, text.as_bytes()) else {
            panic!("{text:?}");
        };
        assert_eq!(
            idn,
            Idn {
                manufacturer: m.into(),
                model: model.into(),
                serial: s.into(),
                firmware: f.into()
            }
        );
    }
    assert!(matches!(
        parse_response(ResponseKind::Idn, b"ACME,X1,0"),
        Err(ScpiError::BadIdn { fields: 3, .. })
    ));
}

#[test]
fn system_error_entries() {
    let e = |s: &str| match parse_response(ResponseKind::SystemError, s.as_bytes()) {
        Ok(Response::Error(e)) => e,
        other => panic!("{s:?}: {other:?}"),
    };
    assert_eq!(
        e("-113,\"Undefined header\"\n"),
        ErrorEntry {
            code: -113,
            message: "Undefined header".into()
        }
    );
    let none = e("+0,\"No error\"");
    assert!(none.is_no_error());
    assert_eq!(none.message, "No error");
    assert_eq!(e("0,\"No error\"").code, 0);
    assert_eq!(
        e("-222,\"Data out of range;DATA:DAC\"").message,
        "Data out of range;DATA:DAC"
    );
    assert_eq!(e("-350,Queue overflow").message, "Queue overflow");
    assert_eq!(e("+201,\"Device \"\"x\"\"\"").message, "Device \"x\"");
    for bad in [
        "No error",
        "abc,\"x\"",
        "-113,\"open",
        "99999999999,\"x\"",
        "",
    ] {
        assert!(parse_error_entry(bad).is_err(), "{bad:?}");
    }
    // Display is the wire form.
    assert_eq!(
        ErrorEntry {
            code: -113,
            message: "a\"b".into()
        }
        .to_string(),
        "-113,\"a\"\"b\""
    );
}

#[test]
fn opc_and_blocks() {
    assert_eq!(
        parse_response(ResponseKind::Opc, b"1\n"),
        Ok(Response::OperationComplete)
    );
    assert_eq!(
        parse_response(ResponseKind::Opc, b"+1"),
        Ok(Response::OperationComplete)
    );
    assert!(matches!(
        parse_response(ResponseKind::Opc, b"0"),
        Err(ScpiError::BadOpc(_))
    ));
    assert_eq!(
        parse_response(ResponseKind::Block, b"#18\x00\x00\x80?\x00\x00\x00\xc0\n"),
        Ok(Response::Block(vec![0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]))
    );
    assert_eq!(
        parse_response(ResponseKind::Block, b"#0\x01\x02\n"),
        Err(ScpiError::IndefiniteBlock)
    );
}

#[test]
fn non_utf8_and_empty_are_errors() {
    assert_eq!(
        parse_response(ResponseKind::Text, b"\xff\xfe"),
        Err(ScpiError::NotUtf8)
    );
    assert_eq!(
        parse_response(ResponseKind::Integer, b"  \r\n"),
        Err(ScpiError::Empty)
    );
    assert_eq!(
        parse_response(ResponseKind::Text, b"SWAP\n"),
        Ok(Response::Text("SWAP".into()))
    );
}
