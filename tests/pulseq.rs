//! Pulseq writer (`spinloop::formats::pulseq`): the file is parsed back here by an independent
//! minimal reader (sections, definitions, blocks, events, shape decompression written from the
//! format description, not the module's), the MD5 signature is recomputed over the byte range
//! the reference tools hash, every timing rule of pypulseq's `check_timing` is re-checked, every
//! bad input is a named error, and the peer test loads our files with pypulseq 1.5.0.post1.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::{Value, json};
use spinloop::formats::pulseq::{
    Adc, CompressedShape, PulseqBlock, PulseqExport, PulseqSystem, PulseqVersion, RfPulse, RfUse,
    compress_shape, decompress_shape, hex, md5,
};
use spinloop::physics::PhysicsError;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A designed-looking pulse: 512 segments of 20 µs, sinc-like envelope with a sign change, a
/// quadratic (chirped) phase and a constant stretch, peak ≈ 600 Hz.
fn designed_pulse() -> RfPulse {
    let n = 512;
    let mut ux = Vec::with_capacity(n);
    let mut uy = Vec::with_capacity(n);
    for k in 0..n {
        let x = (k as f64 + 0.5) / n as f64 * 2.0 - 1.0; // (-1, 1)
        let env = if x.abs() < 1e-12 {
            1.0
        } else {
            (3.0 * PI * x).sin() / (3.0 * PI * x)
        };
        let amp = 600.0 * env * (1.0 - 0.3 * x * x);
        let phase = if (200..232).contains(&k) {
            0.7
        } else {
            4.0 * PI * x * x + 0.5 * x
        };
        ux.push(amp * phase.cos());
        uy.push(amp * phase.sin());
    }
    RfPulse::new(ux, uy, 20e-6)
}

fn system() -> PulseqSystem {
    PulseqSystem::default()
}

fn pulse_acquire() -> PulseqExport {
    PulseqExport::pulse_acquire(
        "spinloop pulse-acquire",
        system(),
        designed_pulse(),
        2e-3,
        Some(Adc::new(1024, 250e-6)),
    )
}

/// Excitation, delay, refocusing pulse (offsets), the same excitation again, delay, ADC.
fn multi_block(version: PulseqVersion) -> PulseqExport {
    let mut refoc = RfPulse::new(vec![250.0; 40], vec![0.0; 40], 50e-6);
    refoc.freq_offset_hz = -123.5;
    refoc.phase_offset_rad = PI / 2.0;
    refoc.rf_use = RfUse::Refocusing;
    let mut adc = Adc::new(2048, 100e-6);
    adc.freq_offset_hz = 12.0;
    adc.phase_offset_rad = -0.25;
    PulseqExport {
        name: "spinloop multi".into(),
        version,
        system: PulseqSystem {
            rf_raster: 1e-6,
            grad_raster: 10e-6,
            adc_raster: 100e-9,
            block_duration_raster: 10e-6,
            rf_dead_time: 104.5e-6, // not on the RF raster: rounded up to 105 µs
            rf_ringdown_time: 60e-6,
            adc_dead_time: 20e-6,
        },
        blocks: vec![
            PulseqBlock::Rf(designed_pulse()),
            PulseqBlock::Delay(5e-3),
            PulseqBlock::Rf(refoc),
            PulseqBlock::Rf(designed_pulse()),
            PulseqBlock::Delay(1.23e-3),
            PulseqBlock::Adc(adc),
        ],
    }
}

fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "spinloop-pulseq-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// An independent minimal reader

#[derive(Debug, Default)]
struct Parsed {
    sections: Vec<String>,
    version: (u32, u32, u32),
    definitions: BTreeMap<String, String>,
    /// id → [dur, rf, gx, gy, gz, adc, ext]
    blocks: Vec<(usize, [u64; 7])>,
    rf: BTreeMap<usize, Vec<String>>,
    adc: BTreeMap<usize, Vec<String>>,
    /// id → (num_samples, stored values)
    shapes: BTreeMap<usize, (usize, Vec<f64>)>,
    sig_type: String,
    sig_hash: String,
}

fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut section = String::new();
    let mut shape: Option<(usize, usize)> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            p.sections.push(section.clone());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let tok: Vec<&str> = line.split_whitespace().collect();
        match section.as_str() {
            "[VERSION]" => {
                let v: u32 = tok[1].parse().unwrap();
                match tok[0] {
                    "major" => p.version.0 = v,
                    "minor" => p.version.1 = v,
                    "revision" => p.version.2 = v,
                    other => panic!("unknown version key {other}"),
                }
            }
            "[DEFINITIONS]" => {
                p.definitions.insert(tok[0].to_string(), tok[1..].join(" "));
            }
            "[BLOCKS]" => {
                assert_eq!(tok.len(), 8, "block line {line:?}");
                let v: Vec<u64> = tok.iter().map(|t| t.parse().unwrap()).collect();
                p.blocks.push((v[0] as usize, v[1..].try_into().unwrap()));
            }
            "[RF]" => {
                p.rf.insert(
                    tok[0].parse().unwrap(),
                    tok[1..].iter().map(|s| s.to_string()).collect(),
                );
            }
            "[ADC]" => {
                p.adc.insert(
                    tok[0].parse().unwrap(),
                    tok[1..].iter().map(|s| s.to_string()).collect(),
                );
            }
            "[SHAPES]" => match tok[0] {
                "shape_id" => shape = Some((tok[1].parse().unwrap(), 0)),
                "num_samples" => {
                    let (id, _) = shape.unwrap();
                    let n = tok[1].parse().unwrap();
                    shape = Some((id, n));
                    p.shapes.insert(id, (n, Vec::new()));
                }
                v => {
                    let (id, _) = shape.unwrap();
                    p.shapes.get_mut(&id).unwrap().1.push(v.parse().unwrap());
                }
            },
            "[SIGNATURE]" => match tok[0] {
                "Type" => p.sig_type = tok[1].to_string(),
                "Hash" => p.sig_hash = tok[1].to_string(),
                other => panic!("unknown signature key {other}"),
            },
            other => panic!("unexpected section {other}"),
        }
    }
    p
}

/// Shape decompression written from the format description (interop.md §1): raw if the count
/// matches, else two equal consecutive values start a run whose third number is length − 2;
/// then cumulative sum.
fn decode(n: usize, data: &[f64]) -> Vec<f64> {
    if data.len() == n {
        return data.to_vec();
    }
    let mut d = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if i + 2 < data.len() && data[i] == data[i + 1] {
            let reps = data[i + 2] as usize + 2;
            assert_eq!(
                data[i + 2],
                reps as f64 - 2.0,
                "run count must be an integer"
            );
            d.extend(std::iter::repeat_n(data[i], reps));
            i += 3;
        } else {
            d.push(data[i]);
            i += 1;
        }
    }
    assert_eq!(d.len(), n, "decoded length");
    d.iter()
        .scan(0.0, |acc, x| {
            *acc += x;
            Some(*acc)
        })
        .collect()
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The bytes the reference tools hash: everything before the newline preceding `[SIGNATURE]`.
fn signed_range(text: &str) -> &[u8] {
    let at = text.find("\n[SIGNATURE]").expect("no [SIGNATURE] section");
    &text.as_bytes()[..at]
}

/// The signal sample k of the pulse on the RF raster: segment k / m, held for m samples.
fn expected_signal(rf: &RfPulse, m: usize) -> Vec<(f64, f64)> {
    rf.ux
        .iter()
        .zip(&rf.uy)
        .flat_map(|(&x, &y)| std::iter::repeat_n((x, y), m))
        .collect()
}

