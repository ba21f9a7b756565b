//! Bruker TopSpin raw data (`spinloop::formats::bruker_fid`):
//!
//! - round trips: `write_experiment` → `read_experiment` bit-exact (float64, group delay 0, with
//!   and without 1024-byte padding); int32, float32 and float64 files built byte by byte in both
//!   byte orders; `ser` files read as their first FID across the 1024-byte block padding;
//! - digital filter: an analytically delayed tone and a band-limited (independent O(N²) DFT)
//!   delayed damped line come back with the right amplitude and phase (≤ 1e-9 of the amplitude)
//!   and their spectral peak at +f, i.e. ppm above the carrier (spinloop's convention); the
//!   raw delayed data start at ≈ GRPDLY points, as real Bruker data do; the DECIM/DSPFVS table
//!   and the group-delay rules;
//! - acqus parsing: arrays (same line, next lines, strings with blanks, empty), strings in
//!   `<...>` (one and several lines), `$$` comments, case-insensitive lookup, missing `##END=`,
//!   duplicate and malformed lines;
//! - bad input, each an error naming the file and the parameter: missing acqus / fid, truncated
//!   or over-long fid, TD odd or larger than the file, DTYPA 7, BYTORDA 3, SW_h 0 or NaN, NaN
//!   samples, …; a proptest of random mutations and truncations of a valid pair (Ok or Err,
//!   never a panic);
//! - peer: nmrglue 0.12 (`tests/peers/bruker_fid_peer.py`, Python from `SPINLOOP_PEER_PYTHON`)
//!   writes int32 (both byte orders, `ser`), float64 and fractionally delayed experiments that
//!   we read point by point, and reads what `write_experiment` writes.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use num_complex::Complex64 as C64;
use proptest::prelude::*;
use spinloop::formats::bruker_fid::{
    Acqus, FID_BLOCK_BYTES, decode_fid, dsp_table_group_delay, group_delay_from_acqus,
    read_experiment, remove_digital_filter, write_experiment, write_experiment_with_offset,
};
use spinloop::physics::PhysicsError;
use spinloop::spectrum::{SpectrumPlan, frequency_axis, ppm_axis};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh, empty scratch directory under cargo's per-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("bruker_fid")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An acqus text: core header, a comment, the parameters in the order given, `##END=`.
fn acqus_text(params: &[(&str, String)]) -> String {
    let mut s = String::from(
        "##TITLE= Parameter file, TOPSPIN\t\tVersion 3.6.2\n##JCAMP-DX= 5.0\n\
         ##DATATYPE= Parameter Values\n##ORIGIN= Bruker BioSpin GmbH\n##OWNER= nmrsu\n\
         $$ 2021-03-04 10:11:12.123 +0100  nmrsu@spectro\n$$ /opt/data/exp/1/acqus\n",
    );
    for (k, v) in params {
        s.push_str(&format!("##${k}= {v}\n"));
    }
    s.push_str("##END=\n");
    s
}

/// Typical parameters of a 1D 1H experiment with `td` real values of type `dtypa`.
fn base_params(td: usize, dtypa: i32, bytorda: i32) -> Vec<(&'static str, String)> {
    vec![
        ("AQ_mod", "3".into()),
        ("BF1", "400.13".into()),
        ("BYTORDA", bytorda.to_string()),
        ("DECIM", "16".into()),
        ("DSPFVS", "20".into()),
        ("DTYPA", dtypa.to_string()),
        ("GRPDLY", "0".into()),
        ("NS", "16".into()),
        ("NUC1", "<1H>".into()),
        ("O1", "1880.611".into()),
        ("P", "(0..3)\n10.5 0 0 20".into()),
        ("PULPROG", "<zg30>".into()),
        ("SFO1", "400.131880611".into()),
        ("SW_h", "5000".into()),
        ("TD", td.to_string()),
    ]
}

/// `params` with `key` set to `value` (appended if absent) or removed (`None`).
fn with(
    mut params: Vec<(&'static str, String)>,
    key: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    params.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        params.push((key, v.to_string()));
        params.sort_by_key(|(k, _)| *k);
    }
    params
}

/// Writes an experiment directory from parts.
fn exp_dir(name: &str, acqus: Option<&str>, fid: Option<&[u8]>, ser: Option<&[u8]>) -> PathBuf {
    let dir = scratch(name);
    if let Some(a) = acqus {
        std::fs::write(dir.join("acqus"), a).unwrap();
    }
    if let Some(f) = fid {
        std::fs::write(dir.join("fid"), f).unwrap();
    }
    if let Some(s) = ser {
        std::fs::write(dir.join("ser"), s).unwrap();
    }
    dir
}

fn pad_to_block(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len().div_ceil(FID_BLOCK_BYTES) * FID_BLOCK_BYTES;
    b.resize(n, 0);
    b
}

fn i32_bytes(values: &[i32], big: bool) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        })
        .collect()
}

fn f64_bytes(values: &[f64], big: bool) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        })
        .collect()
}

fn f32_bytes(values: &[f32], big: bool) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        })
        .collect()
}

/// A deterministic FID with awkward values (negative zero, tiny, huge, fractions).
fn awkward_fid(n: usize) -> Vec<C64> {
    (0..n)
        .map(|k| {
            let t = k as f64;
            match k % 7 {
                0 => C64::new(-0.0, 1e-300),
                1 => C64::new(1.0e300, -3.5),
                _ => C64::new((0.37 * t).sin() / (1.0 + t), -(0.11 * t).cos() * 1e3),
            }
        })
        .collect()
}

/// A line: amplitude, frequency (Hz), phase (rad), decay rate (1/s).
#[derive(Clone, Copy)]
struct Line {
    a: f64,
    f: f64,
    phase: f64,
    r: f64,
}

fn line_signal(lines: &[Line], n: usize, dwell: f64) -> Vec<C64> {
    (0..n)
        .map(|k| {
            let t = k as f64 * dwell;
            lines
                .iter()
                .map(|l| {
                    C64::from_polar(l.a, l.phase) * C64::new(-l.r * t, 2.0 * PI * l.f * t).exp()
                })
                .sum()
        })
        .collect()
}

