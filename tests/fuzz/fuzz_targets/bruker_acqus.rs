//! Fuzz target `bruker_acqus`: the TopSpin parameter-file parser of `spinloop`
//! (`spinloop::formats::bruker_fid::Acqus::parse`) on arbitrary text (bytes that are not UTF-8
//! are replaced, as `read_experiment` does), followed by every lookup on each key it found and
//! the group-delay rule (`group_delay_from_acqus`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinloop::formats::bruker_fid::{Acqus, group_delay_from_acqus};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(acqus) = Acqus::parse(&text, "fuzz/acqus") else {
        return;
    };
    let keys: Vec<String> = acqus.keys().map(str::to_string).collect();
    for key in &keys {
        assert!(acqus.get(key).is_some(), "a listed key is found");
        assert!(acqus.line_of(key).is_some());
        let _ = acqus.get_array(key);
        let _ = acqus.get_f64(key);
        let _ = acqus.get_i64(key);
    }
    let _ = acqus.core();
    let _ = group_delay_from_acqus(&acqus);
});
