//! What `spinloop optimize` hands over: the optimized waveform as JSON, a Pulseq `.seq`
//! (pulse–acquire with the problem's ADC), a Bruker shape file, PNG plots of the predicted
//! spectra before and after and of the waveform, the product-operator report of the state the
//! pulse leaves, and a Markdown report with the optimizer history, the objective parts and —
//! for Glu/Gln problems at 3 T — the comparison with the baseline protocols.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::problem::{DesignProblem, DesignResult, WaveformFile};
use super::product_operators::state_after;
use crate::formats::bruker::{BrukerShape, ExMode, write_shape};
use crate::formats::pulseq::{Adc, PulseqExport, PulseqSystem, RfPulse, RfUse};
use crate::formats::write_atomic;
use crate::physics::{Member, PhysicsError, SimOptions, Simulator};
use crate::plot::{SpectrumPlot, WaveformPlot, write_spectrum, write_waveform};
use crate::sequence::shapes::Shape;
use crate::spectrum::compare::{
    CompareOptions, CompareRow, baseline_protocols, compare_protocols, format_table,
};
use crate::spectrum::{SpectrumPlan, ppm_axis};

/// Options of the output step.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputOptions {
    /// Grid points per axis of the comparison table (0: no comparison).
    pub compare_grid: usize,
    /// Product-operator terms listed per fragment.
    pub top_terms: usize,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            compare_grid: 25,
            top_terms: 8,
        }
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> PhysicsError {
    PhysicsError::Io(format!("{}: {e}", path.display()))
}

fn write_text(path: &Path, text: &str) -> Result<(), PhysicsError> {
    write_atomic(path, text.as_bytes()).map_err(|e| io(path, e))
}

/// The product-operator report: for the nominal member, the state of every fragment right
/// after the designed pulse (before any coherence filter), largest terms first.
pub fn product_operator_report(
    problem: &DesignProblem,
    ux: &[f64],
    uy: &[f64],
    top: usize,
) -> Result<String, PhysicsError> {
    let mut sim = Simulator::new(
        problem.simulator.molecules().to_vec(),
        problem.field,
        problem.spec.carrier_ppm,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )?;
    let experiment = problem.experiment_with(ux.to_vec(), uy.to_vec());
    let states = state_after(&mut sim, &experiment, problem.designed_block + 1, 0)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "State after the designed pulse (nominal B1 and B0), normalized product operators \
         (equilibrium Iz of each spin = 1), largest {top} terms per fragment:\n"
    );
    for s in states {
        let terms =
            super::product_operators::without_identity(super::product_operators::decompose(
                &s.rho,
                s.n_spins(),
                super::product_operators::Basis::Cartesian,
            )?);
        let legend = s
            .spin_names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("I{} = {n}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "{} / {} ({legend})", s.molecule, s.name);
        let _ = writeln!(
            out,
            "  {}",
            super::product_operators::format_terms(
                &super::product_operators::largest(&terms, top),
                None
            )
        );
    }
    Ok(out)
}

/// Whether a problem is a Glu/Gln problem at 3 T that `spinloop compare`'s table applies to.
pub fn comparable(problem: &DesignProblem) -> bool {
    let has = |n: &str| {
        problem
            .spec
            .molecules
            .iter()
            .any(|m| m.eq_ignore_ascii_case(n))
    };
    (problem.field.f0_mhz - 123.2).abs() < 1.0 && has("Glu") && has("Gln")
}

/// The comparison table: the baselines of `spinloop compare` and the problem's sequence with
/// the reference and the optimized pulse, on a `grid`² grid (the brain mixture, the same
/// noise).
pub fn compare_design(
    problem: &DesignProblem,
    result: &DesignResult,
    grid: usize,
) -> Result<Vec<CompareRow>, PhysicsError> {
    let mut protocols = baseline_protocols(problem.protocol.pulses, grid);
    protocols.push(problem.protocol_with(
        &problem.reference.0,
        &problem.reference.1,
        "reference sinc pulse",
        grid,
    ));
    protocols.push(problem.protocol_with(
        &result.optimized.0,
        &result.optimized.1,
        "optimized pulse",
        grid,
    ));
    let acq = problem.experiment.acquisition;
    let opts = CompareOptions {
        field: problem.field,
        carrier_ppm: problem.spec.carrier_ppm,
        points: acq.points,
        dwell: acq.dwell,
        linewidth_hz: acq
            .linewidth_hz
            .max(CompareOptions::default().basis_linewidth_hz),
        ..CompareOptions::default()
    };
    compare_protocols(&protocols, &opts)
}

