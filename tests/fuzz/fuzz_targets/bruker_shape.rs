//! Fuzz target `bruker_shape`: the Bruker shaped-pulse reader of `spinloop`
//! (`spinloop::formats::bruker::read_shape`) on arbitrary text (bytes that are not UTF-8 are
//! replaced, as `read_shape_file` does).
//!
//! Checked besides "no panic": a shape the reader accepts passes `validate`, answers its
//! accessors, and what `write_shape` writes from it reads back with the same number of points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinloop::formats::bruker::{read_shape, write_shape};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(shape) = read_shape(&text, "fuzz.shape") else {
        return;
    };
    shape.validate().expect("an accepted shape validates");
    let _ = shape.integration_factor();
    let _ = shape.exmode();
    let _ = shape.totrot_deg();
    let _ = shape.to_shape(1e-3);
    let written = write_shape(&shape);
    let back = read_shape(&written, "rewritten.shape").expect("what is written reads back");
    assert_eq!(back.points.len(), shape.points.len());
});