/// Band-limited circular delay by `g` points with a direct O(N²) DFT (independent of rustfft):
/// X_k·e^{−2πi·g·k/N}, k signed (numpy fftfreq order).
fn dft_delay(s: &[C64], g: f64) -> Vec<C64> {
    let n = s.len();
    let nf = n as f64;
    let x: Vec<C64> = (0..n)
        .map(|k| {
            (0..n)
                .map(|m| s[m] * C64::from_polar(1.0, -2.0 * PI * (k * m % n) as f64 / nf))
                .sum()
        })
        .collect();
    let half = n.div_ceil(2);
    let y: Vec<C64> = (0..n)
        .map(|k| {
            let signed = if k < half { k as f64 } else { k as f64 - nf };
            x[k] * C64::from_polar(1.0 / nf, -2.0 * PI * g * signed / nf)
        })
        .collect();
    (0..n)
        .map(|m| {
            (0..n)
                .map(|k| y[k] * C64::from_polar(1.0, 2.0 * PI * (k * m % n) as f64 / nf))
                .sum()
        })
        .collect()
}

fn max_abs_diff(a: &[C64], b: &[C64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).norm())
        .fold(0.0, f64::max)
}

fn err_text(e: &PhysicsError) -> String {
    e.to_string()
}

/// Asserts an InvalidParameter whose field contains every `needle`.
fn assert_invalid(r: Result<impl std::fmt::Debug, PhysicsError>, needles: &[&str]) {
    match r {
        Err(PhysicsError::InvalidParameter { ref field, .. }) => {
            for n in needles {
                assert!(field.contains(n), "field {field:?} lacks {n:?} ({:?})", r);
            }
        }
        other => panic!("expected InvalidParameter naming {needles:?}, got {other:?}"),
    }
}

/// Asserts a Parse error whose message contains every `needle`.
fn assert_parse(r: Result<impl std::fmt::Debug, PhysicsError>, needles: &[&str]) {
    match r {
        Err(PhysicsError::Parse(ref msg)) => {
            for n in needles {
                assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
            }
        }
        other => panic!("expected Parse naming {needles:?}, got {other:?}"),
    }
}