/// Writes every output into `dir` (created if needed) with file names starting with the
/// problem's name; returns the paths written and the report text.
pub fn write_outputs(
    problem: &mut DesignProblem,
    result: &DesignResult,
    dir: &Path,
    opts: &OutputOptions,
) -> Result<(Vec<PathBuf>, String), PhysicsError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = sanitize(&problem.spec.name);
    let path = |suffix: &str| dir.join(format!("{name}{suffix}"));
    let mut written = Vec::new();
    let (ux, uy) = (&result.optimized.0, &result.optimized.1);
    let dt = problem.param.dt;

    // Waveform JSON.
    let json_path = path(".waveform.json");
    let file = WaveformFile {
        dt,
        ux: ux.clone(),
        uy: uy.clone(),
        peak_b1_hz: Some(problem.param.peak_hz),
        name: Some(problem.spec.name.clone()),
    };
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| PhysicsError::Io(format!("waveform JSON: {e}")))?;
    write_text(&json_path, &text)?;
    written.push(json_path);

    // Pulseq: the pulse, then the ADC of the problem's acquisition.
    let acq = problem.experiment.acquisition;
    let mut rf = RfPulse::new(ux.clone(), uy.clone(), dt);
    rf.rf_use = RfUse::Excitation;
    let seq = PulseqExport::pulse_acquire(
        problem.spec.name.clone(),
        PulseqSystem::default(),
        rf,
        0.0,
        Some(Adc::new(acq.points, acq.dwell)),
    );
    let seq_path = path(".seq");
    seq.write(&seq_path)?;
    written.push(seq_path);

    // Bruker shape file.
    let (shape, _) = Shape::from_controls(problem.spec.name.clone(), dt, ux, uy)?;
    let bruker = BrukerShape::from_shape(&shape, &problem.spec.name, ExMode::Excitation, 90.0)?;
    let shape_path = path(".bruker.shape");
    write_text(&shape_path, &write_shape(&bruker))?;
    written.push(shape_path);

    // Plots: predicted spectra (nominal member, mixture) before and after; the waveform.
    let (before, after) = (
        mixture_spectrum(problem, &result.initial.0, &result.initial.1)?,
        mixture_spectrum(problem, ux, uy)?,
    );
    let ppm = ppm_axis(
        acq.points,
        acq.dwell,
        problem.spec.carrier_ppm,
        problem.field.f0_mhz,
    );
    let mut plot = SpectrumPlot::new(format!("{}: predicted spectrum", problem.spec.name))
        .trace("start", ppm.clone(), before)
        .trace("optimized", ppm, after);
    plot.ppm_range = Some(plot_range(problem));
    let spectra_path = path(".spectra.png");
    write_spectrum(&plot, &spectra_path).map_err(|e| io(&spectra_path, e))?;
    written.push(spectra_path);
    let wave_path = path(".waveform.png");
    write_waveform(
        &WaveformPlot::new(
            format!("{}: optimized waveform", problem.spec.name),
            dt,
            ux.clone(),
            uy.clone(),
        ),
        &wave_path,
    )
    .map_err(|e| io(&wave_path, e))?;
    written.push(wave_path);

    // Product operators.
    let po = product_operator_report(problem, ux, uy, opts.top_terms)?;
    let po_path = path(".product_operators.txt");
    write_text(&po_path, &po)?;
    written.push(po_path);

    // Report.
    let mut report = report_text(problem, result);
    if opts.compare_grid > 0 && comparable(problem) {
        let rows = compare_design(problem, result, opts.compare_grid)?;
        let _ = writeln!(
            report,
            "\n## Comparison (brain mixture, {g}×{g} grid, same noise as `spinloop compare`)\n\n{}",
            format_table(&rows),
            g = opts.compare_grid
        );
    }
    let _ = writeln!(report, "\n## Product operators\n\n```\n{po}```");
    let report_path = path(".report.md");
    write_text(&report_path, &report)?;
    written.push(report_path);
    Ok((written, report))
}

