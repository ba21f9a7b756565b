//! Spectra and basis sets in files: basis sets as NIfTI-MRS (metabolites along dim 5), measured
//! FIDs from NIfTI-MRS or Bruker experiment directories, and CSV tables of spectra and fits.
//! This module owns the mapping between spinloop's in-memory [`Basis`] / FIDs and those files;
//! the byte-level formats live in [`crate::formats`].
//!
//! # Conventions in the NIfTI-MRS header
//! - `SpectrometerFrequency` (MHz) and `ResonantNucleus` as the standard requires.
//! - `spinloop_carrier_ppm` = `{"Value": ppm, "Description": …}`: the ppm of the rotating
//!   frame (the transmitter frequency). Files from other tools lack it; their carrier is given
//!   by the caller (4.65 ppm, water, is the in-vivo habit).
//! - A basis set is stacked along dim 5 with tag `DIM_USER_0` and
//!   `dim_5_header.Metabolite` = the names; `SequenceName` and `EchoTime` (s) describe it.

use std::path::Path;

use num_complex::Complex64 as C64;
use serde_json::{Map, Value, json};

use super::fit::{Basis, FitResult};
use super::{SpectrumPlan, ppm_axis};
use crate::formats::bruker_fid;
use crate::formats::nifti_mrs::NiftiMrs;
use crate::physics::PhysicsError;
use crate::sequence::builders::Sequence;

/// Header key of the rotating-frame carrier.
pub const CARRIER_KEY: &str = "spinloop_carrier_ppm";

fn carrier_value(carrier_ppm: f64) -> Value {
    json!({
        "Value": carrier_ppm,
        "Description": "ppm of the rotating frame (transmitter frequency) of the FIDs"
    })
}

/// A measured (or simulated) FID with what is needed to put it on a ppm axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The FID (averaged over every non-spectral dimension of the file).
    pub fid: Vec<C64>,
    /// Dwell (s).
    pub dwell: f64,
    /// Spectrometer frequency (MHz).
    pub f0_mhz: f64,
    /// Carrier (ppm), when the file records it.
    pub carrier_ppm: Option<f64>,
    /// Number of FIDs averaged.
    pub averaged: usize,
}

/// A single FID as a NIfTI-MRS file with the carrier and sequence recorded.
pub fn fid_to_nifti(
    fid: Vec<C64>,
    dwell: f64,
    f0_mhz: f64,
    carrier_ppm: f64,
    sequence: Option<&Sequence>,
) -> Result<NiftiMrs, PhysicsError> {
    let mut n = NiftiMrs::single_voxel(fid, dwell, f0_mhz, "1H")?;
    n.set(CARRIER_KEY, carrier_value(carrier_ppm));
    describe(&mut n, sequence);
    n.validate()?;
    Ok(n)
}

fn describe(n: &mut NiftiMrs, sequence: Option<&Sequence>) {
    n.set("ConversionMethod", json!("spinloop simulation"));
    if let Some(seq) = sequence {
        n.set("SequenceName", json!(seq.name));
        n.set("EchoTime", json!(seq.te));
    }
}

/// A basis set as NIfTI-MRS (metabolites along dim 5, see the module doc).
pub fn basis_to_nifti(
    basis: &Basis,
    sequence: Option<&Sequence>,
) -> Result<NiftiMrs, PhysicsError> {
    let mut dim_header = Map::new();
    dim_header.insert("Metabolite".into(), json!(basis.names));
    let mut n = NiftiMrs::stacked(
        basis.fids.clone(),
        basis.dwell,
        basis.f0_mhz,
        "1H",
        "DIM_USER_0",
        Some(dim_header),
    )?;
    n.set("dim_5_info", json!("basis set: one metabolite per index"));
    n.set(CARRIER_KEY, carrier_value(basis.carrier_ppm));
    describe(&mut n, sequence);
    n.validate()?;
    Ok(n)
}

