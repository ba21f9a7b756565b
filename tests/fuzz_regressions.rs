//! Fuzz regressions of the file readers, run by plain `cargo test` (stable, no cargo-fuzz).
//!
//! Every file under `tests/fuzz/regressions/<target>/` is an input that once made the fuzz
//! target `<target>` (`tests/fuzz/fuzz_targets/<target>.rs`) fail; each is fed to the same
//! entry point here, which must return `Ok` or a typed `Err` and never panic. The tests below
//! the generic ones pin the specific error that each fixed bug now produces. See
//! `tests/fuzz/README.md` for the targets and what was found.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use spinloop::formats::bruker::read_shape;
use spinloop::formats::bruker_fid::{Acqus, BrukerFid, group_delay_from_acqus};
use spinloop::formats::nifti_mrs::NiftiMrs;
use spinloop::physics::PhysicsError;

/// The regression inputs of one target, sorted by name (none if the directory is absent).
fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Feeds every regression input of `target` to `entry` (which asserts what the fuzz target
/// asserts); fails naming every input that panics.
fn no_panics(target: &str, entry: impl Fn(&[u8])) {
    let mut panicked = Vec::new();
    for path in regressions(target) {
        let bytes = std::fs::read(&path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| entry(&bytes))).is_err() {
            panicked.push(path.display().to_string());
        }
    }
    assert!(panicked.is_empty(), "{target}: inputs panic: {panicked:?}");
}

/// The `bruker_fid` target's input layout: acqus, `0x00`, flag (bit 0: ser), binary.
fn split_fid_input(data: &[u8]) -> (&[u8], bool, &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(p) => {
            let rest = &data[p + 1..];
            let (flag, binary) = rest.split_first().map_or((0, &[][..]), |(f, b)| (*f, b));
            (&data[..p], flag & 1 == 1, binary)
        }
        None => (data, false, &[][..]),
    }
}

fn read_fid_input(data: &[u8]) -> Result<BrukerFid, PhysicsError> {
    let (acqus, ser, binary) = split_fid_input(data);
    BrukerFid::from_bytes(acqus, "fuzz/acqus", binary, "fuzz/fid", ser)
}

#[test]
fn nifti_mrs_regressions_do_not_panic() {
    no_panics("nifti_mrs", |data| {
        if let Ok(m) = NiftiMrs::from_bytes(data, "fuzz.nii") {
            let bytes = m.to_bytes().expect("an accepted dataset can be written");
            NiftiMrs::from_bytes(&bytes, "rewritten.nii").expect("what is written reads back");
        }
    });
}

#[test]
fn bruker_acqus_regressions_do_not_panic() {
    no_panics("bruker_acqus", |data| {
        if let Ok(acqus) = Acqus::parse(&String::from_utf8_lossy(data), "fuzz/acqus") {
            let keys: Vec<String> = acqus.keys().map(str::to_string).collect();
            for key in &keys {
                let _ = acqus.get_f64(key);
                let _ = acqus.get_i64(key);
            }
            let _ = group_delay_from_acqus(&acqus);
        }
    });
}

#[test]
fn bruker_fid_regressions_do_not_panic() {
    no_panics("bruker_fid", |data| {
        if let Ok(exp) = read_fid_input(data) {
            assert!(!exp.fid.is_empty());
            assert!(exp.fid.iter().all(|z| z.re.is_finite() && z.im.is_finite()));
        }
    });
}

#[test]
fn bruker_shape_regressions_do_not_panic() {
    no_panics("bruker_shape", |data| {
        if let Ok(shape) = read_shape(&String::from_utf8_lossy(data), "fuzz.shape") {
            shape.validate().expect("an accepted shape validates");
        }
    });
}

#[test]
fn bruker_fid_split_follows_the_fuzz_target_layout() {
    let (acqus, ser, binary) = split_fid_input(b"##END=\n\x00\x01abc");
    assert_eq!((acqus, ser, binary), (&b"##END=\n"[..], true, &b"abc"[..]));
    assert_eq!(split_fid_input(b"text"), (&b"text"[..], false, &[][..]));
}

/// An acqus for `td` float64 little-endian values with the given GRPDLY.
fn f64_acqus(td: usize, grpdly: &str) -> String {
    format!(
        "##TITLE= fuzz regression\n##$BF1= 400.13\n##$BYTORDA= 0\n##$DTYPA= 2\n\
         ##$GRPDLY= {grpdly}\n##$NUC1= <1H>\n##$O1= 0\n##$SFO1= 400.13\n##$SW_h= 5000\n\
         ##$TD= {td}\n##END=\n"
    )
}

/// Found by `bruker_fid`: finite samples near f64::MAX with a fractional group delay overflowed
/// in the FFT of `remove_digital_filter`, and the reader returned a FID of infinities and NaNs.
/// Now an `InvalidParameter` error; an integral group delay (no FFT) still reads the values.
#[test]
fn huge_samples_with_a_fractional_group_delay_are_an_error_not_a_non_finite_fid() {
    let mut fid = Vec::new();
    for k in 0..8 {
        let v = if k % 2 == 0 {
            f64::MAX
        } else {
            -f64::MAX / 2.0
        };
        fid.extend_from_slice(&v.to_le_bytes());
    }
    let err = BrukerFid::from_bytes(f64_acqus(8, "0.5").as_bytes(), "acqus", &fid, "fid", false)
        .unwrap_err();
    match &err {
        PhysicsError::InvalidParameter { field, reason, .. } => {
            assert_eq!(field, "fid");
            assert!(
                reason.contains("too large for the digital-filter correction"),
                "{err}"
            );
        }
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
    let exp =
        BrukerFid::from_bytes(f64_acqus(8, "0").as_bytes(), "acqus", &fid, "fid", false).unwrap();
    assert_eq!(exp.fid.len(), 4);
    assert_eq!(exp.fid[0].re, f64::MAX);

    // The fuzzer's minimized input hits the same error.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions/bruker_fid/fft-overflow-non-finite-fid");
    let err = read_fid_input(&std::fs::read(path).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("too large for the digital-filter correction"),
        "{err}"
    );
}
