//! Basis sets: one simulated FID per metabolite for any sequence and field, on the sequence's
//! spatial grid when it has slice-selective pulses. This module owns [`simulate_basis`], the one
//! path by which `spinloop basis`, `fit` and `compare` turn a protocol into a [`Basis`].
//!
//! Every molecule of a basis is simulated by one [`Simulator`] (fragments in parallel, pulse
//! propagators shared across grid positions), with the nominal ensemble member (B1 = 1, no B0
//! offset). The basis FIDs carry the acquisition's linewidth; fits broaden them further.

use num_complex::Complex64 as C64;

use super::fit::Basis;
use super::processing::NoiseSource;
use crate::physics::SpatialGrid;
use crate::physics::error::finite;
use crate::physics::{
    Acquisition, Field, Member, Molecule, PhysicsError, SimOptions, Simulator, library,
};
use crate::sequence::builders::Sequence;
use crate::sequence::protocols::Protocol;

/// Simulates `molecules` under `sequence` (on `grid`, if given) at `field` with the rotating
/// frame at `carrier_ppm`: one FID per molecule, named after it.
pub fn simulate_basis(
    molecules: Vec<Molecule>,
    field: Field,
    carrier_ppm: f64,
    sequence: &Sequence,
    grid: Option<&SpatialGrid>,
) -> Result<Basis, PhysicsError> {
    if molecules.is_empty() {
        return Err(PhysicsError::invalid(
            "metabolites",
            "[]",
            "a basis set needs at least one metabolite",
        ));
    }
    let names: Vec<String> = molecules.iter().map(|m| m.name.clone()).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(PhysicsError::invalid(
                "metabolites",
                n,
                "listed twice (basis names must be unique)",
            ));
        }
    }
    let count = molecules.len();
    let mut sim = Simulator::new(
        molecules,
        field,
        carrier_ppm,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )?;
    if let Some(g) = grid {
        sim.set_spatial_grid(g)?;
    }
    let signals = sim.simulate(&sequence.experiment)?;
    let acq: Acquisition = sequence.experiment.acquisition;
    Ok(Basis {
        names,
        fids: (0..count).map(|m| signals.fid(0, m).to_vec()).collect(),
        dwell: acq.dwell,
        f0_mhz: field.f0_mhz,
        carrier_ppm,
    })
}

/// Resolves metabolite names against the built-in library (`all` = every library metabolite).
pub fn library_molecules(names: &[String]) -> Result<Vec<Molecule>, PhysicsError> {
    if names.len() == 1 && names[0].eq_ignore_ascii_case("all") {
        return Ok(library::all());
    }
    names.iter().map(|n| library::by_name(n.trim())).collect()
}

/// Compiles `protocol` and simulates its basis set: the convenience used by the CLI.
///
/// With slice-selective pulses the simulator returns the *mean* over the grid, which spans
/// ±`grid_half_width` slice units per axis around a nominal voxel of ±0.5; the basis is scaled
/// by (2·half width)^axes to express it per nominal voxel (the grid sum times the cell volume
/// over the voxel volume), so protocols with different grids, and ideal-pulse protocols, compare
/// on one scale: a perfectly rectangular profile would give the ideal-pulse amplitude.
pub fn protocol_basis(
    molecules: Vec<Molecule>,
    field: Field,
    carrier_ppm: f64,
    protocol: &Protocol,
    acquisition: Acquisition,
) -> Result<(Sequence, Basis), PhysicsError> {
    let compiled = protocol.compile(field, carrier_ppm, acquisition)?;
    let mut basis = simulate_basis(
        molecules,
        field,
        carrier_ppm,
        &compiled.sequence,
        compiled.grid.as_ref(),
    )?;
    if let Some(grid) = &compiled.grid {
        let scale = (2.0 * protocol.grid_half_width).powi(grid.axes.len() as i32);
        for fid in &mut basis.fids {
            fid.iter_mut().for_each(|s| *s *= scale);
        }
    }
    Ok((compiled.sequence, basis))
}

/// The FID of a mixture: Σ c·basis, broadened by `extra_linewidth_hz` (Lorentzian), with white
/// Gaussian noise of SD `noise_sd` per real component drawn from `seed` (none when 0).
pub fn mixture_fid(
    basis: &Basis,
    concentrations: &[f64],
    extra_linewidth_hz: f64,
    noise_sd: f64,
    seed: u64,
) -> Result<Vec<C64>, PhysicsError> {
    if concentrations.len() != basis.fids.len() {
        return Err(PhysicsError::SizeMismatch {
            what: "mixture concentrations".into(),
            expected: basis.fids.len(),
            got: concentrations.len(),
        });
    }
    for (name, c) in basis.names.iter().zip(concentrations) {
        finite(format!("concentration of {name}"), *c)?;
    }
    finite("extra_linewidth_hz", extra_linewidth_hz)?;
    let points = basis.fids.first().map_or(0, Vec::len);
    let mut fid: Vec<C64> = (0..points)
        .map(|m| {
            let t = m as f64 * basis.dwell;
            let decay = (-std::f64::consts::PI * extra_linewidth_hz * t).exp();
            basis
                .fids
                .iter()
                .zip(concentrations)
                .map(|(b, c)| b[m] * *c)
                .sum::<C64>()
                * decay
        })
        .collect();
    NoiseSource::new(seed).add_to(&mut fid, noise_sd)?;
    Ok(fid)
}
