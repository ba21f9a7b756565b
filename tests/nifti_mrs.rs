//! NIfTI-MRS reader and writer (`spinloop::formats::nifti_mrs`): round trips, the file layout,
//! NIfTI-1 and big-endian input built by an independent writer in this file, every bad input as
//! a clear error (never a panic, also under random mutation), and the peer test against the
//! reference Python package `nifti-mrs` (tests/peers/nifti_mrs_peer.py).

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use num_complex::Complex64 as C64;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use spinloop::formats::nifti_mrs::{INTENT_NAME, NiftiMrs};
use spinloop::physics::PhysicsError;

const DWELL: f64 = 2.5e-4;
const MHZ: f64 = 123.2;

/// A decaying FID with one line at `f_hz` (spinloop convention) and a weaker one at −3·f_hz/2.
fn fid(n: usize, f_hz: f64, phase: f64) -> Vec<C64> {
    (0..n)
        .map(|k| {
            let t = k as f64 * DWELL;
            C64::from_polar(1.0, phase + 2.0 * PI * f_hz * t) * (-t / 0.05).exp()
                + C64::from_polar(0.2, -3.0 * PI * f_hz * t) * (-t / 0.02).exp()
        })
        .collect()
}

/// The value a complex64 file holds for `z`.
fn r32(z: C64) -> C64 {
    C64::new(z.re as f32 as f64, z.im as f32 as f64)
}

fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "spinloop-nifti-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn metabolites() -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("Metabolite".into(), json!(["NAA", "Cr", "Cho"]));
    h
}

fn stacked_example() -> (Vec<Vec<C64>>, NiftiMrs) {
    let fids = vec![
        fid(256, 90.0, 0.1),
        fid(256, -40.0, 0.7),
        fid(256, 300.0, -1.0),
    ];
    let m = NiftiMrs::stacked(
        fids.clone(),
        DWELL,
        MHZ,
        "1H",
        "DIM_USER_0",
        Some(metabolites()),
    )
    .unwrap();
    (fids, m)
}

