//! Fuzz target `nifti_mrs`: the NIfTI-MRS reader of `spinloop`
//! (`spinloop::formats::nifti_mrs::NiftiMrs::from_bytes`) on arbitrary bytes (raw `.nii` or,
//! by its magic, gzip).
//!
//! Checked besides "no panic and no allocation beyond what the input justifies": a dataset the
//! reader accepts answers every accessor without panicking, and the writer writes it and the
//! reader reads that back with the same dimensions (what is read can be written).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinloop::formats::nifti_mrs::NiftiMrs;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = NiftiMrs::from_bytes(data, "fuzz.nii") else {
        return;
    };
    let _ = m.spectrometer_mhz();
    let _ = m.nucleus();
    let count = m.fid_count();
    assert!(count >= 1, "an accepted dataset has at least one FID");
    for k in [0, count / 2, count - 1] {
        let fid = m.fid(k).expect("FID index below fid_count");
        assert_eq!(fid.len(), m.points());
    }
    assert!(m.fid(count).is_err());
    for dim in 5..=7 {
        let _ = m.dim_tag(dim);
    }
    let bytes = m.to_bytes().expect("an accepted dataset can be written");
    let back = NiftiMrs::from_bytes(&bytes, "rewritten.nii").expect("what is written reads back");
    assert_eq!(back.dims, m.dims);
});