/// Everything the writer promises, checked on the text of `e`.
fn check_file(e: &PulseqExport, text: &str) {
    let p = parse(text);
    let s = e.system;
    let v15 = e.version == PulseqVersion::V1_5_0;
    assert_eq!(
        p.version,
        if v15 { (1, 5, 0) } else { (1, 4, 1) },
        "version"
    );
    // Section order as the reference writers use it; VERSION before BLOCKS.
    let want: Vec<&str> = [
        "[VERSION]",
        "[DEFINITIONS]",
        "[BLOCKS]",
        "[RF]",
        "[ADC]",
        "[SHAPES]",
    ]
    .into_iter()
    .filter(|sec| match *sec {
        "[RF]" | "[SHAPES]" => e.blocks.iter().any(|b| matches!(b, PulseqBlock::Rf(_))),
        "[ADC]" => e.blocks.iter().any(|b| matches!(b, PulseqBlock::Adc(_))),
        _ => true,
    })
    .chain(["[SIGNATURE]"])
    .collect();
    assert_eq!(p.sections, want);
    assert!(text.is_ascii());

    // Signature.
    assert_eq!(p.sig_type, "md5");
    assert_eq!(p.sig_hash, hex(&md5(signed_range(text))));
    assert!(
        signed_range(text).ends_with(b"\n\n"),
        "the hashed body ends with a blank line"
    );

    // Definitions.
    for (key, v) in [
        ("AdcRasterTime", s.adc_raster),
        ("BlockDurationRaster", s.block_duration_raster),
        ("GradientRasterTime", s.grad_raster),
        ("RadiofrequencyRasterTime", s.rf_raster),
    ] {
        assert_eq!(num(&p.definitions[key]), v, "{key}");
    }
    assert_eq!(p.definitions["Name"], e.name);

    // Blocks, events and timing.
    assert_eq!(p.blocks.len(), e.blocks.len());
    let mut total = 0.0;
    let mut total_ticks = 0;
    for (b, (block, (id, row))) in e.blocks.iter().zip(&p.blocks).enumerate() {
        assert_eq!(*id, b + 1);
        let dur = row[0] as f64 * s.block_duration_raster;
        total += dur;
        total_ticks += row[0];
        assert_eq!(&row[2..5], &[0, 0, 0], "no gradients");
        assert_eq!(row[6], 0, "no extensions");
        match block {
            PulseqBlock::Delay(d) => {
                assert_eq!(row[1], 0);
                assert_eq!(row[5], 0);
                assert!((dur - d).abs() < 1e-12, "block {b}: {dur} vs {d}");
            }
            PulseqBlock::Rf(rf) => {
                assert_eq!(row[5], 0);
                let ev = &p.rf[&(row[1] as usize)];
                assert_eq!(ev.len(), if v15 { 11 } else { 7 }, "RF columns");
                let amp = num(&ev[0]);
                let (mag_id, ph_id, time_id) = (num(&ev[1]), num(&ev[2]), num(&ev[3]));
                assert_eq!(time_id, 0.0, "default raster");
                let delay_us = num(&ev[if v15 { 5 } else { 4 }]);
                let (freq, phase) = if v15 {
                    assert_eq!((num(&ev[6]), num(&ev[7])), (0.0, 0.0), "ppm offsets");
                    assert_eq!(ev[10], rf.rf_use.letter().to_string());
                    (num(&ev[8]), num(&ev[9]))
                } else {
                    (num(&ev[5]), num(&ev[6]))
                };
                assert!((freq - rf.freq_offset_hz).abs() <= 1e-8 * rf.freq_offset_hz.abs());
                assert!((phase - rf.phase_offset_rad).abs() <= 1e-8);

                let (mn, md) = &p.shapes[&(mag_id as usize)];
                let (pn, pd) = &p.shapes[&(ph_id as usize)];
                let mag = decode(*mn, md);
                let ph = decode(*pn, pd);
                let m = (rf.dt / s.rf_raster).round() as usize;
                let want = expected_signal(rf, m);
                assert_eq!(mag.len(), want.len());
                assert_eq!(ph.len(), want.len());
                let peak = want.iter().fold(0.0f64, |a, (x, y)| a.max(x.hypot(*y)));
                assert!((amp - peak).abs() <= 1e-8 * peak, "amp {amp} vs {peak}");
                let mut worst_mag = 0.0f64;
                let mut worst_ph = 0.0f64;
                for (k, ((x, y), (mg, pp))) in want.iter().zip(mag.iter().zip(&ph)).enumerate() {
                    assert!((0.0..=1.0).contains(mg), "mag[{k}] = {mg}");
                    assert!((0.0..=1.0).contains(pp), "phase[{k}] = {pp}");
                    worst_mag = worst_mag.max((mg - x.hypot(*y) / peak).abs());
                    if x.hypot(*y) > 1e-6 * peak {
                        let d = (pp * 2.0 * PI - y.atan2(*x)).rem_euclid(2.0 * PI);
                        worst_ph = worst_ph.max(d.min(2.0 * PI - d));
                    }
                }
                // Quantisation step 1e-7: ±5e-8 plus float noise of the cumulative sum.
                assert!(
                    worst_mag <= 5.1e-8,
                    "block {b}: magnitude error {worst_mag}"
                );
                assert!(
                    worst_ph <= 2.0 * PI * 5.1e-8,
                    "block {b}: phase error {worst_ph}"
                );

                // Timing rules: delay ≥ dead time and on the RF raster; ringdown in the block.
                let delay = delay_us * 1e-6;
                assert!(delay >= s.rf_dead_time - 1e-12);
                let r = delay / s.rf_raster;
                assert!((r - r.round()).abs() < 1e-6, "RF delay on raster");
                let end = delay + want.len() as f64 * s.rf_raster;
                assert!(end + s.rf_ringdown_time <= dur + 1e-12, "ringdown fits");
                assert!(
                    end + s.rf_ringdown_time > dur - s.block_duration_raster - 1e-12,
                    "block is not longer than needed"
                );
                if v15 {
                    let center = num(&ev[4]) * 1e-6;
                    assert!((0.0..=want.len() as f64 * s.rf_raster).contains(&center));
                }
            }
            PulseqBlock::Adc(adc) => {
                assert_eq!(row[1], 0);
                let ev = &p.adc[&(row[5] as usize)];
                assert_eq!(ev.len(), if v15 { 8 } else { 5 }, "ADC columns");
                assert_eq!(num(&ev[0]) as usize, adc.num_samples);
                let dwell = num(&ev[1]) * 1e-9;
                assert!((dwell - adc.dwell).abs() < 1e-15);
                let r = dwell / s.adc_raster;
                assert!((r - r.round()).abs() < 1e-6, "dwell on the ADC raster");
                let delay = num(&ev[2]) * 1e-6;
                let r = delay / s.rf_raster;
                assert!((r - r.round()).abs() < 1e-6, "ADC delay on the RF raster");
                assert!(delay >= s.adc_dead_time - 1e-12);
                let end = delay + adc.num_samples as f64 * dwell + s.adc_dead_time;
                assert!(end <= dur + 1e-12, "ADC dead time fits");
                let (freq, phase) = if v15 {
                    assert_eq!(num(&ev[7]), 0.0, "no phase modulation shape");
                    (num(&ev[5]), num(&ev[6]))
                } else {
                    (num(&ev[3]), num(&ev[4]))
                };
                assert_eq!(freq, adc.freq_offset_hz);
                assert_eq!(phase, adc.phase_offset_rad);
            }
        }
    }
    let td = num(&p.definitions["TotalDuration"]);
    assert!(
        (td - total).abs() <= 1e-9 * total,
        "TotalDuration {td} vs {total}"
    );
    let api = e.total_duration().unwrap();
    assert!((api - total_ticks as f64 * s.block_duration_raster).abs() < 1e-15);
}