fn single_example() -> NiftiMrs {
    let mut m = NiftiMrs::single_voxel(fid(512, 100.0, 0.3), DWELL, MHZ, "1H").unwrap();
    m.set("EchoTime", json!(0.03));
    m.set("SequenceName", json!("spinloop-test"));
    m.set("SpectralWidth", json!(4000.0));
    m.set(
        "spinloop_provenance",
        json!({"Description": "test key", "Value": [1, 2]}),
    );
    m
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn single_voxel_complex128_round_trip_is_bit_exact() {
    let m = single_example();
    assert!(m.double_precision);
    assert_eq!(m.dims, vec![1, 1, 1, 512]);
    let dir = scratch("sv128");
    for name in ["sv.nii", "sv.nii.gz"] {
        let path = dir.join(name);
        m.write(&path).unwrap();
        let back = NiftiMrs::read(&path).unwrap();
        assert_eq!(back, m, "{name}");
        assert_eq!(back.spectrometer_mhz().unwrap(), MHZ);
        assert_eq!(back.nucleus().unwrap(), "1H");
        assert_eq!(back.header["EchoTime"], json!(0.03));
        assert_eq!(back.header["SequenceName"], json!("spinloop-test"));
        assert_eq!(back.fid(0).unwrap(), m.data);
    }
    // The gzip file really is compressed, the .nii one is not.
    let gz = std::fs::read(dir.join("sv.nii.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert_eq!(
        std::fs::read(dir.join("sv.nii")).unwrap(),
        m.to_bytes().unwrap()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn single_voxel_complex64_round_trip_rounds_to_f32() {
    let mut m = single_example();
    m.double_precision = false;
    let dir = scratch("sv64");
    for name in ["sv.nii", "sv.nii.gz"] {
        let path = dir.join(name);
        m.write(&path).unwrap();
        let back = NiftiMrs::read(&path).unwrap();
        assert!(!back.double_precision);
        assert_eq!(back.dims, m.dims);
        assert_eq!(back.dwell, m.dwell);
        assert_eq!(back.voxel_mm, m.voxel_mm);
        assert_eq!(back.header, m.header);
        let want: Vec<C64> = m.data.iter().map(|&z| r32(z)).collect();
        assert_eq!(
            back.data, want,
            "{name}: samples are the f32-rounded values"
        );
        // Re-writing the read data is exact.
        assert_eq!(
            NiftiMrs::from_bytes(&back.to_bytes().unwrap(), "again").unwrap(),
            back
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stacked_round_trip_keeps_tags_dim_header_and_fid_order() {
    let (fids, m) = stacked_example();
    assert_eq!(m.dims, vec![1, 1, 1, 256, 3]);
    assert_eq!(m.fid_count(), 3);
    assert_eq!(m.points(), 256);
    let names = vec![json!("NAA"), json!("Cr"), json!("Cho")];
    assert_eq!(m.dim_header_values(5, "Metabolite"), Some(&names));
    // The user key was wrapped as the standard requires.
    assert!(m.header["dim_5_header"]["Metabolite"]["Description"].is_string());
    let dir = scratch("stacked");
    for (name, double) in [
        ("a.nii", true),
        ("b.nii.gz", true),
        ("c.nii", false),
        ("d.nii.gz", false),
    ] {
        let mut m = m.clone();
        m.double_precision = double;
        let path = dir.join(name);
        m.write(&path).unwrap();
        let back = NiftiMrs::read(&path).unwrap();
        assert_eq!(back.dims, m.dims);
        assert_eq!(back.header, m.header);
        assert_eq!(back.dim_tag(5), Some("DIM_USER_0"));
        assert_eq!(back.dim_header_values(5, "Metabolite"), Some(&names));
        for (k, f) in fids.iter().enumerate() {
            let want: Vec<C64> = if double {
                f.clone()
            } else {
                f.iter().map(|&z| r32(z)).collect()
            };
            assert_eq!(back.fid(k).unwrap(), want, "{name} fid {k}");
        }
        assert!(back.fid(3).is_err());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fid_index_follows_nifti_order() {
    // dims [2, 3, 1, 4, 2]: x fastest, then y, z, time, dim 5.
    let dims = [2usize, 3, 1, 4, 2];
    let value =
        |x: usize, y: usize, t: usize, d: usize| C64::new((x + 10 * y + 100 * d) as f64, t as f64);
    let mut data = Vec::new();
    for d in 0..2 {
        for t in 0..4 {
            for y in 0..3 {
                for x in 0..2 {
                    data.push(value(x, y, t, d));
                }
            }
        }
    }
    let mut header = Map::new();
    header.insert("SpectrometerFrequency".into(), json!([MHZ]));
    header.insert("ResonantNucleus".into(), json!(["1H"]));
    header.insert("dim_5".into(), json!("DIM_DYN"));
    let m = NiftiMrs {
        dims: dims.to_vec(),
        data,
        dwell: DWELL,
        voxel_mm: [20.0, 20.0, 20.0],
        header,
        double_precision: true,
    };
    m.validate().unwrap();
    assert_eq!(m.fid_count(), 12);
    for k in 0..12 {
        let (x, y, d) = (k % 2, (k / 2) % 3, k / 6);
        let want: Vec<C64> = (0..4).map(|t| value(x, y, t, d)).collect();
        assert_eq!(m.fid(k).unwrap(), want, "fid {k}");
    }
    let back = NiftiMrs::from_bytes(&m.to_bytes().unwrap(), "order").unwrap();
    assert_eq!(back, m);
}

#[test]
fn writer_layout_follows_the_standard() {
    let m = single_example();
    let b = m.to_bytes().unwrap();
    let i32_at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let i64_at = |o: usize| i64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let f64_at = |o: usize| f64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(i32_at(0), 540);
    assert_eq!(&b[4..12], b"n+2\0\r\n\x1a\n");
    assert_eq!(i16::from_le_bytes([b[12], b[13]]), 1792);
    assert_eq!(i16::from_le_bytes([b[14], b[15]]), 128);
    assert_eq!(i64_at(16), 4);
    assert_eq!(
        (1..=4).map(|i| i64_at(16 + 8 * i)).collect::<Vec<_>>(),
        [1, 1, 1, 512]
    );
    assert_eq!(f64_at(104 + 8), 10000.0);
    assert_eq!(f64_at(104 + 32), DWELL);
    assert_eq!(i32_at(344), 2, "qform_code");
    assert_eq!(i32_at(348), 2, "sform_code");
    assert_eq!(f64_at(400), 10000.0, "srow_x[0]");
    assert_eq!(f64_at(440), 10000.0, "srow_y[1]");
    assert_eq!(f64_at(480), 10000.0, "srow_z[2]");
    assert_eq!(i32_at(500), 10, "xyzt_units mm + s");
    assert_eq!(&b[508..508 + INTENT_NAME.len()], INTENT_NAME.as_bytes());
    assert_eq!(INTENT_NAME, "mrs_v0_11");
    assert_eq!(&b[540..544], &[1, 0, 0, 0]);
    let esize = i32_at(544) as usize;
    assert_eq!(esize % 16, 0);
    assert_eq!(i32_at(548), 44, "the ecode-44 extension comes first");
    let vox = i64_at(168) as usize;
    assert_eq!(vox, 544 + esize);
    assert_eq!(b.len(), vox + 16 * 512);
    let text = std::str::from_utf8(&b[552..vox]).unwrap();
    let json: Value = serde_json::from_str(text.trim_end_matches('\0')).unwrap();
    assert_eq!(json["SpectrometerFrequency"], json!([MHZ]));
    // Samples are stored conjugated (NIfTI-MRS/Levitt convention, module doc).
    assert_eq!(f64_at(vox), m.data[0].re);
    assert_eq!(f64_at(vox + 8), -m.data[0].im);
    assert_eq!(f64_at(vox + 24), -m.data[1].im);
}

#[test]
fn integer_spectrometer_frequency_is_written_as_a_float() {
    let mut m = NiftiMrs::single_voxel(fid(16, 50.0, 0.0), DWELL, 123.0, "1H").unwrap();
    m.set("SpectrometerFrequency", json!([123]));
    let b = m.to_bytes().unwrap();
    let text = String::from_utf8_lossy(&b[552..]);
    assert!(
        text.contains("\"SpectrometerFrequency\":[123.0]"),
        "{}",
        &text[..80]
    );
}

// ---------------------------------------------------------------------------------------------
// An independent writer for NIfTI-1, big-endian and deliberately broken files.

#[derive(Clone)]
struct Raw {
    version: u8,
    big_endian: bool,
    datatype: i16,
    bitpix: i16,
    dim: [i64; 8],
    pixdim: [f64; 8],
    xyzt_units: i32,
    intent: String,
    extender: u8,
    /// (ecode, content): padded so that esize is a multiple of 16.
    extensions: Vec<(i32, Vec<u8>)>,
    scl: (f64, f64),
    /// Stored (re, im) pairs, as in the file.
    samples: Vec<(f64, f64)>,
}

impl Raw {
    /// A valid NIfTI-2 little-endian complex128 file with `dims` and header `json`.
    fn new(dims: &[usize], json: &str) -> Raw {
        let mut dim = [1i64; 8];
        dim[0] = dims.len() as i64;
        for (i, &d) in dims.iter().enumerate() {
            dim[i + 1] = d as i64;
        }
        let count: usize = dims.iter().product();
        Raw {
            version: 2,
            big_endian: false,
            datatype: 1792,
            bitpix: 128,
            dim,
            pixdim: [1.0, 10000.0, 10000.0, 10000.0, DWELL, 1.0, 1.0, 1.0],
            xyzt_units: 10,
            intent: "mrs_v0_11".into(),
            extender: 1,
            extensions: vec![(44, json.as_bytes().to_vec())],
            scl: (1.0, 0.0),
            samples: (0..count)
                .map(|i| (i as f64 + 0.5, -(i as f64) * 0.25))
                .collect(),
        }
    }

    fn basic() -> Raw {
        Raw::new(&[1, 1, 1, 8], BASIC_JSON)
    }

    fn put<const N: usize>(&self, b: &mut [u8], off: usize, mut le: [u8; N]) {
        if self.big_endian {
            le.reverse();
        }
        b[off..off + N].copy_from_slice(&le);
    }

    fn bytes(&self) -> Vec<u8> {
        let size = if self.version == 2 { 540 } else { 348 };
        let mut h = vec![0u8; size];
        let ext_len: usize = self
            .extensions
            .iter()
            .map(|(_, c)| (8 + c.len()).div_ceil(16) * 16)
            .sum();
        let vox = size + 4 + ext_len;
        let double = self.datatype == 1792;
        if self.version == 2 {
            self.put(&mut h, 0, 540i32.to_le_bytes());
            h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
            self.put(&mut h, 12, self.datatype.to_le_bytes());
            self.put(&mut h, 14, self.bitpix.to_le_bytes());
            for i in 0..8 {
                self.put(&mut h, 16 + 8 * i, self.dim[i].to_le_bytes());
                self.put(&mut h, 104 + 8 * i, self.pixdim[i].to_le_bytes());
            }
            self.put(&mut h, 168, (vox as i64).to_le_bytes());
            self.put(&mut h, 176, self.scl.0.to_le_bytes());
            self.put(&mut h, 184, self.scl.1.to_le_bytes());
            self.put(&mut h, 500, self.xyzt_units.to_le_bytes());
            let n = self.intent.len().min(16);
            h[508..508 + n].copy_from_slice(&self.intent.as_bytes()[..n]);
        } else {
            self.put(&mut h, 0, 348i32.to_le_bytes());
            for i in 0..8 {
                self.put(&mut h, 40 + 2 * i, (self.dim[i] as i16).to_le_bytes());
                self.put(&mut h, 76 + 4 * i, (self.pixdim[i] as f32).to_le_bytes());
            }
            self.put(&mut h, 70, self.datatype.to_le_bytes());
            self.put(&mut h, 72, self.bitpix.to_le_bytes());
            self.put(&mut h, 108, (vox as f32).to_le_bytes());
            self.put(&mut h, 112, (self.scl.0 as f32).to_le_bytes());
            self.put(&mut h, 116, (self.scl.1 as f32).to_le_bytes());
            h[123] = self.xyzt_units as u8;
            let n = self.intent.len().min(16);
            h[328..328 + n].copy_from_slice(&self.intent.as_bytes()[..n]);
            h[344..348].copy_from_slice(b"n+1\0");
        }
        h.extend_from_slice(&[self.extender, 0, 0, 0]);
        for (code, content) in &self.extensions {
            let esize = (8 + content.len()).div_ceil(16) * 16;
            let mut e = vec![0u8; esize];
            self.put(&mut e, 0, (esize as i32).to_le_bytes());
            self.put(&mut e, 4, code.to_le_bytes());
            e[8..8 + content.len()].copy_from_slice(content);
            h.extend_from_slice(&e);
        }
        for &(re, im) in &self.samples {
            let mut s = vec![0u8; if double { 16 } else { 8 }];
            if double {
                self.put(&mut s, 0, re.to_le_bytes());
                self.put(&mut s, 8, im.to_le_bytes());
            } else {
                self.put(&mut s, 0, (re as f32).to_le_bytes());
                self.put(&mut s, 4, (im as f32).to_le_bytes());
            }
            h.extend_from_slice(&s);
        }
        h
    }

    /// What the reader must return for these samples: their conjugate.
    fn expected(&self) -> Vec<C64> {
        self.samples
            .iter()
            .map(|&(re, im)| C64::new(re, -im))
            .collect()
    }
}

const BASIC_JSON: &str = r#"{"SpectrometerFrequency": [123.2], "ResonantNucleus": ["1H"]}"#;

#[test]
fn independent_nifti2_file_reads() {
    let raw = Raw::basic();
    let m = NiftiMrs::from_bytes(&raw.bytes(), "basic.nii").unwrap();
    assert_eq!(m.dims, vec![1, 1, 1, 8]);
    assert_eq!(m.data, raw.expected());
    assert_eq!(m.dwell, DWELL);
    assert!(m.double_precision);
    assert_eq!(m.spectrometer_mhz().unwrap(), 123.2);
}

#[test]
fn nifti1_and_big_endian_files_read() {
    for version in [1u8, 2] {
        for big_endian in [false, true] {
            for (datatype, bitpix) in [(32i16, 64i16), (1792, 128)] {
                let mut raw = Raw::new(
                    &[1, 1, 1, 16, 2],
                    r#"{"SpectrometerFrequency":[297.2],"ResonantNucleus":["1H"],"dim_5":"DIM_DYN"}"#,
                );
                raw.version = version;
                raw.big_endian = big_endian;
                raw.datatype = datatype;
                raw.bitpix = bitpix;
                let label = format!("NIfTI-{version} big_endian={big_endian} dt={datatype}");
                let m = NiftiMrs::from_bytes(&raw.bytes(), &label)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(m.dims, vec![1, 1, 1, 16, 2], "{label}");
                assert_eq!(m.data, raw.expected(), "{label}");
                assert_eq!(m.double_precision, datatype == 1792, "{label}");
                let dwell = if version == 1 {
                    DWELL as f32 as f64
                } else {
                    DWELL
                };
                assert_eq!(m.dwell, dwell, "{label}");
                assert_eq!(m.dim_tag(5), Some("DIM_DYN"));
            }
        }
    }
}

#[test]
fn time_and_space_units_are_converted() {
    for (units, pix4, dwell, pix1, voxel) in [
        (2 | 16, 0.25, 0.25e-3, 20.0, 20.0),  // mm, ms
        (2 | 24, 250.0, 250e-6, 20.0, 20.0),  // mm, us
        (1 | 8, DWELL, DWELL, 0.02, 20.0),    // m, s
        (3 | 8, DWELL, DWELL, 20000.0, 20.0), // um, s
        (0, DWELL, DWELL, 20.0, 20.0),        // unknown: s and mm
    ] {
        let mut raw = Raw::basic();
        raw.xyzt_units = units;
        raw.pixdim[4] = pix4;
        raw.pixdim[1] = pix1;
        let m = NiftiMrs::from_bytes(&raw.bytes(), "units.nii").unwrap();
        assert!(
            (m.dwell - dwell).abs() <= 1e-15,
            "units {units}: {}",
            m.dwell
        );
        assert!(
            (m.voxel_mm[0] - voxel).abs() <= 1e-9,
            "units {units}: {}",
            m.voxel_mm[0]
        );
    }
    let mut raw = Raw::basic();
    raw.xyzt_units = 2 | 32; // Hz is not a time unit
    assert_err(&raw.bytes(), &["xyzt_units"]);
}

#[test]
fn scaling_and_implied_singleton_dims_are_applied() {
    let mut raw = Raw::basic();
    raw.scl = (2.0, 1.0);
    let m = NiftiMrs::from_bytes(&raw.bytes(), "scaled.nii").unwrap();
    let want: Vec<C64> = raw
        .samples
        .iter()
        .map(|&(re, im)| C64::new(2.0 * re + 1.0, -2.0 * im))
        .collect();
    assert_eq!(m.data, want);
    // nibabel leaves scl_slope NaN for "no scaling".
    raw.scl = (f64::NAN, f64::NAN);
    let m = NiftiMrs::from_bytes(&raw.bytes(), "unscaled.nii").unwrap();
    assert_eq!(m.data, raw.expected());
    // A dim_6 tag on 4-D data implies dims 5 and 6 of size 1 (dim_5 is then required).
    let raw = Raw::new(
        &[1, 1, 1, 8],
        r#"{"SpectrometerFrequency":[123.2],"ResonantNucleus":["1H"],"dim_5":"DIM_COIL","dim_6":"DIM_DYN"}"#,
    );
    let m = NiftiMrs::from_bytes(&raw.bytes(), "implied.nii").unwrap();
    assert_eq!(m.dims, vec![1, 1, 1, 8, 1, 1]);
    assert_eq!(m.fid_count(), 1);
    let raw = Raw::new(
        &[1, 1, 1, 8],
        r#"{"SpectrometerFrequency":[123.2],"ResonantNucleus":["1H"],"dim_6":"DIM_DYN"}"#,
    );
    assert_err(&raw.bytes(), &["dim_5", "required"]);
}

#[test]
fn other_extensions_may_precede_the_mrs_one() {
    let mut raw = Raw::basic();
    raw.extensions
        .insert(0, (6, b"a comment extension".to_vec()));
    let m = NiftiMrs::from_bytes(&raw.bytes(), "two-ext.nii").unwrap();
    assert_eq!(m.data, raw.expected());
}

// ---------------------------------------------------------------------------------------------
// Bad input: each a clear error naming the source, never a panic.

fn error_of(bytes: &[u8]) -> PhysicsError {
    match NiftiMrs::from_bytes(bytes, "case.nii") {
        Ok(m) => panic!("accepted: dims {:?}", m.dims),
        Err(e) => e,
    }
}

fn assert_err(bytes: &[u8], needles: &[&str]) -> PhysicsError {
    let e = error_of(bytes);
    let msg = e.to_string();
    assert!(msg.contains("case.nii"), "{msg:?} does not name the file");
    for n in needles {
        assert!(msg.contains(n), "{msg:?} lacks {n:?}");
    }
    e
}

fn with_json(json: &str, dims: &[usize]) -> Vec<u8> {
    Raw::new(dims, json).bytes()
}

#[test]
fn truncated_files_are_errors() {
    let good = single_example().to_bytes().unwrap();
    assert_err(&good[..300], &["truncated header", "300 bytes"]);
    assert_err(&good[..2], &["too short"]);
    assert_err(&[], &["too short"]);
    assert_err(&good[..560], &["vox_offset"]);
    let e = assert_err(&good[..good.len() - 5], &["data bytes", "truncated"]);
    match e {
        PhysicsError::SizeMismatch { expected, got, .. } => {
            assert_eq!(expected, 512 * 16);
            assert_eq!(got, 512 * 16 - 5);
        }
        other => panic!("{other:?}"),
    }
    // Truncated inside the gzip stream.
    let dir = scratch("trunc");
    let path = dir.join("t.nii.gz");
    single_example().write(&path).unwrap();
    let gz = std::fs::read(&path).unwrap();
    assert_err(&gz[..gz.len() / 2], &["gzip"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn wrong_magic_and_not_nifti_are_errors() {
    let good = Raw::basic().bytes();
    let mut b = good.clone();
    b[4..8].copy_from_slice(b"abc\0");
    assert_err(&b, &["magic"]);
    let mut b = good.clone();
    b[4..8].copy_from_slice(b"ni2\0");
    assert_err(&b, &["two-file"]);
    let mut b = good.clone();
    b[8] = b'\n'; // \r\n → \n\n: a text-mode transfer
    assert_err(&b, &["damaged"]);
    let mut b = good.clone();
    b[0..4].copy_from_slice(&1234i32.to_le_bytes());
    assert_err(&b, &["not a NIfTI file", "1234"]);
    let mut raw = Raw::basic();
    raw.version = 1;
    let mut b = raw.bytes();
    b[344..348].copy_from_slice(b"ni1\0");
    assert_err(&b, &["two-file"]);
    b[344..348].copy_from_slice(b"xx1\0");
    assert_err(&b, &["magic"]);
}

#[test]
fn bad_datatype_and_bitpix_are_errors() {
    let mut raw = Raw::basic();
    raw.datatype = 16; // float32
    raw.bitpix = 32;
    let e = assert_err(
        &raw.bytes(),
        &["datatype", "complex64 (32) or complex128 (1792)"],
    );
    assert!(matches!(e, PhysicsError::InvalidParameter { .. }));
    let mut raw = Raw::basic();
    raw.bitpix = 64;
    assert_err(&raw.bytes(), &["bitpix"]);
}

#[test]
fn ndim_out_of_range_and_bad_dims_are_errors() {
    for ndim in [0, 3, 8, -1] {
        let mut raw = Raw::basic();
        raw.dim[0] = ndim;
        assert_err(&raw.bytes(), &["dim[0]"]);
    }
    let mut raw = Raw::basic();
    raw.dim[4] = 0;
    assert_err(&raw.bytes(), &["dim[4]", ">= 1"]);
    let mut raw = Raw::basic();
    raw.dim[2] = -7;
    assert_err(&raw.bytes(), &["dim[2]"]);
    // A huge claimed size is checked against the bytes present, not allocated.
    let mut raw = Raw::basic();
    raw.dim[1] = 1 << 40;
    raw.dim[2] = 1 << 20;
    assert_err(&raw.bytes(), &["data bytes"]);
    let mut raw = Raw::basic();
    raw.dim[1] = i64::MAX;
    raw.dim[2] = i64::MAX;
    assert_err(&raw.bytes(), &["overflow"]);
}

#[test]
fn bad_dwell_is_an_error() {
    for dwell in [0.0, -1e-4, f64::NAN, f64::INFINITY, 2.0] {
        let mut raw = Raw::basic();
        raw.pixdim[4] = dwell;
        assert_err(&raw.bytes(), &["dwell"]);
    }
    assert!(NiftiMrs::single_voxel(fid(8, 1.0, 0.0), 0.0, MHZ, "1H").is_err());
    assert!(NiftiMrs::single_voxel(fid(8, 1.0, 0.0), f64::NAN, MHZ, "1H").is_err());
    assert!(NiftiMrs::single_voxel(fid(8, 1.0, 0.0), -DWELL, MHZ, "1H").is_err());
}

#[test]
fn non_finite_samples_and_voxels_are_errors() {
    let mut raw = Raw::basic();
    raw.samples[3].1 = f64::NAN;
    assert_err(&raw.bytes(), &["data[3]", "finite"]);
    let mut raw = Raw::basic();
    raw.samples[5].0 = f64::INFINITY;
    assert_err(&raw.bytes(), &["data[5]"]);
    let mut raw = Raw::basic();
    raw.pixdim[2] = f64::NAN;
    assert_err(&raw.bytes(), &["voxel_mm[1]"]);
    let mut f = fid(8, 1.0, 0.0);
    f[2] = C64::new(f64::NAN, 0.0);
    assert!(NiftiMrs::single_voxel(f, DWELL, MHZ, "1H").is_err());
    let mut m = single_example();
    m.double_precision = false;
    m.data[0] = C64::new(1e300, 0.0);
    assert!(m.to_bytes().unwrap_err().to_string().contains("complex64"));
}

#[test]
fn missing_mrs_extension_is_an_error() {
    let mut raw = Raw::basic();
    raw.extensions = vec![(6, b"just a comment".to_vec())];
    assert_err(&raw.bytes(), &["ecode-44"]);
    let mut raw = Raw::basic();
    raw.extensions.clear();
    raw.extender = 0;
    assert_err(&raw.bytes(), &["no header extensions"]);
    // An extension whose esize runs past vox_offset.
    let mut b = Raw::basic().bytes();
    b[544..548].copy_from_slice(&4000i32.to_le_bytes());
    assert_err(&b, &["esize 4000"]);
    b[544..548].copy_from_slice(&4i32.to_le_bytes());
    assert_err(&b, &["esize 4"]);
}

#[test]
fn bad_intent_is_an_error() {
    for intent in ["", "mrs_v0_1", "mrs_v0", "rms_v0_11", "mrs_vx_2"] {
        let mut raw = Raw::basic();
        raw.intent = intent.into();
        assert_err(&raw.bytes(), &["intent_name"]);
    }
    for intent in ["mrs_v0_2", "mrs_v0_9", "mrs_v1_0", "mrs_v12_345"] {
        let mut raw = Raw::basic();
        raw.intent = intent.into();
        NiftiMrs::from_bytes(&raw.bytes(), intent).unwrap();
    }
}

#[test]
fn invalid_json_is_an_error() {
    assert_err(&with_json("{not json", &[1, 1, 1, 8]), &["not valid JSON"]);
    assert_err(&with_json("[1, 2]", &[1, 1, 1, 8]), &["not an object"]);
    let mut raw = Raw::basic();
    raw.extensions = vec![(44, vec![0xff, 0xfe, b'{', b'}'])];
    assert_err(&raw.bytes(), &["UTF-8"]);
}

#[test]
fn required_keys_are_checked() {
    let d = &[1, 1, 1, 8];
    assert_err(
        &with_json(r#"{"ResonantNucleus":["1H"]}"#, d),
        &["SpectrometerFrequency", "missing"],
    );
    assert_err(
        &with_json(
            r#"{"SpectrometerFrequency":123.2,"ResonantNucleus":["1H"]}"#,
            d,
        ),
        &["SpectrometerFrequency"],
    );
    assert_err(
        &with_json(
            r#"{"SpectrometerFrequency":[],"ResonantNucleus":["1H"]}"#,
            d,
        ),
        &["SpectrometerFrequency"],
    );
    assert_err(
        &with_json(
            r#"{"SpectrometerFrequency":[-5.0],"ResonantNucleus":["1H"]}"#,
            d,
        ),
        &["SpectrometerFrequency"],
    );
    assert_err(
        &with_json(r#"{"SpectrometerFrequency":[123.2]}"#, d),
        &["ResonantNucleus"],
    );
    assert_err(
        &with_json(
            r#"{"SpectrometerFrequency":[123.2],"ResonantNucleus":["h1"]}"#,
            d,
        ),
        &["ResonantNucleus"],
    );
    assert!(NiftiMrs::single_voxel(fid(8, 1.0, 0.0), DWELL, MHZ, "proton").is_err());
    assert!(NiftiMrs::single_voxel(fid(8, 1.0, 0.0), DWELL, f64::NAN, "1H").is_err());
    for nucleus in ["1H", "31P", "13C", "129XE", "23NA"] {
        NiftiMrs::single_voxel(fid(8, 1.0, 0.0), DWELL, MHZ, nucleus).unwrap();
    }
}

#[test]
fn dimension_tags_are_checked() {
    let d5 = &[1, 1, 1, 8, 2];
    let req = r#""SpectrometerFrequency":[123.2],"ResonantNucleus":["1H"]"#;
    assert_err(
        &with_json(&format!("{{{req}}}"), d5),
        &["dim_5", "required"],
    );
    assert_err(
        &with_json(&format!(r#"{{{req},"dim_5":"DIM_FOO"}}"#), d5),
        &["dim_5", "DIM_FOO", "not a NIfTI-MRS dimension tag"],
    );
    assert_err(
        &with_json(&format!(r#"{{{req},"dim_5":5}}"#), d5),
        &["dim_5"],
    );
    assert_err(
        &with_json(
            &format!(r#"{{{req},"dim_5":"DIM_DYN","dim_5_info":3}}"#),
            d5,
        ),
        &["dim_5_info", "string"],
    );
    assert_err(
        &with_json(&format!(r#"{{{req},"dim_4":"DIM_DYN"}}"#), &[1, 1, 1, 8]),
        &["dim_4"],
    );
    assert_err(
        &with_json(
            &format!(r#"{{{req},"dim_5":"DIM_DYN","dim_6_info":"x"}}"#),
            d5,
        ),
        &["dim_6_info", "5 dimensions"],
    );
    // dim_5_header: the dimension's length, or start/increment; user keys wrapped.
    let ok = [
        r#"{"EchoTime":[0.03,0.04]}"#,
        r#"{"EchoTime":{"start":0.03,"increment":0.01}}"#,
        r#"{"Metabolite":{"Value":["a","b"],"Description":"names"}}"#,
    ];
    for h in ok {
        let json = format!(r#"{{{req},"dim_5":"DIM_USER_0","dim_5_header":{h}}}"#);
        NiftiMrs::from_bytes(&with_json(&json, d5), "ok.nii")
            .unwrap_or_else(|e| panic!("{h}: {e}"));
    }
    let bad = [
        (r#"{"EchoTime":[0.03]}"#, "length 2"),
        (r#"{"EchoTime":{"start":0.03}}"#, "increment"),
        (r#"{"Metabolite":["a","b"]}"#, "Description"),
        (r#"[1, 2]"#, "object"),
    ];
    for (h, needle) in bad {
        let json = format!(r#"{{{req},"dim_5":"DIM_USER_0","dim_5_header":{h}}}"#);
        assert_err(&with_json(&json, d5), &["dim_5_header", needle]);
    }
    // All 13 tags of the standard are accepted.
    for tag in spinloop::formats::nifti_mrs::DIMENSION_TAGS {
        let json = format!(r#"{{{req},"dim_5":"{tag}"}}"#);
        NiftiMrs::from_bytes(&with_json(&json, d5), tag).unwrap();
    }
    assert!(NiftiMrs::stacked(vec![fid(8, 1.0, 0.0)], DWELL, MHZ, "1H", "DIM_NOPE", None).is_err());
    assert!(NiftiMrs::stacked(vec![], DWELL, MHZ, "1H", "DIM_DYN", None).is_err());
    assert!(
        NiftiMrs::stacked(
            vec![fid(8, 1.0, 0.0), fid(9, 1.0, 0.0)],
            DWELL,
            MHZ,
            "1H",
            "DIM_DYN",
            None
        )
        .is_err()
    );
    // A dim header with the wrong length is refused by the constructor.
    assert!(
        NiftiMrs::stacked(
            vec![fid(8, 1.0, 0.0), fid(8, 2.0, 0.0)],
            DWELL,
            MHZ,
            "1H",
            "DIM_USER_0",
            Some(metabolites()),
        )
        .is_err()
    );
}

#[test]
fn spectral_width_must_match_dwell() {
    let req = r#""SpectrometerFrequency":[123.2],"ResonantNucleus":["1H"]"#;
    let d = &[1, 1, 1, 8];
    NiftiMrs::from_bytes(
        &with_json(&format!(r#"{{{req},"SpectralWidth":4000.005}}"#), d),
        "sw.nii",
    )
    .unwrap();
    assert_err(
        &with_json(&format!(r#"{{{req},"SpectralWidth":4001.0}}"#), d),
        &["SpectralWidth", "1/dwell"],
    );
    assert_err(
        &with_json(&format!(r#"{{{req},"SpectralWidth":"4000"}}"#), d),
        &["SpectralWidth"],
    );
    let mut m = single_example();
    m.set("SpectralWidth", json!(2000.0));
    assert!(m.validate().is_err());
}

#[test]
fn standard_and_user_keys_are_typed() {
    let mut m = single_example();
    m.set("EchoTime", json!("30 ms"));
    assert!(m.validate().unwrap_err().to_string().contains("EchoTime"));
    let mut m = single_example();
    m.set("OriginalFile", json!(["a.dat"]));
    m.set("WaterSuppressed", json!(true));
    m.set("VOI", json!([[1.0, 0.0], [0.0, 1.0]]));
    m.validate().unwrap();
    m.set("OriginalFile", json!("a.dat"));
    assert!(m.validate().is_err());
    let mut m = single_example();
    m.set("MyKey", json!(3));
    let e = m.to_bytes().unwrap_err().to_string();
    assert!(e.contains("MyKey") && e.contains("Description"), "{e}");
    m.set("MyKey", json!({"Value": 3, "Description": "mine"}));
    m.to_bytes().unwrap();
}

#[test]
fn gzip_garbage_is_an_error() {
    assert_err(&[0x1f, 0x8b], &["gzip"]);
    assert_err(&[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &["gzip"]);
    // A valid gzip stream of something that is not NIfTI.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b"hello, this is not a NIfTI file at all").unwrap();
    assert_err(&enc.finish().unwrap(), &["not a NIfTI file"]);
}

#[test]
fn write_refuses_other_extensions_and_leaves_no_temp_files() {
    let dir = scratch("names");
    let m = single_example();
    let e = m.write(&dir.join("x.txt")).unwrap_err().to_string();
    assert!(e.contains(".nii or .nii.gz"), "{e}");
    m.write(&dir.join("y.nii")).unwrap();
    m.write(&dir.join("y.nii")).unwrap(); // overwrite
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["y.nii".to_string()]);
    assert!(m.write(&dir.join("missing-dir").join("z.nii")).is_err());
    let e = NiftiMrs::read(&dir.join("nope.nii"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.nii") && e.contains("cannot read"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Random mutations: Ok or Err, never a panic; errors name the source.

fn mutation_corpus() -> Vec<Vec<u8>> {
    let small = NiftiMrs::stacked(
        vec![fid(8, 50.0, 0.0), fid(8, 80.0, 1.0)],
        DWELL,
        MHZ,
        "1H",
        "DIM_DYN",
        None,
    )
    .unwrap();
    let mut nifti1 = Raw::new(
        &[1, 1, 1, 8, 2],
        r#"{"SpectrometerFrequency":[297.2],"ResonantNucleus":["1H"],"dim_5":"DIM_DYN"}"#,
    );
    nifti1.version = 1;
    nifti1.big_endian = true;
    let small_bytes = small.to_bytes().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &small_bytes).unwrap();
    vec![
        small_bytes,
        single_example().to_bytes().unwrap(),
        nifti1.bytes(),
        enc.finish().unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..10),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let corpus = mutation_corpus();
        let mut b = corpus[which].clone();
        for (at, value, in_header) in edits {
            // Half the edits land in the header and extension, where the structure is.
            let span = if in_header { b.len().min(700) } else { b.len() };
            let i = at.index(span);
            b[i] = value;
        }
        if let Some(c) = cut {
            let len = c.index(b.len() + 1);
            b.truncate(len);
        }
        match NiftiMrs::from_bytes(&b, "fuzz.nii") {
            Ok(m) => {
                // Whatever is accepted is valid and can be written again.
                prop_assert!(m.validate().is_ok());
                let again = m.to_bytes();
                prop_assert!(again.is_ok(), "{:?}", again.err());
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("fuzz.nii"), "error without the source: {}", msg);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Peer: the reference package validates our files and we read its files.

/// Full NIfTI index and linear offset of point `t` of FID `k`.
fn full_index(dims: &[usize], k: usize, t: usize) -> (Vec<usize>, usize) {
    let nvox = dims[0] * dims[1] * dims[2];
    let n = dims[3];
    let (voxel, higher) = (k % nvox, k / nvox);
    let mut idx = vec![
        voxel % dims[0],
        (voxel / dims[0]) % dims[1],
        voxel / (dims[0] * dims[1]),
        t,
    ];
    let mut h = higher;
    for &d in &dims[4..] {
        idx.push(h % d);
        h /= d;
    }
    (idx, voxel + nvox * (t + n * higher))
}

/// The expectation sidecar `<file>.expect.json` for the peer's `validate`.
fn write_expectation(path: &Path, m: &NiftiMrs, header_keys: &[&str], peak_hz: Option<f64>) {
    let n = m.points();
    let mut samples = Vec::new();
    for k in 0..m.fid_count() {
        for t in [0, 1, 2, 3, n / 3, n / 2, n - 1] {
            let (idx, lin) = full_index(&m.dims, k, t);
            let z = if m.double_precision {
                m.data[lin]
            } else {
                r32(m.data[lin])
            };
            samples.push(json!({"index": idx, "value": [z.re, z.im]}));
        }
    }
    let tags: Vec<Value> = (5..=m.dims.len())
        .map(|d| json!(m.dim_tag(d).unwrap()))
        .collect();
    let header: Map<String, Value> = header_keys
        .iter()
        .map(|k| (k.to_string(), m.header[*k].clone()))
        .collect();
    let mut exp = json!({
        "shape": m.dims,
        "dtype": if m.double_precision { "complex128" } else { "complex64" },
        "dwell": m.dwell,
        "mhz": m.spectrometer_mhz().unwrap(),
        "nucleus": m.nucleus().unwrap(),
        "dim_tags": tags,
        "header": header,
        "samples": samples,
    });
    if let Some(p) = peak_hz {
        exp["peak_hz"] = json!(p);
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".expect.json");
    std::fs::write(
        PathBuf::from(name),
        serde_json::to_vec_pretty(&exp).unwrap(),
    )
    .unwrap();
}

fn run_peer(python: &std::ffi::OsStr, args: &[&std::ffi::OsStr]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(root.join("tests/peers/nifti_mrs_peer.py"))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "peer {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    print!("{stdout}");
    stdout
}

#[test]
fn peer_nifti_mrs() {
    let Some(python) = std::env::var_os("SPINLOOP_PEER_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the peer venv is required in CI: SPINLOOP_PEER_PYTHON must name the python of \
                 a venv with tests/peers/requirements.txt (.ci/run creates target/peer-venv)"
            );
        }
        println!("peer_nifti_mrs skipped: SPINLOOP_PEER_PYTHON is not set");
        return;
    };
    let dir = scratch("peer");

    // 1. The package writes (gen_nifti_mrs, no_conj=True); we read value by value.
    let peer2 = dir.join("peer_written.nii.gz");
    let peer1 = dir.join("peer_written_nifti1.nii");
    run_peer(
        &python,
        &["write".as_ref(), peer2.as_os_str(), peer1.as_os_str()],
    );
    let mut from_peer = None;
    for (path, dwell) in [(&peer2, 2.5e-4), (&peer1, 2.5e-4f32 as f64)] {
        let m = NiftiMrs::read(path).unwrap();
        assert_eq!(m.dims, vec![2, 1, 1, 64, 3], "{path:?}");
        assert!(!m.double_precision);
        assert_eq!(m.dwell, dwell, "{path:?}");
        assert_eq!(m.voxel_mm, [10000.0; 3]);
        assert_eq!(m.spectrometer_mhz().unwrap(), 297.2);
        assert_eq!(m.nucleus().unwrap(), "1H");
        assert_eq!(m.dim_tag(5), Some("DIM_DYN"));
        assert_eq!(m.header["EchoTime"], json!(0.03));
        assert_eq!(m.header["SequenceName"], json!("peer-write"));
        // stored[x,y,z,t,d] = (t + 1000 d + 100 x) + i(-0.5 t + 0.25 d); we read its conjugate.
        let mut checked = 0;
        for d in 0..3 {
            for t in 0..64 {
                for x in 0..2 {
                    let lin = x + 2 * (t + 64 * d);
                    let (t, d, x) = (t as f64, d as f64, x as f64);
                    let want = C64::new(t + 1000.0 * d + 100.0 * x, 0.5 * t - 0.25 * d);
                    assert_eq!(m.data[lin], want, "{path:?} x={x} t={t} d={d}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, m.data.len());
        println!(
            "read {}: dims {:?}, dwell {} s, all {checked} samples equal conj(stored formula)",
            path.display(),
            m.dims,
            m.dwell
        );
        from_peer.get_or_insert(m);
    }

    // 2. We write; the package validates and compares.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut sv = NiftiMrs::single_voxel(fid(512, 100.0, 0.4), DWELL, MHZ, "1H").unwrap();
    sv.double_precision = false;
    sv.set("EchoTime", json!(0.03));
    sv.set("SequenceName", json!("spinloop-peer"));
    sv.set("SpectralWidth", json!(1.0 / DWELL));
    let path = dir.join("single_voxel.nii.gz");
    sv.write(&path).unwrap();
    write_expectation(
        &path,
        &sv,
        &["EchoTime", "SequenceName", "SpectralWidth"],
        Some(100.0),
    );
    files.push(path);

    let (_, mut st) = stacked_example();
    st.double_precision = false;
    let path = dir.join("stacked_basis.nii");
    st.write(&path).unwrap();
    write_expectation(&path, &st, &["dim_5_header"], Some(90.0));
    files.push(path);

    let mut sv128 = NiftiMrs::single_voxel(fid(1024, -250.0, -0.2), DWELL, 297.2, "1H").unwrap();
    sv128.set("RepetitionTime", json!(2.0));
    let path = dir.join("single_voxel_c128.nii.gz");
    sv128.write(&path).unwrap();
    write_expectation(&path, &sv128, &["RepetitionTime"], Some(-250.0));
    files.push(path);

    let st128 = NiftiMrs::stacked(
        vec![fid(300, 10.0, 0.0), fid(300, 20.0, 0.5)],
        DWELL,
        MHZ,
        "1H",
        "DIM_DYN",
        None,
    )
    .unwrap();
    let path = dir.join("stacked_c128.nii");
    st128.write(&path).unwrap();
    write_expectation(&path, &st128, &[], Some(10.0));
    files.push(path);

    let from_peer = from_peer.unwrap();
    let path = dir.join("peer_file_rewritten.nii");
    from_peer.write(&path).unwrap();
    write_expectation(&path, &from_peer, &["EchoTime", "SequenceName"], None);
    files.push(path);

    let mut args: Vec<&std::ffi::OsStr> = vec!["validate".as_ref()];
    args.extend(files.iter().map(|p| p.as_os_str()));
    let out = run_peer(&python, &args);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        files.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}
