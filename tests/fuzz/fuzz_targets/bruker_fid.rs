//! Fuzz target `bruker_fid`: the whole TopSpin experiment reader of `spinloop`
//! (`spinloop::formats::bruker_fid::BrukerFid::from_bytes`, the in-memory form of
//! `read_experiment`): acqus parsing, raw `fid`/`ser` decoding, parameter checks and the
//! digital-filter removal.
//!
//! Input layout (also used by the regression files under `tests/fuzz/regressions/bruker_fid/`
//! and by `tests/fuzz_regressions.rs`): the acqus text, one `0x00` byte, one flag byte (bit 0
//! set: the binary is a `ser` file, else a `fid` file), then the binary file. Without a `0x00`
//! the whole input is the acqus text and the binary `fid` is empty.
//!
//! Checked besides "no panic and no allocation beyond what the input justifies": an accepted
//! experiment has at least one point and finite values, and never more points than the binary
//! has complex values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinloop::formats::bruker_fid::BrukerFid;

fuzz_target!(|data: &[u8]| {
    let (acqus, ser, binary) = match data.iter().position(|&b| b == 0) {
        Some(p) => {
            let rest = &data[p + 1..];
            let (flag, binary) = rest.split_first().map_or((0, &[][..]), |(f, b)| (*f, b));
            (&data[..p], flag & 1 == 1, binary)
        }
        None => (data, false, &[][..]),
    };
    let Ok(exp) = BrukerFid::from_bytes(acqus, "fuzz/acqus", binary, "fuzz/fid", ser) else {
        return;
    };
    assert!(!exp.fid.is_empty(), "an accepted FID has points");
    assert!(
        exp.fid.len() <= binary.len() / 8,
        "more points than the binary holds"
    );
    assert!(exp.fid.iter().all(|z| z.re.is_finite() && z.im.is_finite()));
    assert!(exp.dwell.is_finite() && exp.dwell > 0.0);
    let _ = exp.carrier_ppm();
});
