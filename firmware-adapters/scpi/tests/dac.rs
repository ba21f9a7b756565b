//! DAC scaling, limits and the wire encoding of codes.

use spinloop_scpi::dac::{
    Channel, DacConfig, DacError, decode_codes, decode_f32_pairs, encode_codes, encode_f32_pairs,
    scale, unscale,
};

fn cfg14() -> DacConfig {
    DacConfig {
        full_scale_hz: 1000.0,
        max_code: 8191,
        amplitude_limit_hz: 900.0,
    }
}

#[test]
fn scales_to_codes_with_rounding() {
    let c = cfg14();
    let lsb = 1000.0 / 8191.0;
    let q = scale(
        &c,
        &[[0.0, 0.0], [lsb * 10.4, -lsb * 10.6], [600.0, -600.0]],
    )
    .unwrap();
    assert_eq!(q.codes[0], [0, 0]);
    assert_eq!(q.codes[1], [10, -11]);
    assert_eq!(q.codes[2], [4915, -4915]); // 600/1000*8191 = 4914.6
    assert!((q.report.lsb_hz - lsb).abs() < 1e-12);
    assert!(q.report.max_channel_error_hz <= c.max_channel_error_hz());
    assert!(q.report.max_magnitude_error_hz <= c.max_magnitude_error_hz());
    assert!((q.report.max_channel_error_hz - 0.4 * lsb).abs() < 1e-9);
    assert_eq!(q.report.samples, 3);
    assert!((q.report.peak_hz - 600.0 * 2f64.sqrt()).abs() < 1e-9);
}

#[test]
fn full_16bit_range() {
    let c = DacConfig::new_16bit(500.0);
    let q = scale(&c, &[[500.0, 0.0], [0.0, -500.0]]).unwrap();
    assert_eq!(q.codes, vec![[32767, 0], [0, -32767]]);
    assert_eq!(unscale(&c, &q.codes), vec![[500.0, 0.0], [0.0, -500.0]]);
}

#[test]
fn over_limit_is_refused_with_index_and_value() {
    let c = cfg14();
    let e = scale(&c, &[[0.0, 0.0], [700.0, 700.0]]).unwrap_err();
    let DacError::OverLimit {
        index,
        magnitude_hz,
        limit_hz,
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!((index, limit_hz), (1, 900.0));
    assert!((magnitude_hz - 989.949).abs() < 1e-3);
    assert!(e.to_string().contains("sample 1"));
}

#[test]
fn beyond_full_scale_is_refused_not_clipped() {
    let c = DacConfig {
        amplitude_limit_hz: 5000.0,
        ..cfg14()
    };
    let e = scale(&c, &[[10.0, 1000.1]]).unwrap_err();
    assert!(matches!(
        e,
        DacError::ExceedsFullScale {
            index: 0,
            channel: Channel::Q,
            ..
        }
    ));
}

#[test]
fn non_finite_and_empty_refused() {
    let c = cfg14();
    assert!(matches!(
        scale(&c, &[[1.0, 2.0], [f64::INFINITY, 0.0]]),
        Err(DacError::NonFinite {
            index: 1,
            channel: Channel::I,
            ..
        })
    ));
    assert_eq!(scale(&c, &[]), Err(DacError::Empty));
}

#[test]
fn invalid_configs_refused() {
    for c in [
        DacConfig {
            full_scale_hz: 0.0,
            ..cfg14()
        },
        DacConfig {
            full_scale_hz: f64::NAN,
            ..cfg14()
        },
        DacConfig {
            max_code: 0,
            ..cfg14()
        },
        DacConfig {
            max_code: -5,
            ..cfg14()
        },
        DacConfig {
            amplitude_limit_hz: -1.0,
            ..cfg14()
        },
    ] {
        assert!(matches!(c.validate(), Err(DacError::InvalidConfig(_))));
        assert!(matches!(
            scale(&c, &[[0.0, 0.0]]),
            Err(DacError::InvalidConfig(_))
        ));
    }
}

#[test]
fn code_wire_format_is_interleaved_little_endian() {
    let bytes = encode_codes(&[[1, -2], [0x1234, -32767]]);
    assert_eq!(bytes, [1, 0, 0xFE, 0xFF, 0x34, 0x12, 0x01, 0x80]);
    assert_eq!(
        decode_codes(&bytes, true).unwrap(),
        vec![[1, -2], [0x1234, -32767]]
    );
    assert_eq!(
        decode_codes(&[0x12, 0x34, 0, 1], false).unwrap(),
        vec![[0x1234, 1]]
    );
    assert!(decode_codes(&[1, 2, 3], true).is_none());
    let f = encode_f32_pairs(&[[1.0, -2.0]], true);
    assert_eq!(f, [0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0]);
    assert_eq!(decode_f32_pairs(&f).unwrap(), vec![[1.0, -2.0]]);
    assert_eq!(
        encode_f32_pairs(&[[1.0, 0.0]], false)[..4],
        [0x3F, 0x80, 0, 0]
    );
    assert!(decode_f32_pairs(&f[..7]).is_none());
}
