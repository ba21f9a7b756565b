//! The Glu/Gln baseline comparison behind `spinloop compare`: for each protocol, simulate the
//! basis set, synthesize one brain-like mixture spectrum at a fixed noise level, fit it, and
//! report the Glu and Gln CRLBs and the Glu–Gln correlation — the field's own measure of
//! "separation", and the table an optimized pulse must beat.
//!
//! # Fairness
//! Every protocol sees the same voxel, the same noise per FID sample and the same mixture:
//! basis signals are expressed per nominal voxel (see [`super::basis::protocol_basis`]), the
//! noise SD is fixed in absolute terms from `snr` on a reference acquisition (the NAA CH3
//! singlet of an ideal pulse–acquire spectrum of the mixture, peak height over the SD of one
//! real spectral component), and the CRLBs use that known noise SD, so they depend on the
//! protocol and not on the particular noise draw. The fitted concentrations of the noisy
//! spectrum are reported beside them.

use super::basis::{mixture_fid, protocol_basis};
use super::fit::{FitOptions, FitResult, fit};
use super::{SpectrumPlan, ppm_axis};
use crate::physics::error::positive;
use crate::physics::{Field, PhysicsError, library};
use crate::sequence::builders::acquisition;
use crate::sequence::protocols::{Protocol, PulseStyle};

/// A brain-like mixture at 3 T (mM; shared/reference/metabolites.md). Cr stands for tCr and PCh
/// for tCho: their partners have the same spectra within 0.02 ppm.
pub const BRAIN_MIXTURE: [(&str, f64); 8] = [
    ("Glu", 11.6),
    ("Gln", 3.5),
    ("NAA", 12.0),
    ("Cr", 8.0),
    ("PCh", 1.8),
    ("mI", 6.0),
    ("GABA", 1.2),
    ("GSH", 2.0),
];

/// Options of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Field.
    pub field: Field,
    /// Rotating-frame carrier (ppm) = transmitter frequency.
    pub carrier_ppm: f64,
    /// Points and dwell (s) of the FIDs.
    pub points: usize,
    /// Dwell (s).
    pub dwell: f64,
    /// Linewidth of the basis signals (Hz).
    pub basis_linewidth_hz: f64,
    /// Linewidth of the mixture (Hz, Lorentzian FWHM; ≥ the basis linewidth).
    pub linewidth_hz: f64,
    /// SNR of the NAA CH3 singlet on the reference acquisition (see the module doc).
    pub snr: f64,
    /// Seed of the noise draw.
    pub seed: u64,
    /// Fit options (window, baseline).
    pub fit: FitOptions,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            field: Field::THREE_T,
            carrier_ppm: 3.0,
            points: 2048,
            dwell: 2.5e-4,
            basis_linewidth_hz: 2.0,
            linewidth_hz: 6.0,
            snr: 100.0,
            seed: 1,
            fit: FitOptions {
                window_ppm: (1.8, 4.2),
                baseline_terms: 3,
                ..FitOptions::default()
            },
        }
    }
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct CompareRow {
    /// The protocol's sequence name.
    pub protocol: String,
    /// Glu CRLB (% of the true concentration).
    pub glu_crlb_percent: f64,
    /// Gln CRLB (% of the true concentration).
    pub gln_crlb_percent: f64,
    /// Correlation between the Glu and Gln estimates.
    pub glu_gln_correlation: f64,
    /// Fitted Glu (mM) of the noisy spectrum.
    pub glu_mm: f64,
    /// Fitted Gln (mM).
    pub gln_mm: f64,
    /// The whole fit.
    pub fit: FitResult,
}

