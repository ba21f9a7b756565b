//! File formats spoken with scanners and spectrometers: readers and writers that validate every
//! field and name the file and the field in their errors.

pub mod bruker;
pub mod bruker_fid;
pub mod nifti_mrs;