/// Reads a basis set written by [`basis_to_nifti`].
pub fn basis_from_nifti(n: &NiftiMrs, source: &str) -> Result<Basis, PhysicsError> {
    let names: Vec<String> = n
        .dim_header_values(5, "Metabolite")
        .ok_or_else(|| {
            PhysicsError::Parse(format!(
                "basis set {source}: no dim_5_header.Metabolite (not a spinloop basis file)"
            ))
        })?
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                PhysicsError::Parse(format!(
                    "basis set {source}: a metabolite name is not a string"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if names.len() != n.fid_count() {
        return Err(PhysicsError::SizeMismatch {
            what: format!("{source}: metabolite names vs FIDs"),
            expected: n.fid_count(),
            got: names.len(),
        });
    }
    let carrier_ppm = carrier_of(n).ok_or_else(|| {
        PhysicsError::Parse(format!(
            "basis set {source}: no {CARRIER_KEY} in the header"
        ))
    })?;
    let fids = (0..names.len())
        .map(|k| n.fid(k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Basis {
        names,
        fids,
        dwell: n.dwell,
        f0_mhz: n.spectrometer_mhz()?,
        carrier_ppm,
    })
}

fn carrier_of(n: &NiftiMrs) -> Option<f64> {
    match n.header.get(CARRIER_KEY)? {
        Value::Object(o) => o.get("Value").and_then(Value::as_f64),
        v => v.as_f64(),
    }
    .filter(|c| c.is_finite())
}

/// Reads a measurement: a NIfTI-MRS file (`.nii`, `.nii.gz`; every FID in the file averaged)
/// or a Bruker experiment directory (`acqus` + `fid`, digital filter removed; carrier
/// O1/BF1 ppm, i.e. TopSpin's spectral reference SR taken as 0).
pub fn read_measurement(path: &Path) -> Result<Measurement, PhysicsError> {
    if path.is_dir() {
        let b = bruker_fid::read_experiment(path)?;
        // BF1 is the 0-ppm frequency (TopSpin's SR = 0 assumed) and the carrier sits at
        // O1/BF1 ppm.
        return Ok(Measurement {
            carrier_ppm: Some(b.carrier_ppm()).filter(|c| c.is_finite()),
            fid: b.fid,
            dwell: b.dwell,
            f0_mhz: b.bf1_mhz,
            averaged: 1,
        });
    }
    let n = NiftiMrs::read(path)?;
    let count = n.fid_count();
    let mut fid = vec![C64::new(0.0, 0.0); n.points()];
    for k in 0..count {
        for (acc, s) in fid.iter_mut().zip(n.fid(k)?) {
            *acc += s;
        }
    }
    let scale = 1.0 / count.max(1) as f64;
    fid.iter_mut().for_each(|s| *s *= scale);
    Ok(Measurement {
        fid,
        dwell: n.dwell,
        f0_mhz: n.spectrometer_mhz()?,
        carrier_ppm: carrier_of(&n),
        averaged: count,
    })
}

/// Writes a CSV of the spectra of a set of named FIDs on one time grid (a [`Basis`]): `ppm`
/// then, per FID, `<name>_re,<name>_im` (spectrum: s\[0\] halved, FFT, fftshift — the
/// DESIGN.md convention).
pub fn write_spectra_csv(path: &Path, set: &Basis) -> Result<(), PhysicsError> {
    let points = set.fids.first().map_or(0, Vec::len);
    let plan = SpectrumPlan::new(points)?;
    let spectra = set
        .fids
        .iter()
        .map(|f| plan.spectrum(f))
        .collect::<Result<Vec<_>, _>>()?;
    let ppm = ppm_axis(points, set.dwell, set.carrier_ppm, set.f0_mhz);
    let mut out = String::from("ppm");
    for n in &set.names {
        out.push_str(&format!(",{n}_re,{n}_im"));
    }
    out.push('\n');
    for (j, p) in ppm.iter().enumerate() {
        out.push_str(&format!("{p:.6}"));
        for s in &spectra {
            out.push_str(&format!(",{:.9e},{:.9e}", s[j].re, s[j].im));
        }
        out.push('\n');
    }
    write_file(path, out.as_bytes())
}

/// Writes a CSV of a fit over the whole axis: ppm, then data, model and residual (data −
/// model), each as real and imaginary parts. The model includes the baseline and the fitted
/// phases, so all three columns are in the data's phase.
pub fn write_fit_csv(
    path: &Path,
    ppm: &[f64],
    data: &[C64],
    result: &FitResult,
) -> Result<(), PhysicsError> {
    if data.len() != ppm.len() || result.model.len() != ppm.len() {
        return Err(PhysicsError::SizeMismatch {
            what: "fit CSV columns".into(),
            expected: ppm.len(),
            got: data.len().min(result.model.len()),
        });
    }
    let mut out = String::from("ppm,data_re,data_im,model_re,model_im,residual_re,residual_im\n");
    for j in 0..ppm.len() {
        let r = data[j] - result.model[j];
        out.push_str(&format!(
            "{:.6},{:.9e},{:.9e},{:.9e},{:.9e},{:.9e},{:.9e}\n",
            ppm[j], data[j].re, data[j].im, result.model[j].re, result.model[j].im, r.re, r.im
        ));
    }
    write_file(path, out.as_bytes())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PhysicsError> {
    crate::formats::write_atomic(path, bytes)
        .map_err(|e| PhysicsError::Io(format!("cannot write {}: {e}", path.display())))
}