/// The noise SD of one real FID component that gives `opts.snr` on the reference acquisition.
pub fn reference_noise_sd(opts: &CompareOptions) -> Result<f64, PhysicsError> {
    positive("snr", opts.snr)?;
    let protocol = Protocol::new(
        crate::sequence::protocols::SequenceKind::PulseAcquire,
        PulseStyle::Ideal,
    );
    let (_, basis) = protocol_basis(
        vec![library::naa()],
        opts.field,
        opts.carrier_ppm,
        &protocol,
        acquisition(opts.points, opts.dwell, opts.linewidth_hz)?,
    )?;
    let conc = mixture_concentration("NAA")?;
    let plan = SpectrumPlan::new(opts.points)?;
    let spec = plan.spectrum(&basis.fids[0])?;
    let ppm = ppm_axis(opts.points, opts.dwell, opts.carrier_ppm, opts.field.f0_mhz);
    let peak = super::window_indices(&ppm, 1.95, 2.05)
        .into_iter()
        .map(|j| spec[j].re * conc)
        .fold(0.0, f64::max);
    // A white FID noise of SD σ per real component gives spectral noise SD σ·√M per real
    // component (unnormalised FFT).
    Ok(peak / opts.snr / (opts.points as f64).sqrt())
}

fn mixture_concentration(name: &str) -> Result<f64, PhysicsError> {
    BRAIN_MIXTURE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| PhysicsError::invalid("mixture", name, "not in BRAIN_MIXTURE"))
}

/// Runs the comparison for `protocols` (each simulated with the brain-mixture basis).
pub fn compare_protocols(
    protocols: &[Protocol],
    opts: &CompareOptions,
) -> Result<Vec<CompareRow>, PhysicsError> {
    if opts.linewidth_hz < opts.basis_linewidth_hz {
        return Err(PhysicsError::invalid(
            "linewidth_hz",
            opts.linewidth_hz,
            "the mixture's linewidth must be at least the basis linewidth",
        ));
    }
    let noise_sd = reference_noise_sd(opts)?;
    let molecules = BRAIN_MIXTURE
        .iter()
        .map(|(n, _)| library::by_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    let truth: Vec<f64> = BRAIN_MIXTURE.iter().map(|(_, c)| *c).collect();
    let mut rows = Vec::with_capacity(protocols.len());
    for protocol in protocols {
        let (sequence, basis) = protocol_basis(
            molecules.clone(),
            opts.field,
            opts.carrier_ppm,
            protocol,
            acquisition(opts.points, opts.dwell, opts.basis_linewidth_hz)?,
        )?;
        let fid = mixture_fid(
            &basis,
            &truth,
            opts.linewidth_hz - opts.basis_linewidth_hz,
            noise_sd,
            opts.seed,
        )?;
        let fit_opts = FitOptions {
            noise_sd: Some(noise_sd),
            pivot_ppm: opts.carrier_ppm,
            ..opts.fit.clone()
        };
        let result = fit(&fid, &basis, &fit_opts)?;
        let (g, q) = (index(&result, "Glu")?, index(&result, "Gln")?);
        rows.push(CompareRow {
            protocol: sequence.name.clone(),
            glu_crlb_percent: 100.0 * result.crlb[g] / truth[g],
            gln_crlb_percent: 100.0 * result.crlb[q] / truth[q],
            glu_gln_correlation: result.correlation(g, q),
            glu_mm: result.concentrations[g],
            gln_mm: result.concentrations[q],
            fit: result,
        });
    }
    Ok(rows)
}

fn index(result: &FitResult, name: &str) -> Result<usize, PhysicsError> {
    result
        .index(name)
        .ok_or_else(|| PhysicsError::invalid("basis", name, "missing from the fit"))
}

/// The baseline protocols: PRESS TE 30, PRESS TE 80, STEAM TE 10 with `pulses` on an
/// `grid_points`² grid.
pub fn baseline_protocols(pulses: PulseStyle, grid_points: usize) -> Vec<Protocol> {
    [
        Protocol::press_te30(pulses),
        Protocol::press_te80(pulses),
        Protocol::steam_te10(pulses),
    ]
    .into_iter()
    .map(|p| p.with_grid(grid_points, 1.2))
    .collect()
}

/// The comparison as a Markdown table (truth: Glu 11.6 mM, Gln 3.5 mM).
pub fn format_table(rows: &[CompareRow]) -> String {
    let mut out = String::from(
        "| protocol | Glu CRLB (%) | Gln CRLB (%) | corr(Glu, Gln) | Glu fit (mM) | Gln fit (mM) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:+.3} | {:.2} | {:.2} |\n",
            r.protocol,
            r.glu_crlb_percent,
            r.gln_crlb_percent,
            r.glu_gln_correlation,
            r.glu_mm,
            r.gln_mm
        ));
    }
    out
}