/// The report's text without the comparison: problem size, optimizer, history, parts.
pub fn report_text(problem: &DesignProblem, result: &DesignResult) -> String {
    let mut out = String::new();
    let h = &result.optimizer.history;
    let (ux, uy) = (&result.optimized.0, &result.optimized.1);
    let peak = super::constraints::peak(ux, uy);
    let energy = super::constraints::energy(ux, uy, problem.param.dt);
    let _ = writeln!(out, "# {}\n", problem.spec.name);
    let _ = writeln!(
        out,
        "- pulse: {} segments × {:.1} µs = {:.3} ms, peak {:.1} Hz (limit {:.1} Hz), energy {:.4e} Hz²·s",
        problem.param.segments,
        problem.param.dt * 1e6,
        problem.param.duration() * 1e3,
        peak,
        problem.param.peak_hz,
        energy
    );
    let _ = writeln!(
        out,
        "- ensemble: {} members (B1 {:?} × B0 {:?} Hz) × {} grid positions = {} simulations per molecule fragment",
        problem.members.len(),
        problem.spec.ensemble.b1,
        problem.spec.ensemble.b0_hz,
        problem.positions,
        problem.ensemble_size()
    );
    let _ = writeln!(
        out,
        "- optimizer: {} — {} iterations, {} evaluations, {:.2} s, stopped: {:?}",
        problem.spec.optimizer.method,
        h.len().saturating_sub(1),
        h.last().map_or(0, |i| i.evaluations),
        result.seconds,
        result.optimizer.reason
    );
    let _ = writeln!(
        out,
        "- loss: {:.6} → {:.6}\n",
        h.first().map_or(f64::NAN, |i| i.loss),
        result.optimizer.loss
    );
    let _ = writeln!(
        out,
        "| objective part | start | optimized |\n| --- | ---: | ---: |"
    );
    for ((name, a), (_, b)) in result.parts_initial.iter().zip(&result.parts_optimized) {
        let _ = writeln!(out, "| {name} | {a:.6} | {b:.6} |");
    }
    out
}

/// The real part of the nominal member's mixture spectrum (concentration-weighted).
fn mixture_spectrum(
    problem: &mut DesignProblem,
    ux: &[f64],
    uy: &[f64],
) -> Result<Vec<f64>, PhysicsError> {
    let signals = problem.signals(ux, uy)?;
    let weights = problem
        .spec
        .concentrations
        .clone()
        .unwrap_or_else(|| vec![1.0; signals.molecules()]);
    let nominal = problem
        .members
        .iter()
        .position(|m| m.b1 == 1.0 && m.b0_hz == 0.0)
        .unwrap_or(0);
    let fid = signals.mixture(nominal, &weights)?;
    let spec = SpectrumPlan::new(fid.len())?.spectrum(&fid)?;
    Ok(spec.iter().map(|z| z.re).collect())
}

/// The ppm range of the spectra plot: the union of the objectives' windows (the fit window for
/// quantification objectives), widened by 10 %.
fn plot_range(problem: &DesignProblem) -> (f64, f64) {
    use super::problem::ObjectiveSpec as O;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for o in &problem.spec.objectives {
        let w = match o {
            O::Enhancement { window_ppm, .. }
            | O::Suppression { window_ppm, .. }
            | O::Fidelity { window_ppm, .. } => *window_ppm,
            O::Crlb { .. } | O::Correlation { .. } => problem.spec.quantification.window_ppm,
        };
        lo = lo.min(w.0);
        hi = hi.max(w.1);
    }
    if lo < hi {
        let pad = 0.1 * (hi - lo);
        (lo - pad, hi + pad)
    } else {
        (0.5, 4.5)
    }
}

/// A name safe for file names.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "design".into() } else { s }
}
