//! The main job's per-iteration plots: as a session converges, every acquisition it uses gets
//! two PNG files in the plot directory —
//! - `iter-NN-waveform.png`: the RF waveform that was played (ux, uy; |B1| and phase);
//! - `iter-NN-spectrum.png`: the measured spectrum (real part, as acquired: the console's
//!   receiver phase is in it), the spectrum the hardware model fitted after that acquisition
//!   predicts for the same waveform, and what nominal hardware would have given —
//!
//! and at the end `spectra.png` stacks the measured spectra of all iterations. Everything is
//! read back from the daemon's store (what was stored is what is drawn), the predictions come
//! from the session's own loop model, so a fitted curve lying on the measured one is the fit's
//! visual check.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use num_complex::Complex64 as C64;

use spinloop::calibrate::{HardwareModel, PARAMETER_NAMES};
use spinloop::control::{ConsoleProfile, LoopModel, SessionSpec};
use spinloop::plot::{SpectrumPlot, WaveformPlot, write_spectrum, write_waveform};
use spinloop::spectrum::{SpectrumPlan, ppm_axis};
use spinloop::store::{Acquisition, Fit, Store, Waveform};

/// Shown chemical-shift range (ppm): where the brain metabolites are.
const PPM_RANGE: (f64, f64) = (0.5, 4.5);

/// What one poll of the store found for a session.
pub struct Snapshot {
    acquisitions: Vec<Acquisition>,
    waveforms: Vec<Waveform>,
    fits: Vec<Fit>,
}

impl Snapshot {
    /// Reads a session's acquisitions, waveforms and fits (a store-actor job).
    pub fn read(store: &Store, session_id: &str) -> Result<Snapshot, spinloop::store::StoreError> {
        Ok(Snapshot {
            acquisitions: store.list_acquisitions(session_id)?,
            waveforms: store.list_waveforms(session_id)?,
            fits: store.list_fits(session_id)?,
        })
    }
}

/// Writes the plots of one session as its acquisitions arrive.
pub struct IterationPlots {
    dir: PathBuf,
    model: LoopModel,
    plan: SpectrumPlan,
    ppm: Vec<f64>,
    plotted: BTreeSet<i64>,
    measured: Vec<(String, Vec<f64>)>,
}

impl IterationPlots {
    /// Plots for a session of `spec` on `console`, written to `dir` (created).
    pub fn new(dir: &Path, spec: &SessionSpec, console: &ConsoleProfile) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let problem = spec.problem(console).context("the session's problem")?;
        let model =
            LoopModel::new(problem.clone(), spec.ensemble.clone()).context("the loop model")?;
        let points = console.sample_count;
        let plan = SpectrumPlan::new(points)?;
        let ppm = ppm_axis(
            points,
            console.dwell_s,
            problem.carrier_ppm,
            console.f0_hz * 1e-6,
        );
        Ok(IterationPlots {
            dir: dir.to_path_buf(),
            model,
            plan,
            ppm,
            plotted: BTreeSet::new(),
            measured: Vec::new(),
        })
    }

    /// Plots every acquisition of `snap` not plotted yet whose fit is in (the fit follows
    /// its acquisition); returns the files written.
    pub fn update(&mut self, snap: &Snapshot) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for a in &snap.acquisitions {
            if self.plotted.contains(&a.id) {
                continue;
            }
            let Some(fit) = snap
                .fits
                .iter()
                .find(|f| f.data.acquisition_id == Some(a.id))
            else {
                continue;
            };
            let Some(w) = snap
                .waveforms
                .iter()
                .find(|w| w.data.id == a.data.waveform_id)
            else {
                continue;
            };
            self.plotted.insert(a.id);
            let iteration = self.plotted.len();
            written.extend(self.plot_iteration(iteration, a, w, fit)?);
        }
        Ok(written)
    }

    fn plot_iteration(
        &mut self,
        iteration: usize,
        a: &Acquisition,
        w: &Waveform,
        fit: &Fit,
    ) -> Result<Vec<PathBuf>> {
        let ux: Vec<f64> = w.data.samples.iter().map(|c| c.re).collect();
        let uy: Vec<f64> = w.data.samples.iter().map(|c| c.im).collect();
        let wave_path = self.dir.join(format!("iter-{iteration:02}-waveform.png"));
        write_waveform(
            &WaveformPlot::new(
                format!("iteration {iteration}: waveform {}", w.data.id),
                w.data.dt_s,
                ux.clone(),
                uy.clone(),
            ),
            &wave_path,
        )?;

        let estimate = estimate_of(&fit.data.params)?;
        let measured = self.real_spectrum(&a.data.samples)?;
        let fitted = self.model.predict(&estimate, &ux, &uy)?;
        let fitted = self.real_spectrum(&fitted)?;
        let nominal = self.model.predict(&HardwareModel::NOMINAL, &ux, &uy)?;
        let nominal = self.real_spectrum(&nominal)?;
        let mut plot = SpectrumPlot::new(format!(
            "iteration {iteration}: acquisition {} — fitted B1 × {:.4}, B0 {:+.2} Hz",
            a.id, estimate.b1_scale, estimate.b0_offset_hz
        ))
        .trace("nominal hardware", self.ppm.clone(), nominal)
        .trace("fitted hardware model", self.ppm.clone(), fitted)
        .trace("measured", self.ppm.clone(), measured.clone());
        plot.ppm_range = Some(PPM_RANGE);
        let spec_path = self.dir.join(format!("iter-{iteration:02}-spectrum.png"));
        write_spectrum(&plot, &spec_path)?;
        self.measured
            .push((format!("iteration {iteration}"), measured));
        Ok(vec![wave_path, spec_path])
    }

    /// The measured spectra of every iteration, stacked (`spectra.png`), if there are any.
    pub fn finish(&self) -> Result<Option<PathBuf>> {
        if self.measured.is_empty() {
            return Ok(None);
        }
        let mut plot = SpectrumPlot::new("measured spectra, one per iteration");
        for (label, y) in &self.measured {
            plot = plot.trace(label.clone(), self.ppm.clone(), y.clone());
        }
        plot.ppm_range = Some(PPM_RANGE);
        plot.stacked = true;
        let path = self.dir.join("spectra.png");
        write_spectrum(&plot, &path)?;
        Ok(Some(path))
    }

    fn real_spectrum(&self, fid: &[C64]) -> Result<Vec<f64>> {
        Ok(self.plan.spectrum(fid)?.iter().map(|c| c.re).collect())
    }
}

/// The hardware estimate stored with a fit (`parameters`: name/value pairs).
fn estimate_of(params: &serde_json::Value) -> Result<HardwareModel> {
    let list = params
        .get("parameters")
        .and_then(|p| p.as_array())
        .ok_or_else(|| anyhow!("a stored fit has no parameter list"))?;
    let mut v = HardwareModel::NOMINAL.to_vector();
    for p in list {
        let (Some(name), Some(value)) = (
            p.get("name").and_then(|n| n.as_str()),
            p.get("value").and_then(|x| x.as_f64()),
        ) else {
            continue;
        };
        if let Some(i) = PARAMETER_NAMES.iter().position(|n| *n == name) {
            v[i] = value;
        }
    }
    let model = HardwareModel::from_vector(&v);
    model
        .validate("stored fit")
        .map_err(|e| anyhow!("stored fit: {e}"))?;
    Ok(model)
}