// ---------------------------------------------------------------------------------------------
// Round trips and file properties

#[test]
fn md5_rfc1321_test_vectors() {
    for (input, want) in [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "c3fcd3d76192e4007dfb496cca67e13b",
        ),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f",
        ),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ] {
        assert_eq!(hex(&md5(input.as_bytes())), want, "md5({input:?})");
    }
    // Lengths around the 55/56/64-byte padding boundaries against the system md5sum if present.
    for n in [55usize, 56, 63, 64, 65, 119, 120, 1000] {
        let data: Vec<u8> = (0..n).map(|k| (k * 7 % 251) as u8).collect();
        if let Some(want) = md5sum(&data) {
            assert_eq!(hex(&md5(&data)), want, "length {n}");
        }
    }
}

/// MD5 of `data` by the system's `md5sum` (None if it is not installed).
fn md5sum(data: &[u8]) -> Option<String> {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(data).ok()?;
    let out = child.wait_with_output().ok()?;
    Some(
        String::from_utf8(out.stdout)
            .ok()?
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

#[test]
fn pulse_acquire_file_round_trips() {
    let e = pulse_acquire();
    let text = e.to_seq_string().unwrap();
    check_file(&e, &text);
    let p = parse(&text);
    // 100 µs dead + 10.24 ms pulse + 30 µs ringdown = 1037 × 10 µs; gap 200; ADC 10 + 256000 + 10 µs.
    let durs: Vec<u64> = p.blocks.iter().map(|(_, r)| r[0]).collect();
    assert_eq!(durs, vec![1037, 200, 25602]);
    assert_eq!(p.rf[&1][5], "100", "RF delay in µs");
    assert_eq!(p.adc[&1][..3], ["1024", "250000", "10"]);
    assert_eq!(num(&p.definitions["TotalDuration"]), 0.26839);
    // The hash equals the system md5sum of the same range, when available.
    if let Some(want) = md5sum(signed_range(&text)) {
        assert_eq!(p.sig_hash, want);
    }
    // The segments of 20 samples compress: fewer stored values than samples.
    let (n, data) = &p.shapes[&1];
    assert_eq!(*n, 512 * 20);
    assert!(data.len() < 512 * 4, "{} stored values", data.len());
}

#[test]
fn multi_block_files_both_versions() {
    for version in [PulseqVersion::V1_5_0, PulseqVersion::V1_4_1] {
        let e = multi_block(version);
        let text = e.to_seq_string().unwrap();
        check_file(&e, &text);
        let p = parse(&text);
        // The two identical excitations share one RF event; the shapes are shared too.
        let rf_ids: Vec<u64> = p.blocks.iter().map(|(_, r)| r[1]).collect();
        assert_eq!(rf_ids, vec![1, 0, 2, 1, 0, 0]);
        assert_eq!(p.rf.len(), 2);
        // Excitation: mag, phase; refocusing: constant mag (1) and constant phase 0.
        assert_eq!(p.shapes.len(), 4);
        // RF dead time 104.5 µs is rounded up to the RF raster.
        let delay_col = if version == PulseqVersion::V1_5_0 {
            5
        } else {
            4
        };
        assert_eq!(p.rf[&1][delay_col], "105");
        // 105 + 2000 + 60 µs → 2170 µs.
        assert_eq!(p.blocks[2].1[0], 217);
    }
}

#[test]
fn write_creates_the_same_bytes() {
    let dir = scratch("write");
    let path = dir.join("pa.seq");
    let e = pulse_acquire();
    e.write(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        e.to_seq_string().unwrap()
    );
    // Deterministic output.
    assert_eq!(
        e.to_seq_string().unwrap(),
        pulse_acquire().to_seq_string().unwrap()
    );
    let err = e.write(&dir.join("missing-dir").join("x.seq")).unwrap_err();
    assert!(
        matches!(err, PhysicsError::Io(ref m) if m.contains("missing-dir")),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dt_equal_to_the_raster_and_zero_pulse() {
    let mut e = pulse_acquire();
    e.blocks = vec![PulseqBlock::Rf(RfPulse::new(
        vec![1.0, -2.0, 3.0, 0.0, 5.0, 1e-3],
        vec![0.5, 0.0, -3.0, 0.0, 0.0, 0.0],
        1e-6,
    ))];
    let text = e.to_seq_string().unwrap();
    check_file(&e, &text);
    // An all-zero waveform is written with amplitude 0 and zero shapes.
    e.blocks = vec![PulseqBlock::Rf(RfPulse::new(
        vec![0.0; 8],
        vec![0.0; 8],
        2e-6,
    ))];
    let text = e.to_seq_string().unwrap();
    let p = parse(&text);
    assert_eq!(num(&p.rf[&1][0]), 0.0);
    assert_eq!(p.shapes[&1].1, vec![0.0, 0.0, 14.0]);
}

#[test]
fn shape_compression_examples() {
    // The specification's example: 100 zeros → "0 0 98".
    let c = compress_shape(&[0.0; 100]).unwrap();
    assert_eq!(c.data, vec![0.0, 0.0, 98.0]);
    // A ramp is a constant derivative.
    let ramp: Vec<f64> = (0..50).map(|k| k as f64 * 0.02).collect();
    let c = compress_shape(&ramp).unwrap();
    assert_eq!(c.data, vec![0.0, 0.02, 0.02, 47.0]);
    assert_eq!(decode(50, &c.data).len(), 50);
    // Short or incompressible shapes are stored raw (quantised).
    let c = compress_shape(&[0.1, 0.25, 0.3, 0.123456789]).unwrap();
    assert_eq!(c.data, vec![0.1, 0.25, 0.3, 0.1234568]);
    let noisy: Vec<f64> = (0..20).map(|k| ((k * k) % 7) as f64 * 0.01).collect();
    assert_eq!(compress_shape(&noisy).unwrap().data.len(), 20);
    // Non-finite samples are errors.
    assert!(compress_shape(&[0.0, f64::NAN]).is_err());
    // Bad compressed data is an error, not a panic.
    for bad in [
        CompressedShape {
            num_samples: 10,
            data: vec![0.1, 0.1],
        },
        CompressedShape {
            num_samples: 10,
            data: vec![0.1, 0.1, 2.5],
        },
        CompressedShape {
            num_samples: 4,
            data: vec![0.1, 0.1, 5.0],
        },
        CompressedShape {
            num_samples: 10,
            data: vec![0.1, 0.2],
        },
    ] {
        assert!(decompress_shape(&bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any shape in [0, 1] with runs comes back to the quantisation (our decoder and the module's).
    #[test]
    fn compression_round_trip(
        runs in prop::collection::vec((0.0f64..1.0, 1usize..30, 0i32..3), 1..40)
    ) {
        let mut x = Vec::new();
        for (v, len, kind) in runs {
            for k in 0..len {
                x.push(match kind {
                    0 => v,
                    1 => (v + k as f64 * 1e-3).min(1.0),
                    _ => (v * (k as f64 + 1.0)).fract(),
                });
            }
        }
        let c = compress_shape(&x).unwrap();
        prop_assert_eq!(c.num_samples, x.len());
        prop_assert!(c.data.len() <= x.len());
        let ours = decode(c.num_samples, &c.data);
        let theirs = decompress_shape(&c).unwrap();
        for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            prop_assert!((a - x[k]).abs() <= 5.1e-8, "sample {}: {} vs {}", k, a, x[k]);
            prop_assert!((a - b).abs() <= 1e-12);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad inputs

fn field_of(err: PhysicsError) -> String {
    match err {
        PhysicsError::InvalidParameter { field, .. } => field,
        PhysicsError::SizeMismatch { what, .. } => what,
        other => panic!("unexpected error kind: {other}"),
    }
}

#[test]
fn bad_inputs_name_the_field() {
    let with_rf = |f: &dyn Fn(&mut RfPulse)| {
        let mut e = pulse_acquire();
        if let PulseqBlock::Rf(rf) = &mut e.blocks[0] {
            f(rf);
        }
        e
    };
    let with_adc = |f: &dyn Fn(&mut Adc)| {
        let mut e = pulse_acquire();
        if let PulseqBlock::Adc(a) = &mut e.blocks[2] {
            f(a);
        }
        e
    };
    let with_sys = |f: &dyn Fn(&mut PulseqSystem)| {
        let mut e = pulse_acquire();
        f(&mut e.system);
        e
    };
    let cases: Vec<(PulseqExport, &str)> = vec![
        (
            with_rf(&|rf| {
                rf.ux.clear();
                rf.uy.clear();
            }),
            "blocks[0].rf.ux",
        ),
        (
            with_rf(&|rf| rf.uy.pop().map(|_| ()).unwrap_or(())),
            "blocks[0].rf.uy",
        ),
        (with_rf(&|rf| rf.ux[17] = f64::NAN), "blocks[0].rf.ux[17]"),
        (
            with_rf(&|rf| rf.uy[3] = f64::INFINITY),
            "blocks[0].rf.uy[3]",
        ),
        (with_rf(&|rf| rf.dt = 20.5e-6), "blocks[0].rf.dt"),
        (with_rf(&|rf| rf.dt = 0.0), "blocks[0].rf.dt"),
        (with_rf(&|rf| rf.dt = -20e-6), "blocks[0].rf.dt"),
        (with_rf(&|rf| rf.dt = 0.4e-6), "blocks[0].rf.dt"),
        (with_rf(&|rf| rf.dt = f64::NAN), "blocks[0].rf.dt"),
        (with_rf(&|rf| rf.dt = 1.0), "blocks[0].rf.ux.len()"),
        (
            with_rf(&|rf| rf.freq_offset_hz = f64::NAN),
            "blocks[0].rf.freq_offset_hz",
        ),
        (
            with_rf(&|rf| rf.phase_offset_rad = f64::INFINITY),
            "blocks[0].rf.phase_offset_rad",
        ),
        (with_adc(&|a| a.dwell = 250.05e-6), "blocks[2].adc.dwell"),
        (with_adc(&|a| a.dwell = 0.0), "blocks[2].adc.dwell"),
        (with_adc(&|a| a.dwell = 50e-9), "blocks[2].adc.dwell"),
        (
            with_adc(&|a| a.num_samples = 0),
            "blocks[2].adc.num_samples",
        ),
        (
            with_adc(&|a| a.freq_offset_hz = f64::NAN),
            "blocks[2].adc.freq_offset_hz",
        ),
        (with_sys(&|s| s.rf_raster = 0.0), "system.rf_raster"),
        (with_sys(&|s| s.adc_raster = f64::NAN), "system.adc_raster"),
        (
            with_sys(&|s| s.block_duration_raster = -1e-5),
            "system.block_duration_raster",
        ),
        (with_sys(&|s| s.rf_dead_time = -1e-6), "system.rf_dead_time"),
        (
            with_sys(&|s| s.adc_dead_time = f64::NAN),
            "system.adc_dead_time",
        ),
        (
            PulseqExport {
                blocks: vec![],
                ..pulse_acquire()
            },
            "blocks",
        ),
        (
            PulseqExport {
                name: "two\nlines".into(),
                ..pulse_acquire()
            },
            "name",
        ),
        (
            PulseqExport {
                name: "  ".into(),
                ..pulse_acquire()
            },
            "name",
        ),
    ];
    for (bad_delay, at) in [(-1e-3, 1), (0.0, 1), (1.234e-3, 1), (f64::NAN, 1)] {
        let mut e = pulse_acquire();
        e.blocks[at] = PulseqBlock::Delay(bad_delay);
        let err = e.to_seq_string().unwrap_err();
        let msg = err.to_string();
        assert_eq!(field_of(err), "blocks[1].delay", "delay {bad_delay}: {msg}");
    }
    for (e, field) in cases {
        let err = e.to_seq_string().unwrap_err();
        let msg = err.to_string();
        assert_eq!(field_of(err.clone()), field, "{msg}");
        assert_eq!(e.validate().unwrap_err(), err);
        assert!(e.write(Path::new("/nonexistent/never.seq")).is_err());
    }
    // A negative gap in pulse_acquire becomes a bad delay block.
    let e = PulseqExport::pulse_acquire("x", system(), designed_pulse(), -1e-3, None);
    assert_eq!(field_of(e.to_seq_string().unwrap_err()), "blocks[1].delay");
}

// ---------------------------------------------------------------------------------------------
// Peer: pypulseq 1.5.0.post1

const PEER: &str = r#"
import hashlib, json, sys, warnings
import numpy as np
import pypulseq as pp

exp = json.load(open(sys.argv[1]))
out = {"files": []}
for f in exp["files"]:
    s = f["system"]
    opts = pp.Opts(rf_dead_time=s["rf_dead_time"], rf_ringdown_time=s["rf_ringdown_time"],
                   adc_dead_time=s["adc_dead_time"], rf_raster_time=s["rf_raster"],
                   grad_raster_time=s["grad_raster"], adc_raster_time=s["adc_raster"],
                   block_duration_raster=s["block_duration_raster"])
    # Read as stored (remove_duplicates=False keeps every number as written) ...
    seq = pp.Sequence(system=opts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version or definition warning fails the peer
        seq.read(f["path"], remove_duplicates=False)
    # ... and with the default read, which rounds RF amplitudes to 6 significant digits
    # while merging duplicate events (EventLibrary.remove_duplicates).
    dflt = pp.Sequence(system=opts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dflt.read(f["path"])
    ok, errors = dflt.check_timing()
    assert ok, f"check_timing (default read): {errors}"
    ok, errors = seq.check_timing()
    assert ok, f"check_timing: {errors}"
    raw = open(f["path"], "rb").read()
    md5 = hashlib.md5(raw[:raw.index(b"\n[SIGNATURE]")]).hexdigest()
    assert seq.signature_type == "md5", seq.signature_type
    assert seq.signature_value == md5, (seq.signature_value, md5)
    total, nblocks, _ = seq.duration()
    assert nblocks == len(f["blocks"]), nblocks
    assert abs(total - f["total_duration"]) < 1e-9, (total, f["total_duration"])
    assert abs(float(seq.definitions["TotalDuration"]) - total) < 1e-9
    assert seq.definitions["Name"] == f["name"], seq.definitions["Name"]
    res = {"md5": seq.signature_value, "total": total, "blocks": []}
    for k, b in enumerate(f["blocks"]):
        blk = seq.get_block(k + 1)
        assert abs(blk.block_duration - b["duration"]) < 1e-12, (k, blk.block_duration)
        r = {"duration": blk.block_duration}
        if b["kind"] == "rf":
            rf = blk.rf
            want = np.repeat(np.array(b["ux"]) + 1j * np.array(b["uy"]), b["m"])
            assert rf.signal.shape == want.shape, (rf.signal.shape, want.shape)
            peak = np.abs(want).max()
            err = np.abs(rf.signal - want).max()
            # magnitude and phase quantised to 1e-7 of peak and of a turn
            assert err <= peak * (5.1e-8 + 2 * np.pi * 5.1e-8), (k, err, peak)
            derr = np.abs(dflt.get_block(k + 1).rf.signal - want).max()
            assert derr <= peak * (5e-6 + 5.1e-8 + 2 * np.pi * 5.1e-8), (k, derr, peak)
            t = (np.arange(want.size) + 0.5) * s["rf_raster"]
            assert np.allclose(rf.t, t, rtol=0, atol=1e-12)
            assert abs(rf.delay - b["delay"]) < 1e-12, (rf.delay, b["delay"])
            assert abs(rf.freq_offset - b["freq"]) < 1e-9 and abs(rf.phase_offset - b["phase"]) < 1e-8
            assert abs(rf.shape_dur - want.size * s["rf_raster"]) < 1e-12
            if f["version"] == "1.5.0":
                use = seq.rf_library.type[seq.block_events[k + 1][1]]
                assert use == b["use"], (use, b["use"])
            r.update(max_err=float(err), default_read_max_err=float(derr), peak=float(peak), n=int(rf.signal.size),
                     delay=rf.delay, freq=rf.freq_offset, phase=rf.phase_offset)
        elif b["kind"] == "adc":
            adc = blk.adc
            assert adc.num_samples == b["num_samples"]
            assert abs(adc.dwell - b["dwell"]) < 1e-15
            assert abs(adc.delay - b["delay"]) < 1e-12
            assert abs(adc.freq_offset - b["freq"]) < 1e-12 and abs(adc.phase_offset - b["phase"]) < 1e-12
            r.update(num_samples=int(adc.num_samples), dwell=adc.dwell, delay=adc.delay)
        else:
            assert blk.rf is None and blk.adc is None
        res["blocks"].append(r)

    # pypulseq builds the same sequence from the same samples and writes it: its [BLOCKS],
    # [ADC] and [SHAPES] sections must be byte-identical to ours (the RF line differs only in
    # how many digits the amplitude gets: pypulseq writes 6, we write 9).
    ref = pp.Sequence(system=opts)
    for b in f["blocks"]:
        if b["kind"] == "rf":
            sig = np.repeat(np.array(b["ux"]) + 1j * np.array(b["uy"]), b["m"])
            uses = {"e": "excitation", "r": "refocusing", "i": "inversion", "s": "saturation",
                    "p": "preparation", "o": "other", "u": "undefined"}
            with warnings.catch_warnings():  # "delay 100.00 us is less than the dead time 100 us"
                warnings.simplefilter("ignore")
                rf = pp.make_arbitrary_rf(
                    sig, flip_angle=0, no_signal_scaling=True, dwell=s["rf_raster"],
                    delay=b["delay"], freq_offset=b["freq"], phase_offset=b["phase"],
                    system=opts, use=uses[b["use"]])
            ref.add_block(rf)
            # pypulseq does not round an RF block up to the block raster by itself (its writer
            # would then refuse it): ours must be that duration rounded up.
            k = len(ref.block_durations)
            theirs = ref.block_durations[k]
            assert theirs - 1e-12 <= b["duration"] < theirs + s["block_duration_raster"], (
                "RF block duration", theirs, b["duration"])
            ref.block_durations[k] = b["duration"]
        elif b["kind"] == "delay":
            ref.add_block(pp.make_delay(b["duration"]))
        else:
            with warnings.catch_warnings():  # "ADC delay 10.00 us is less than the dead time"
                warnings.simplefilter("ignore")
                adc = pp.make_adc(b["num_samples"], dwell=b["dwell"], delay=b["delay"],
                                  freq_offset=b["freq"], phase_offset=b["phase"], system=opts)
            ref.add_block(adc, pp.make_delay(b["duration"]))
    ref.set_definition("Name", f["name"])
    ref_path = f["path"] + ".pypulseq.seq"
    ref.write(ref_path, v141_compat=(f["version"] == "1.4.1"))

    def section(path, name):
        text = open(path).read()
        i = text.index(name + "\n")
        j = text.index("\n\n", i)
        if name == "[SHAPES]":
            j = text.index("\n[SIGNATURE]", i)
        return text[i:j]

    for name in ["[BLOCKS]", "[ADC]", "[SHAPES]"]:
        if name == "[ADC]" and not any(b["kind"] == "adc" for b in f["blocks"]):
            continue
        mine, theirs = section(f["path"], name), section(ref_path, name)
        assert mine.split() == theirs.split(), (name, mine[:400], theirs[:400])
    res["identical_sections"] = ["[BLOCKS]", "[ADC]", "[SHAPES]"]
    out["files"].append(res)
print("PEER-RESULT " + json.dumps(out))
"#;

fn expectation(path: &Path, e: &PulseqExport) -> Value {
    let s = e.system;
    let timings = e.timings().unwrap();
    let blocks: Vec<Value> = e
        .blocks
        .iter()
        .zip(&timings)
        .map(|(b, t)| match b {
            PulseqBlock::Rf(rf) => json!({
                "kind": "rf", "duration": t.duration, "delay": t.event_delay,
                "ux": rf.ux, "uy": rf.uy, "m": (rf.dt / s.rf_raster).round() as usize,
                "freq": rf.freq_offset_hz, "phase": rf.phase_offset_rad,
                "use": rf.rf_use.letter().to_string(),
            }),
            PulseqBlock::Delay(_) => json!({"kind": "delay", "duration": t.duration}),
            PulseqBlock::Adc(a) => json!({
                "kind": "adc", "duration": t.duration, "delay": t.event_delay,
                "num_samples": a.num_samples, "dwell": a.dwell,
                "freq": a.freq_offset_hz, "phase": a.phase_offset_rad,
            }),
        })
        .collect();
    json!({
        "path": path, "name": e.name,
        "version": if e.version == PulseqVersion::V1_5_0 { "1.5.0" } else { "1.4.1" },
        "total_duration": e.total_duration().unwrap(),
        "system": {
            "rf_raster": s.rf_raster, "grad_raster": s.grad_raster, "adc_raster": s.adc_raster,
            "block_duration_raster": s.block_duration_raster, "rf_dead_time": s.rf_dead_time,
            "rf_ringdown_time": s.rf_ringdown_time, "adc_dead_time": s.adc_dead_time,
        },
        "blocks": blocks,
    })
}

#[test]
fn peer_pypulseq() {
    let Some(python) = std::env::var_os("SPINLOOP_PEER_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the peer venv is required in CI: SPINLOOP_PEER_PYTHON must name the python of \
                 a venv with tests/peers/requirements.txt (.ci/run creates target/peer-venv)"
            );
        }
        println!("peer_pypulseq skipped: SPINLOOP_PEER_PYTHON is not set");
        return;
    };
    let dir = scratch("peer");
    let exports = [
        pulse_acquire(),
        multi_block(PulseqVersion::V1_5_0),
        multi_block(PulseqVersion::V1_4_1),
    ];
    let mut files = Vec::new();
    let mut hashes = Vec::new();
    for (k, e) in exports.iter().enumerate() {
        let path = dir.join(format!("export{k}.seq"));
        e.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        hashes.push(parse(&text).sig_hash);
        files.push(expectation(&path, e));
    }
    let exp_path = dir.join("expectation.json");
    std::fs::write(&exp_path, json!({ "files": files }).to_string()).unwrap();

    let out = Command::new(&python)
        .arg("-c")
        .arg(PEER)
        .arg(&exp_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypulseq peer failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PEER-RESULT "))
        .unwrap_or_else(|| panic!("no result line:\n{stdout}"));
    let res: Value = serde_json::from_str(line).unwrap();

    // What pypulseq read, checked here against what we wrote.
    let got = res["files"].as_array().unwrap();
    assert_eq!(got.len(), exports.len());
    for ((e, r), hash) in exports.iter().zip(got).zip(&hashes) {
        assert_eq!(r["md5"].as_str().unwrap(), hash, "signature pypulseq read");
        assert_eq!(
            r["identical_sections"],
            json!(["[BLOCKS]", "[ADC]", "[SHAPES]"]),
            "pypulseq writes the same blocks, ADC events and shapes"
        );
        let total = r["total"].as_f64().unwrap();
        assert!((total - e.total_duration().unwrap()).abs() < 1e-12);
        let timings = e.timings().unwrap();
        for ((b, t), rb) in e
            .blocks
            .iter()
            .zip(&timings)
            .zip(r["blocks"].as_array().unwrap())
        {
            assert!((rb["duration"].as_f64().unwrap() - t.duration).abs() < 1e-12);
            match b {
                PulseqBlock::Rf(rf) => {
                    let m = (rf.dt / e.system.rf_raster).round() as usize;
                    assert_eq!(rb["n"].as_u64().unwrap() as usize, rf.ux.len() * m);
                    let peak = rb["peak"].as_f64().unwrap();
                    let err = rb["max_err"].as_f64().unwrap();
                    assert!(err <= peak * 4e-7, "max error {err} Hz of {peak} Hz");
                    assert!((rb["delay"].as_f64().unwrap() - t.event_delay).abs() < 1e-12);
                    assert_eq!(rb["freq"].as_f64().unwrap(), rf.freq_offset_hz);
                    assert!((rb["phase"].as_f64().unwrap() - rf.phase_offset_rad).abs() < 1e-8);
                }
                PulseqBlock::Adc(a) => {
                    assert_eq!(rb["num_samples"].as_u64().unwrap() as usize, a.num_samples);
                    assert!((rb["dwell"].as_f64().unwrap() - a.dwell).abs() < 1e-15);
                    assert!((rb["delay"].as_f64().unwrap() - t.event_delay).abs() < 1e-12);
                }
                PulseqBlock::Delay(_) => {}
            }
        }
    }
    println!(
        "pypulseq read {} files: check_timing OK, signatures {:?}, totals {:?} s",
        got.len(),
        hashes,
        got.iter()
            .map(|r| r["total"].as_f64().unwrap())
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