/// Asserts a SizeMismatch whose `what` contains every `needle`.
fn assert_size(
    r: Result<impl std::fmt::Debug, PhysicsError>,
    needles: &[&str],
    expected: usize,
    got: usize,
) {
    match r {
        Err(PhysicsError::SizeMismatch {
            ref what,
            expected: e,
            got: g,
        }) => {
            for n in needles {
                assert!(what.contains(n), "what {what:?} lacks {n:?}");
            }
            assert_eq!((e, g), (expected, got), "{what}");
        }
        other => panic!("expected SizeMismatch naming {needles:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips and decoding
// ---------------------------------------------------------------------------------------------

#[test]
fn write_read_round_trip_is_bit_exact() {
    for n in [1000usize, 64, 1] {
        // 1000 points: 16000 bytes, padded to 16384; 64 points: exactly 1024 bytes.
        let fid = awkward_fid(n);
        let dwell = 1.0 / 4807.6923;
        let dir = scratch("round_trip");
        write_experiment(&dir, &fid, dwell, 400.131880611, "1H", 0.0).unwrap();
        let len = std::fs::metadata(dir.join("fid")).unwrap().len() as usize;
        assert_eq!(len % FID_BLOCK_BYTES, 0);
        assert!(len >= 16 * n && len < 16 * n + FID_BLOCK_BYTES);

        let b = read_experiment(&dir).unwrap();
        assert_eq!(b.fid.len(), n);
        for (k, (x, y)) in fid.iter().zip(&b.fid).enumerate() {
            assert_eq!(
                (x.re.to_bits(), x.im.to_bits()),
                (y.re.to_bits(), y.im.to_bits()),
                "point {k}: wrote {x}, read {y}"
            );
        }
        assert!((b.dwell - dwell).abs() <= 2.0 * f64::EPSILON * dwell);
        assert_eq!(b.spectrometer_mhz.to_bits(), 400.131880611f64.to_bits());
        assert_eq!(b.bf1_mhz, b.spectrometer_mhz);
        assert_eq!(b.o1_hz, 0.0);
        assert_eq!(b.carrier_ppm(), 0.0);
        assert_eq!(b.nucleus, "1H");
        assert_eq!(b.group_delay, 0.0);
        assert_eq!(b.scans, None);
        assert_eq!(b.acqus.get_i64("TD").unwrap(), Some(2 * n as i64));
        assert_eq!(b.acqus.get_i64("DTYPA").unwrap(), Some(2));
        assert_eq!(b.acqus.get_i64("BYTORDA").unwrap(), Some(0));
        assert_eq!(b.acqus.get("NUC1"), Some("1H"));
        assert_eq!(b.acqus.core()[0].0, "TITLE");
    }
}

#[test]
fn write_with_offset_records_the_carrier() {
    let fid = awkward_fid(10);
    let dir = scratch("offset");
    write_experiment_with_offset(&dir, &fid, 2e-4, 123.2594, 578.0, "31P", 0.0).unwrap();
    let b = read_experiment(&dir).unwrap();
    assert_eq!(b.spectrometer_mhz, 123.2594);
    assert_eq!(b.o1_hz, 578.0);
    assert!((b.bf1_mhz - (123.2594 - 578e-6)).abs() < 1e-12);
    assert!((b.carrier_ppm() - 578.0 / b.bf1_mhz).abs() < 1e-15);
    assert_eq!(b.nucleus, "31P");
}

#[test]
fn int32_little_and_big_endian_built_byte_by_byte() {
    let values = [0, 1, -1, i32::MAX, i32::MIN, 123_456_789, -987_654, 42];
    for big in [false, true] {
        let bytes = i32_bytes(&values, big);
        assert_eq!(bytes.len(), 32);
        let text = acqus_text(&base_params(values.len(), 0, i32::from(big)));
        let dir = exp_dir("int32", Some(&text), Some(&bytes), None);
        let b = read_experiment(&dir).unwrap();
        let want: Vec<C64> = values
            .chunks(2)
            .map(|p| C64::new(f64::from(p[0]), f64::from(p[1])))
            .collect();
        assert_eq!(b.fid, want, "big-endian = {big}");
        assert_eq!(b.scans, Some(16));
        assert_eq!(b.acqus.get_array("P").unwrap(), ["10.5", "0", "0", "20"]);
        // The same bytes read with the other byte order decode to other values.
        let other = acqus_text(&base_params(values.len(), 0, i32::from(!big)));
        let a = Acqus::parse(&other, "other").unwrap();
        assert_ne!(decode_fid(&bytes, &a, "fid").unwrap(), want);
    }
    // DTYPA absent means int32.
    let bytes = i32_bytes(&[7, -7], false);
    let text = acqus_text(&with(base_params(2, 0, 0), "DTYPA", None));
    let a = Acqus::parse(&text, "acqus").unwrap();
    assert_eq!(
        decode_fid(&bytes, &a, "fid").unwrap(),
        [C64::new(7.0, -7.0)]
    );
}

#[test]
fn float64_and_float32_in_both_byte_orders() {
    let v64 = [1.5, -2.25, 1e-300, -0.0, 6.02e23, -1.0 / 3.0];
    let v32 = [1.5f32, -2.25, 1e-30, -0.0, 3.4e38, -1.0 / 3.0];
    for big in [false, true] {
        let a = Acqus::parse(&acqus_text(&base_params(6, 2, i32::from(big))), "acqus").unwrap();
        let got = decode_fid(&f64_bytes(&v64, big), &a, "fid").unwrap();
        let want: Vec<C64> = v64.chunks(2).map(|p| C64::new(p[0], p[1])).collect();
        assert_eq!(got, want);
        assert_eq!(got[1].im.to_bits(), (-0.0f64).to_bits());

        let a = Acqus::parse(&acqus_text(&base_params(6, 1, i32::from(big))), "acqus").unwrap();
        let got = decode_fid(&f32_bytes(&v32, big), &a, "fid").unwrap();
        let want: Vec<C64> = v32
            .chunks(2)
            .map(|p| C64::new(f64::from(p[0]), f64::from(p[1])))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn fid_padding_is_accepted_and_ignored_but_not_more() {
    let values: Vec<i32> = (0..200).map(|k| k * 3 - 250).collect(); // 800 bytes
    let text = acqus_text(&base_params(200, 0, 0));
    let mut padded = i32_bytes(&values, false);
    padded.resize(1024, 0xAB); // padding content is not checked
    let dir = exp_dir("padded", Some(&text), Some(&padded), None);
    let b = read_experiment(&dir).unwrap();
    assert_eq!(b.fid.len(), 100);
    assert_eq!(
        b.fid[99],
        C64::new(f64::from(values[198]), f64::from(values[199]))
    );

    let mut long = padded.clone();
    long.extend_from_slice(&[0u8; 4]);
    let dir = exp_dir("too_long", Some(&text), Some(&long), None);
    let fid_path = dir.join("fid").display().to_string();
    assert_size(
        read_experiment(&dir),
        &[&fid_path, "TD = 200", "longer"],
        1024,
        1028,
    );
}

#[test]
fn ser_is_read_as_its_first_fid_across_block_padding() {
    // int32, TD = 200: 800 bytes per FID, each FID padded to 1024 bytes.
    let first: Vec<i32> = (0..200).map(|k| 1000 + k).collect();
    let second: Vec<i32> = (0..200).map(|k| -5 * k).collect();
    let mut ser = pad_to_block(i32_bytes(&first, true));
    ser.extend(pad_to_block(i32_bytes(&second, true)));
    ser.extend(pad_to_block(i32_bytes(&second, true)));
    assert_eq!(ser.len(), 3 * 1024);
    let text = acqus_text(&base_params(200, 0, 1));
    let dir = exp_dir("ser", Some(&text), None, Some(&ser));
    let b = read_experiment(&dir).unwrap();
    let want: Vec<C64> = first
        .chunks(2)
        .map(|p| C64::new(f64::from(p[0]), f64::from(p[1])))
        .collect();
    assert_eq!(b.fid, want);

    // float64, 64 points = exactly 1024 bytes per FID (no padding).
    let f1: Vec<f64> = (0..128).map(|k| k as f64 * 0.5).collect();
    let f2: Vec<f64> = (0..128).map(|k| -(k as f64)).collect();
    let mut ser = f64_bytes(&f1, false);
    ser.extend(f64_bytes(&f2, false));
    let text = acqus_text(&base_params(128, 2, 0));
    let dir = exp_dir("ser64", Some(&text), None, Some(&ser));
    let b = read_experiment(&dir).unwrap();
    assert_eq!(b.fid.len(), 64);
    assert_eq!(b.fid[63], C64::new(63.0, 63.5));

    // A fid file wins over a ser file.
    let fid = f64_bytes(&f2, false);
    let dir = exp_dir("fid_and_ser", Some(&text), Some(&fid), Some(&ser));
    assert_eq!(read_experiment(&dir).unwrap().fid[1], C64::new(-2.0, -3.0));

    // A ser shorter than its first FID is an error naming it.
    let dir = exp_dir("ser_short", Some(&text), None, Some(&ser[..1000]));
    let path = dir.join("ser").display().to_string();
    assert_size(read_experiment(&dir), &[&path, "truncated"], 1024, 1000);
}

// ---------------------------------------------------------------------------------------------
// Digital filter and sign convention
// ---------------------------------------------------------------------------------------------

#[test]
fn analytically_delayed_tone_comes_back_at_plus_f() {
    // Undamped tone on the FFT grid of the raw FID, delayed analytically by a fractional
    // group delay: raw[n] = A·e^{iφ}·e^{2πi·f·(n − G)·dw}. No FFT in the construction.
    let (n, sw, g) = (1024usize, 5000.0, 71.625);
    let dwell = 1.0 / sw;
    let (a, phase, f) = (3.5, 0.7, 64.0 * sw / n as f64); // +312.5 Hz
    let raw: Vec<C64> = (0..n)
        .map(|k| {
            C64::from_polar(a, phase) * C64::new(0.0, 2.0 * PI * f * (k as f64 - g) * dwell).exp()
        })
        .collect();
    let dir = scratch("tone");
    write_experiment_with_offset(&dir, &raw, dwell, 400.13 + 1880.0e-6, 1880.0, "1H", g).unwrap();
    let b = read_experiment(&dir).unwrap();
    assert_eq!(b.group_delay, g);
    assert_eq!(b.fid.len(), n - 71);
    let want: Vec<C64> = (0..b.fid.len())
        .map(|k| C64::from_polar(a, phase) * C64::new(0.0, 2.0 * PI * f * k as f64 * dwell).exp())
        .collect();
    let err = max_abs_diff(&b.fid, &want);
    assert!(err <= 1e-9 * a, "max error {err:e}");
    assert!((b.fid[0].norm() - a).abs() <= 1e-9 * a);
    assert!((b.fid[0].arg() - phase).abs() <= 1e-9);

    // Spectrum peak at +f: above the carrier on the ppm axis (spinloop's convention).
    let m = b.fid.len();
    let spec = SpectrumPlan::new(m).unwrap().spectrum(&b.fid).unwrap();
    let peak = (0..m)
        .max_by(|&i, &j| spec[i].norm().total_cmp(&spec[j].norm()))
        .unwrap();
    let freq = frequency_axis(m, b.dwell);
    assert!(
        (freq[peak] - f).abs() <= 0.5 / (m as f64 * b.dwell),
        "peak at {} Hz",
        freq[peak]
    );
    let ppm = ppm_axis(m, b.dwell, b.carrier_ppm(), b.spectrometer_mhz);
    assert!(ppm[peak] > b.carrier_ppm());
    assert!((ppm[peak] - (b.carrier_ppm() + f / b.spectrometer_mhz)).abs() < 0.02);
}

#[test]
fn band_limited_delay_of_a_damped_line_is_removed_with_amplitude_and_phase() {
    // s: a damped line at +20 bins of the corrected length (on that grid), plus a weaker line
    // at negative frequency; raw = s delayed by G with a direct DFT (band-limited delay).
    let (n, sw, g) = (256usize, 5000.0, 71.625);
    let dwell = 1.0 / sw;
    let m = n - 71;
    let f = 20.0 * sw / m as f64;
    let lines = [
        Line {
            a: 2.0,
            f,
            phase: -1.2,
            r: 150.0,
        },
        Line {
            a: 0.3,
            f: -1234.5,
            phase: 0.4,
            r: 300.0,
        },
    ];
    let s = line_signal(&lines, n, dwell);
    let raw = dft_delay(&s, g);

    // Like a real Bruker FID, the raw data start at about GRPDLY points: the peak magnitude is
    // right after G, and the points well before G hold little of the signal.
    let mags: Vec<f64> = raw.iter().map(|z| z.norm()).collect();
    let argmax = (0..n).max_by(|&i, &j| mags[i].total_cmp(&mags[j])).unwrap();
    assert!((71..=74).contains(&argmax), "raw maximum at {argmax}");
    let early = mags[..60].iter().sum::<f64>() / 60.0;
    assert!(
        early < 0.05 * mags[argmax],
        "mean |raw| before the onset {early}"
    );

    let dir = scratch("damped");
    write_experiment(&dir, &raw, dwell, 400.13, "1H", g).unwrap();
    let b = read_experiment(&dir).unwrap();
    assert_eq!(b.fid.len(), m);
    let err = max_abs_diff(&b.fid, &s[..m]);
    assert!(err <= 1e-9 * 2.0, "max error {err:e}");
    let first = b.fid[0];
    let want0 = C64::from_polar(2.0, -1.2) + C64::from_polar(0.3, 0.4);
    assert!(
        (first - want0).norm() <= 1e-9,
        "first point {first} vs {want0}"
    );

    let spec = SpectrumPlan::new(m).unwrap().spectrum(&b.fid).unwrap();
    let peak = (0..m)
        .max_by(|&i, &j| spec[i].norm().total_cmp(&spec[j].norm()))
        .unwrap();
    let freq = frequency_axis(m, b.dwell);
    assert!(
        (freq[peak] - f).abs() < 1e-9,
        "peak at {} Hz, line at {f} Hz",
        freq[peak]
    );
    let ppm = ppm_axis(m, b.dwell, 4.7, b.spectrometer_mhz);
    assert!(ppm[peak] > 4.7);
}

#[test]
fn remove_digital_filter_edge_cases() {
    let fid = awkward_fid(50);
    assert_eq!(remove_digital_filter(&fid, 0.0).unwrap(), fid);
    assert_eq!(remove_digital_filter(&fid, 7.0).unwrap(), fid[7..].to_vec());
    assert_eq!(
        remove_digital_filter(&fid, 49.0).unwrap(),
        fid[49..].to_vec()
    );
    assert_eq!(remove_digital_filter(&fid[..3], 2.5).unwrap().len(), 1);
    assert_invalid(remove_digital_filter(&fid, 50.0), &["group_delay"]);
    assert_invalid(remove_digital_filter(&fid, -0.5), &["group_delay"]);
    assert_invalid(remove_digital_filter(&fid, f64::NAN), &["group_delay"]);
    assert_invalid(remove_digital_filter(&fid, f64::INFINITY), &["group_delay"]);
    assert_invalid(remove_digital_filter(&fid, 1e300), &["group_delay"]);
    assert_invalid(remove_digital_filter(&[], 0.0), &["fid"]);
    // A fractional delay followed by its inverse (a delay by the same amount) is the identity
    // up to the dropped points, for even and odd lengths.
    for n in [64usize, 65] {
        let s = line_signal(
            &[Line {
                a: 1.0,
                f: 333.0,
                phase: 0.2,
                r: 50.0,
            }],
            n,
            1e-4,
        );
        let raw = dft_delay(&s, 3.4);
        let back = remove_digital_filter(&raw, 3.4).unwrap();
        assert_eq!(back.len(), n - 3);
        assert!(max_abs_diff(&back, &s[..n - 3]) < 1e-12, "n = {n}");
    }
}

#[test]
fn dsp_table_and_group_delay_rules() {
    assert_eq!(dsp_table_group_delay(10, 2), Some(44.75));
    assert_eq!(dsp_table_group_delay(10, 2048), Some(70.492431640625));
    assert_eq!(dsp_table_group_delay(11, 64), Some(73.0));
    assert_eq!(dsp_table_group_delay(12, 16), Some(71.625));
    assert_eq!(dsp_table_group_delay(13, 96), Some(2.9947916666666665));
    assert_eq!(dsp_table_group_delay(13, 128), None);
    assert_eq!(dsp_table_group_delay(11, 5), None);
    assert_eq!(dsp_table_group_delay(14, 16), None);

    let rule = |params: Vec<(&'static str, String)>| {
        group_delay_from_acqus(&Acqus::parse(&acqus_text(&params), "acqus").unwrap())
    };
    let p = base_params(2048, 0, 0);
    assert_eq!(
        rule(with(p.clone(), "GRPDLY", Some("67.9862060546875"))).unwrap(),
        67.9862060546875
    );
    // GRPDLY -1 (older TopSpin: not recorded) with DSPFVS >= 14: no table delay.
    assert_eq!(rule(with(p.clone(), "GRPDLY", Some("-1"))).unwrap(), 0.0);
    let old = with(with(p.clone(), "GRPDLY", None), "DSPFVS", Some("10"));
    assert_eq!(
        rule(with(old.clone(), "DECIM", Some("32"))).unwrap(),
        70.015625
    );
    assert_invalid(
        rule(with(old.clone(), "DECIM", Some("5"))),
        &["acqus", "##$DECIM"],
    );
    assert_eq!(rule(with(old.clone(), "DIGMOD", Some("0"))).unwrap(), 0.0);
    let bare = with(
        with(with(p.clone(), "GRPDLY", None), "DSPFVS", None),
        "DECIM",
        None,
    );
    assert_parse(rule(bare.clone()), &["acqus", "group delay"]);
    assert_eq!(rule(with(bare, "GRPDLY", Some("0"))).unwrap(), 0.0);
    assert_invalid(rule(with(p, "GRPDLY", Some("nan"))), &["##$GRPDLY"]);

    // Through read_experiment: the table delay is removed.
    let n = 256usize;
    let values: Vec<i32> = (0..2 * n as i32).collect();
    let text = acqus_text(&with(old, "DECIM", Some("32")));
    let text = text.replace("##$TD= 2048", &format!("##$TD= {}", 2 * n));
    let dir = exp_dir("table", Some(&text), Some(&i32_bytes(&values, false)), None);
    let b = read_experiment(&dir).unwrap();
    assert_eq!(b.group_delay, 70.015625);
    assert_eq!(b.fid.len(), n - 70);
}

// ---------------------------------------------------------------------------------------------
// acqus parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn acqus_arrays_strings_and_comments() {
    let text = "\u{feff}##TITLE= Parameter file, TOPSPIN\r\n\
                ##JCAMP-DX= 5.0\r\n\
                $$ a comment line\r\n\
                ##$AMP= (0..3)\r\n100 100 \r\n  100 100\r\n\
                ##$QS= (0..7)83 83 83 83 83 83 83 22\r\n\
                ##$GPNAM= (0..3)\r\n<sine.100> <5 mm probe> <> <x>\r\n\
                ##$EMPTY= (0..-1)\r\n\
                ##$AUNM= <au_zg>\r\n\
                ##$AUTOPOS= <>\r\n\
                ##$INSTRUM= <spect $$ not a comment>\r\n\
                ##$NOTE= <first line\r\nsecond line\r\nthird>\r\n\
                ##$NS= 16 $$ scans\r\n\
                ##$SW_h= 5000.00000000001\r\n\
                ##$LOCKED= no\r\n\
                ##$D= (0..2)\r\n$$ comment inside an array\r\n0 2 1e-06\r\n\
                ##END=";
    let a = Acqus::parse(text, "exp/1/acqus").unwrap();
    assert_eq!(a.source(), "exp/1/acqus");
    assert_eq!(
        a.core()[0],
        ("TITLE".to_string(), "Parameter file, TOPSPIN".to_string())
    );
    assert_eq!(a.get_array("AMP").unwrap(), ["100", "100", "100", "100"]);
    assert_eq!(a.get("AMP"), Some("100 100 100 100"));
    assert_eq!(a.get_array("QS").unwrap().len(), 8);
    assert_eq!(a.get_array("qs").unwrap()[7], "22");
    assert_eq!(
        a.get_array("GPNAM").unwrap(),
        ["sine.100", "5 mm probe", "", "x"]
    );
    assert_eq!(a.get_array("EMPTY").unwrap().len(), 0);
    assert_eq!(a.get("AUNM"), Some("au_zg"));
    assert_eq!(a.get_array("AUNM"), None);
    assert_eq!(a.get("AUTOPOS"), Some(""));
    assert_eq!(a.get("INSTRUM"), Some("spect $$ not a comment"));
    assert_eq!(a.get("NOTE"), Some("first line\nsecond line\nthird"));
    assert_eq!(a.get_i64("NS").unwrap(), Some(16));
    assert_eq!(a.get_f64("ns").unwrap(), Some(16.0));
    assert_eq!(a.get_f64("##$SW_h").unwrap(), Some(5000.00000000001));
    assert_eq!(a.get_f64("sw_H").unwrap(), Some(5000.00000000001));
    assert_eq!(a.get("LOCKED"), Some("no"));
    assert_eq!(a.get_array("D").unwrap(), ["0", "2", "1e-06"]);
    assert_eq!(a.line_of("NS"), Some(17));
    assert_eq!(a.get("MISSING"), None);
    assert_eq!(a.get_f64("MISSING").unwrap(), None);
    assert_eq!(a.keys().count(), 12);
    // Typed access errors name the file, line and key.
    assert_parse(
        a.get_f64("LOCKED"),
        &["exp/1/acqus", "line 19", "##$LOCKED", "not a number"],
    );
    assert_parse(a.get_f64("AMP"), &["exp/1/acqus", "##$AMP", "array"]);
    assert_parse(
        a.get_i64("SW_h"),
        &["exp/1/acqus", "##$SW_h", "not an integer"],
    );
}

#[test]
fn acqus_structural_errors_name_file_and_line() {
    let ok = "##TITLE= t\n##$NS= 1\n";
    let cases: [(String, &[&str]); 15] = [
        (ok.to_string(), &["no ##END=", "line 2"]),
        (String::new(), &["empty"]),
        ("\n  \n".to_string(), &["empty"]),
        (
            format!("{ok}##$NS= 2\n##END=\n"),
            &["line 3", "duplicate", "##$NS", "line 2"],
        ),
        (
            format!("{ok}##$ns= 2\n##END=\n"),
            &["line 3", "duplicate", "ignore case"],
        ),
        (
            format!("{ok}##$TD 16\n##END=\n"),
            &["line 3", "expected `##LABEL= value`"],
        ),
        (
            format!("{ok}garbage\n##END=\n"),
            &["line 3", "unexpected line", "garbage"],
        ),
        (
            format!("{ok}##$= 3\n##END=\n"),
            &["line 3", "malformed parameter name"],
        ),
        (
            format!("{ok}##$A-B= 3\n##END=\n"),
            &["line 3", "malformed parameter name"],
        ),
        (
            format!("{ok}##$P= (0..3)\n1 2\n##$X= 1\n##END=\n"),
            &["line 5", "##$P", "only 2"],
        ),
        (
            format!("{ok}##$P= (0..1)\n1 2 3\n##END=\n"),
            &["##$P", "declares 2", "got 3"],
        ),
        (
            format!("{ok}##$P= (0..x)\n1\n##END=\n"),
            &["line 3", "malformed array header"],
        ),
        (
            format!("{ok}##$P= (0..3\n##END=\n"),
            &["line 3", "malformed array header"],
        ),
        (
            format!("{ok}##$S= <abc\ndef\n"),
            &["line 3", "unterminated string", "##$S"],
        ),
        (
            format!("{ok}##$S= <abc\n##END=\n"),
            &["line 4", "unterminated string"],
        ),
    ];
    for (text, needles) in cases.iter() {
        let r = Acqus::parse(text, "dir/acqus");
        let mut all: Vec<&str> = vec!["dir/acqus"];
        all.extend_from_slice(needles);
        assert_parse(r, &all);
    }
    assert_parse(
        Acqus::parse("##$P= (0..2)\n1 2\n", "a"),
        &["declares 3", "file ends after 2"],
    );
    assert_parse(
        Acqus::parse("##$S= <a> b\n##END=\n", "a"),
        &["text after the closing >"],
    );
    assert_parse(
        Acqus::parse("##$G= (0..1)\n<a b\n##END=\n", "a"),
        &["unterminated string"],
    );
    // Text after ##END= is ignored; ##END= alone is a valid (empty) file.
    let a = Acqus::parse("##END=\nanything at all", "a").unwrap();
    assert_eq!(a.keys().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_files_are_errors_naming_them() {
    let text = acqus_text(&base_params(4, 0, 0));
    let fid = i32_bytes(&[1, 2, 3, 4], false);

    let dir = exp_dir("no_acqus", None, Some(&fid), None);
    let p = dir.join("acqus").display().to_string();
    assert_parse(read_experiment(&dir), &[&p, "cannot read"]);

    let dir = exp_dir("no_fid", Some(&text), None, None);
    assert_parse(
        read_experiment(&dir),
        &[&dir.display().to_string(), "no fid or ser"],
    );

    let dir = scratch("not_a_dir").join("nope");
    assert_parse(read_experiment(&dir), &["nope", "not a directory"]);
}

#[test]
fn bad_sizes_are_errors_naming_the_file() {
    // Truncated fid: TD = 8 int32 values need 32 bytes.
    let text = acqus_text(&base_params(8, 0, 0));
    let values = i32_bytes(&[1, 2, 3, 4, 5, 6, 7, 8], false);
    let dir = exp_dir("truncated", Some(&text), Some(&values[..30]), None);
    let fid = dir.join("fid").display().to_string();
    let acq = dir.join("acqus").display().to_string();
    assert_size(
        read_experiment(&dir),
        &[&fid, &acq, "TD = 8", "truncated"],
        32,
        30,
    );
    // Empty fid.
    let dir = exp_dir("empty_fid", Some(&text), Some(&[]), None);
    assert_size(read_experiment(&dir), &["fid", "truncated"], 32, 0);
    // TD larger than the file.
    let text = acqus_text(&base_params(1_000_000, 0, 0));
    let dir = exp_dir("td_large", Some(&text), Some(&values), None);
    assert_size(read_experiment(&dir), &["TD = 1000000"], 4_000_000, 32);
    // TD absurdly large: no allocation, an error.
    let text = acqus_text(&base_params(0, 0, 0)).replace("##$TD= 0", "##$TD= 9223372036854775806");
    let dir = exp_dir("td_huge", Some(&text), Some(&values), None);
    assert!(read_experiment(&dir).is_err());
    // TD odd, zero, negative, missing, not a number.
    let p = base_params(8, 0, 0);
    for (td, needles) in [
        (Some("7"), vec!["##$TD", "acqus"]),
        (Some("0"), vec!["##$TD"]),
        (Some("-8"), vec!["##$TD"]),
    ] {
        let dir = exp_dir(
            "td_bad",
            Some(&acqus_text(&with(p.clone(), "TD", td))),
            Some(&values),
            None,
        );
        assert_invalid(read_experiment(&dir), &needles);
    }
    let dir = exp_dir(
        "td_missing",
        Some(&acqus_text(&with(p.clone(), "TD", None))),
        Some(&values),
        None,
    );
    assert_parse(read_experiment(&dir), &["acqus", "missing ##$TD"]);
    let dir = exp_dir(
        "td_text",
        Some(&acqus_text(&with(p, "TD", Some("16k")))),
        Some(&values),
        None,
    );
    assert_parse(read_experiment(&dir), &["acqus", "##$TD", "not an integer"]);
}

#[test]
fn bad_parameters_are_errors_naming_them() {
    let values = i32_bytes(&[1, 2, 3, 4, 5, 6, 7, 8], false);
    let p = base_params(8, 0, 0);
    let invalid: [(&'static str, Option<&str>, &str); 14] = [
        ("DTYPA", Some("7"), "##$DTYPA"),
        ("DTYPA", Some("-1"), "##$DTYPA"),
        ("BYTORDA", Some("3"), "##$BYTORDA"),
        ("SW_h", Some("0"), "##$SW_h"),
        ("SW_h", Some("NaN"), "##$SW_h"),
        ("SW_h", Some("-5000"), "##$SW_h"),
        ("SW_h", Some("inf"), "##$SW_h"),
        ("SFO1", Some("0"), "##$SFO1"),
        ("SFO1", Some("400.2"), "##$SFO1"), // != BF1 + O1
        ("BF1", Some("-1"), "##$BF1"),
        ("AQ_mod", Some("0"), "##$AQ_mod"),
        ("AQ_mod", Some("2"), "##$AQ_mod"),
        ("NS", Some("-3"), "##$NS"),
        ("NUC1", Some("<off>"), "##$NUC1"),
    ];
    for (key, value, needle) in invalid {
        let dir = exp_dir(
            "bad_param",
            Some(&acqus_text(&with(p.clone(), key, value))),
            Some(&values),
            None,
        );
        let acq = dir.join("acqus").display().to_string();
        assert_invalid(read_experiment(&dir), &[needle, &acq]);
    }
    let missing: [&'static str; 4] = ["BYTORDA", "SW_h", "SFO1", "NUC1"];
    for key in missing {
        let dir = exp_dir(
            "missing_param",
            Some(&acqus_text(&with(p.clone(), key, None))),
            Some(&values),
            None,
        );
        assert_parse(
            read_experiment(&dir),
            &["acqus", &format!("missing ##${key}=")],
        );
    }
    let dir = exp_dir(
        "no_bf1_o1",
        Some(&acqus_text(&with(with(p.clone(), "BF1", None), "O1", None))),
        Some(&values),
        None,
    );
    assert_parse(read_experiment(&dir), &["missing ##$BF1="]);
    // One of BF1 / O1 is enough.
    for key in ["BF1", "O1"] {
        let dir = exp_dir(
            "one_of",
            Some(&acqus_text(&with(p.clone(), key, None))),
            Some(&values),
            None,
        );
        let b = read_experiment(&dir).unwrap();
        assert!((b.bf1_mhz - 400.13).abs() < 1e-9 && (b.o1_hz - 1880.611).abs() < 1e-3);
    }
    // A group delay as long as the FID.
    let dir = exp_dir(
        "grpdly_long",
        Some(&acqus_text(&with(p, "GRPDLY", Some("4.5")))),
        Some(&values),
        None,
    );
    assert_invalid(read_experiment(&dir), &["##$GRPDLY", "acqus"]);
}

#[test]
fn non_finite_samples_are_errors_naming_the_value() {
    let mut v = vec![1.0, 2.0, 3.0, 4.0];
    v[3] = f64::NAN;
    let text = acqus_text(&base_params(4, 2, 0));
    let dir = exp_dir("nan64", Some(&text), Some(&f64_bytes(&v, false)), None);
    let fid = dir.join("fid").display().to_string();
    assert_invalid(
        read_experiment(&dir),
        &[&fid, "value 3", "imaginary part of point 1"],
    );

    let v32 = [1.0f32, f32::INFINITY];
    let text = acqus_text(&base_params(2, 1, 1));
    let dir = exp_dir("inf32", Some(&text), Some(&f32_bytes(&v32, true)), None);
    assert_invalid(read_experiment(&dir), &["fid", "value 1"]);
}

#[test]
fn write_experiment_rejects_bad_arguments() {
    let dir = scratch("bad_write");
    let fid = awkward_fid(8);
    assert_invalid(
        write_experiment(&dir, &[], 1e-4, 400.0, "1H", 0.0),
        &["fid"],
    );
    let mut nan = fid.clone();
    nan[5].im = f64::NAN;
    assert_invalid(
        write_experiment(&dir, &nan, 1e-4, 400.0, "1H", 0.0),
        &["fid[5]"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 0.0, 400.0, "1H", 0.0),
        &["dwell"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 1e-320, 400.0, "1H", 0.0),
        &["dwell"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 1e-4, f64::NAN, "1H", 0.0),
        &["spectrometer_mhz"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 1e-4, 400.0, "<1H>", 0.0),
        &["nucleus"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 1e-4, 400.0, " ", 0.0),
        &["nucleus"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 1e-4, 400.0, "1H", -1.0),
        &["group_delay"],
    );
    assert_invalid(
        write_experiment(&dir, &fid, 1e-4, 400.0, "1H", 8.0),
        &["group_delay"],
    );
    assert_invalid(
        write_experiment_with_offset(&dir, &fid, 1e-4, 400.0, 5e8, "1H", 0.0),
        &["o1_hz"],
    );
    assert!(!dir.join("acqus").exists() && !dir.join("fid").exists());
}

// ---------------------------------------------------------------------------------------------
// Property: mutated files never panic
// ---------------------------------------------------------------------------------------------

const WEIRD: [&str; 16] = [
    "-1",
    "0",
    "1",
    "3",
    "7",
    "1e308",
    "NaN",
    "inf",
    "-inf",
    "99999999999999999999",
    "9223372036854775807",
    "",
    "<x>",
    "(0..3)",
    "2.5",
    "-0",
];
const KEYS: [&str; 12] = [
    "TD", "DTYPA", "BYTORDA", "SW_h", "SFO1", "BF1", "O1", "GRPDLY", "AQ_mod", "NS", "DECIM",
    "DSPFVS",
];

/// A valid acqus + fid pair (written once) for the mutation property.
fn valid_pair() -> (String, Vec<u8>) {
    static PAIR: std::sync::OnceLock<(String, Vec<u8>)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let dir = scratch("proptest_base");
        let s = line_signal(
            &[Line {
                a: 1.0,
                f: 200.0,
                phase: 0.0,
                r: 20.0,
            }],
            100,
            2e-4,
        );
        write_experiment(&dir, &s, 2e-4, 400.13, "1H", 12.375).unwrap();
        (
            std::fs::read_to_string(dir.join("acqus")).unwrap(),
            std::fs::read(dir.join("fid")).unwrap(),
        )
    })
    .clone()
}

fn check_outcome(r: Result<spinloop::formats::bruker_fid::BrukerFid, PhysicsError>) {
    if let Ok(b) = r {
        assert!(!b.fid.is_empty());
        assert!(b.fid.iter().all(|z| z.re.is_finite() && z.im.is_finite()));
        assert!(b.dwell.is_finite() && b.dwell > 0.0);
        assert!(b.spectrometer_mhz.is_finite() && b.spectrometer_mhz > 0.0);
        assert!(b.group_delay.is_finite() && b.group_delay >= 0.0);
        let td = b.acqus.get_i64("TD").unwrap().unwrap() as usize;
        assert_eq!(b.fid.len(), td / 2 - b.group_delay.floor() as usize);
    } else if let Err(e) = r {
        assert!(!err_text(&e).is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_experiments_never_panic(
        acq_edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        fid_edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        acq_cut in proptest::option::of(any::<usize>()),
        fid_cut in proptest::option::of(any::<usize>()),
        fid_extra in 0usize..2100,
        param in proptest::option::of((0usize..KEYS.len(), 0usize..WEIRD.len())),
        ser in any::<bool>(),
    ) {
        let (text, bytes) = valid_pair();
        let mut text = text.into_bytes();
        if let Some((k, v)) = param {
            let s = String::from_utf8(text.clone()).unwrap();
            let key = KEYS[k];
            let replaced: String = s
                .lines()
                .map(|l| {
                    if l.starts_with(&format!("##${key}=")) {
                        format!("##${key}= {}\n", WEIRD[v])
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            text = replaced.into_bytes();
        }
        for (i, b) in &acq_edits {
            if !text.is_empty() {
                let n = text.len();
                text[i % n] = *b;
            }
        }
        if let Some(c) = acq_cut {
            text.truncate(c % (text.len() + 1));
        }
        let mut bytes = bytes;
        for (i, b) in &fid_edits {
            let n = bytes.len();
            bytes[i % n] = *b;
        }
        bytes.extend(std::iter::repeat_n(0x7fu8, fid_extra));
        if let Some(c) = fid_cut {
            bytes.truncate(c % (bytes.len() + 1));
        }

        // In memory.
        let lossy = String::from_utf8_lossy(&text).into_owned();
        if let Ok(a) = Acqus::parse(&lossy, "mutated/acqus") {
            let raw = decode_fid(&bytes, &a, "mutated/fid");
            if let (Ok(g), Ok(raw)) = (group_delay_from_acqus(&a), raw) {
                let _ = remove_digital_filter(&raw, g);
            }
        }
        // Through files.
        let dir = scratch("proptest");
        std::fs::write(dir.join("acqus"), &text).unwrap();
        std::fs::write(dir.join(if ser { "ser" } else { "fid" }), &bytes).unwrap();
        check_outcome(read_experiment(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Peer: nmrglue 0.12
// ---------------------------------------------------------------------------------------------

/// The peer Python (a venv with nmrglue==0.12), or `None` to skip outside CI.
fn peer_python() -> Option<String> {
    match std::env::var("SPINLOOP_PEER_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "peer venv required in CI: set SPINLOOP_PEER_PYTHON to a Python with \
                     nmrglue==0.12 and numpy"
                );
            }
            println!("skipped: SPINLOOP_PEER_PYTHON is not set (nmrglue peer test)");
            None
        }
    }
}

fn run_peer(python: &str, args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/bruker_fid_peer.py"
    );
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "peer {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn peer_nmrglue_writes_we_read() {
    let Some(python) = peer_python() else {
        return;
    };
    let root = scratch("peer_write");
    let out = run_peer(&python, &["write", root.to_str().unwrap()]);
    println!("{out}");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    let lines: Vec<Line> = expected["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| Line {
            a: l[0].as_f64().unwrap(),
            f: l[1].as_f64().unwrap(),
            phase: l[2].as_f64().unwrap(),
            r: l[3].as_f64().unwrap(),
        })
        .collect();
    let int_scale = expected["int_scale"].as_f64().unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let b = read_experiment(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: Vec<C64> = case["fid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| C64::new(p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        assert_eq!(b.fid.len(), want.len(), "{name}");
        assert_eq!(
            b.acqus.get_i64("TD").unwrap(),
            case["td"].as_i64(),
            "{name}"
        );
        assert_eq!(b.dwell, 1.0 / case["sw_h"].as_f64().unwrap(), "{name}");
        assert_eq!(b.spectrometer_mhz, case["sfo1"].as_f64().unwrap(), "{name}");
        assert_eq!(b.bf1_mhz, case["bf1"].as_f64().unwrap(), "{name}");
        assert_eq!(b.o1_hz, case["o1"].as_f64().unwrap(), "{name}");
        assert_eq!(b.nucleus, case["nuc1"].as_str().unwrap(), "{name}");
        assert_eq!(b.scans, case["ns"].as_u64(), "{name}");
        assert_eq!(
            b.group_delay,
            case["group_delay"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(b.acqus.get("PULPROG"), Some("zg30"), "{name}");
        let p: Vec<f64> = b
            .acqus
            .get_array("P")
            .unwrap()
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        let want_p: Vec<f64> = case["p"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(p, want_p, "{name}");

        // Point by point against the values the peer wrote, then against the formula.
        let n = want.len();
        let formula = line_signal(&lines, n, b.dwell);
        let amp = formula.iter().map(|z| z.norm()).fold(0.0, f64::max);
        match name {
            "int32_le" | "int32_be_ser" => {
                assert_eq!(b.fid, want, "{name}: point-by-point");
                let scaled: Vec<C64> = formula.iter().map(|z| z * int_scale).collect();
                let err = max_abs_diff(&b.fid, &scaled);
                assert!(err <= 0.75, "{name}: {err} counts from the formula");
            }
            "float64" => {
                assert_eq!(b.fid, want, "{name}: point-by-point");
                let scaled: Vec<C64> = formula.iter().map(|z| z * 1e3).collect();
                assert!(max_abs_diff(&b.fid, &scaled) <= 1e-12 * 1e3 * amp, "{name}");
            }
            "fractional" => {
                let err = max_abs_diff(&b.fid, &want);
                assert!(err <= 1e-12 * amp, "{name}: {err:e} from numpy's advance");
                let err = max_abs_diff(&b.fid, &formula);
                assert!(err <= 1e-9 * amp, "{name}: {err:e} from the formula");
            }
            other => panic!("unexpected case {other}"),
        }
    }
}

#[test]
fn peer_nmrglue_reads_what_we_write() {
    let Some(python) = peer_python() else {
        return;
    };
    let dir = scratch("peer_read");
    let exp_dir = dir.join("exp");
    let dwell = 1.0 / 4807.692307692308;
    let (sfo1, o1, g) = (400.1324710552, 2471.0552, 67.9862060546875);
    let lines = [
        Line {
            a: 1.0,
            f: 312.5,
            phase: 0.3,
            r: 8.0,
        },
        Line {
            a: 0.5,
            f: -1187.5,
            phase: -1.1,
            r: 15.0,
        },
    ];
    let fid = line_signal(&lines, 1000, dwell);
    write_experiment_with_offset(&exp_dir, &fid, dwell, sfo1, o1, "1H", g).unwrap();
    let written = read_experiment(&exp_dir).unwrap();
    let expected = serde_json::json!({
        "fid": fid.iter().map(|z| [z.re, z.im]).collect::<Vec<_>>(),
        "sw_h": 1.0 / dwell,
        "dwell": dwell,
        "sfo1": sfo1,
        "bf1": written.bf1_mhz,
        "o1": o1,
        "nuc1": "1H",
        "group_delay": g,
    });
    let path = dir.join("expected.json");
    std::fs::write(&path, serde_json::to_string(&expected).unwrap()).unwrap();
    let out = run_peer(
        &python,
        &["check", exp_dir.to_str().unwrap(), path.to_str().unwrap()],
    );
    println!("{out}");
    assert!(out.starts_with("ok"), "{out}");
}
