//! The physics of a simulated console, separate from any transport: [`ConsolePhysics`] (the
//! seam — "given a waveform and the acquisition's time, return the FID"), its implementation
//! [`SimulatedConsole`] with a [`HiddenTruth`], the two console kinds ([`ConsoleKind`]: a 3 T
//! clinical scanner with a brain phantom, an 11.7 T spectrometer with a citrate phantom) and
//! the SNR definition.
//!
//! # Signal chain of one acquisition at session time t
//! waveform u → transmit filter → AM/AM + AM/PM ([`HiddenTruth::transmit`]) → × B1 scale →
//! spins (the phantom's molecules through the session's sequence, B0 offset ν0 + ν̇0·t, the
//! nominal linewidth plus the truth's extra linewidth; `spinloop`'s
//! [`Calibrator::predict`], i.e. the library simulator) → receiver gain, phase φ0 and delay τ
//! (spectrum × e^{i(φ0 + 2πfτ)}) → complex Gaussian noise. The B0 offset is constant within
//! one FID (a FID lasts ≤ 0.3 s; drift rates here are ≤ 10 Hz/s).
//!
//! # SNR
//! The **reference spectrum** is the spectrum (first point halved, FFT, fftshift — the crate's
//! convention) of the noise-free FID the phantom gives for an on-resonance hard 90° pulse
//! (x phase, amplitude 1/(4T), T the designed pulse's duration) under the *nominal* hardware
//! (no filter, no amplifier distortion, B1 = 1, B0 = 0, receiver phase 0). Its peak height
//! P = max_j |S_j|. White complex noise of SD σ per real component per FID sample gives, per
//! real component of a spectral point, SD σ_S = σ·√(M − ¾) (M points; the first is halved).
//! **SNR = P/σ_S** for one transient, so σ = P/(SNR·√(M − ¾)); a FID averaged over n
//! transients has σ/√n. Noise comes from a seeded generator (splitmix64 + Box–Muller,
//! [`spinloop::spectrum::processing::NoiseSource`]): the same seed and the same sequence of
//! acquisitions give bit-identical FIDs.

use num_complex::Complex64 as C64;
use serde::{Deserialize, Serialize};
use spinloop::calibrate::{Calibrator, HardwareModel};
use spinloop::control::ConsoleProfile;
use spinloop::design::problem::{DesignProblem, ProblemSpec};
use spinloop::safety::ConsoleLimits;
use spinloop::spectrum::SpectrumPlan;
use spinloop::spectrum::processing::NoiseSource;

use crate::HilError;
use crate::hardware::HiddenTruth;

/// The transport-independent side of a console: what a transport (gRPC today, the serial
/// firmware protocol later) needs from the simulated hardware.
pub trait ConsolePhysics: Send {
    /// What the console declares in its hello.
    fn profile(&self) -> &ConsoleProfile;

    /// Plays the waveform (`ux`, `uy` in Hz, segments of `dt` s) at session time `t_s` and
    /// returns the FID averaged over `averages` transients.
    fn acquire(
        &mut self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
        averages: u32,
        t_s: f64,
    ) -> Result<Vec<C64>, HilError>;
}

/// The kinds of simulated console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleKind {
    /// A 3 T clinical scanner (123.2 MHz) with a brain phantom.
    #[serde(rename = "3t-clinical")]
    Clinical3T,
    /// An 11.7 T spectrometer (500.13 MHz) with a citric-acid phantom.
    #[serde(rename = "11t7-spectrometer")]
    Spectrometer11T7,
}

/// A phantom: molecules of the built-in library and their concentrations (mM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phantom {
    /// Library names (`spinloop molecules`).
    pub metabolites: Vec<String>,
    /// Concentrations (mM), one per metabolite.
    pub concentrations: Vec<f64>,
}

impl Phantom {
    /// Checks lengths and values (each concentration finite and > 0, names in the library).
    pub fn validate(&self) -> Result<(), HilError> {
        if self.metabolites.is_empty() {
            return Err(HilError::invalid(
                "phantom.metabolites",
                "[]",
                "at least one",
            ));
        }
        if self.concentrations.len() != self.metabolites.len() {
            return Err(HilError::invalid(
                "phantom.concentrations",
                self.concentrations.len(),
                format!(
                    "must have one entry per metabolite ({})",
                    self.metabolites.len()
                ),
            ));
        }
        for (m, c) in self.metabolites.iter().zip(&self.concentrations) {
            spinloop::physics::library::by_name(m)
                .map_err(|e| HilError::invalid("phantom.metabolites", m, e.to_string()))?;
            if !(c.is_finite() && *c > 0.0 && *c <= 1000.0) {
                return Err(HilError::invalid(
                    format!("phantom.concentrations[{m}]"),
                    c,
                    "must be in (0, 1000] mM",
                ));
            }
        }
        Ok(())
    }
}

impl ConsoleKind {
    /// Larmor frequency (Hz).
    pub fn f0_hz(self) -> f64 {
        match self {
            ConsoleKind::Clinical3T => 123.2e6,
            ConsoleKind::Spectrometer11T7 => 500.13e6,
        }
    }

    /// The declared profile of a console of this kind.
    pub fn profile(self, id: &str) -> ConsoleProfile {
        let software = format!("spinloop-hil {}", env!("CARGO_PKG_VERSION"));
        match self {
            // A clinical body-coil transmitter: 10 µs raster, ~25 µT-class peak (in Hz), a
            // 4 kHz receive bandwidth.
            ConsoleKind::Clinical3T => ConsoleProfile {
                id: id.to_string(),
                nucleus: "1H".into(),
                f0_hz: self.f0_hz(),
                rf_raster_s: 10e-6,
                sample_count: 1024,
                dwell_s: 2.5e-4,
                tr_s: 2.0,
                limits: ConsoleLimits {
                    peak_b1_hz: 2500.0,
                    max_energy_hz2s: 1500.0,
                    max_duration_s: 0.01,
                    raster_s: 10e-6,
                    max_duty_cycle: 0.1,
                    window: None,
                },
                software,
            },
            // A high-resolution probe: 1 µs shape raster, 10 kHz spectral width.
            ConsoleKind::Spectrometer11T7 => ConsoleProfile {
                id: id.to_string(),
                nucleus: "1H".into(),
                f0_hz: self.f0_hz(),
                rf_raster_s: 1e-6,
                sample_count: 2048,
                dwell_s: 1e-4,
                tr_s: 5.0,
                limits: ConsoleLimits {
                    peak_b1_hz: 5000.0,
                    max_energy_hz2s: 5000.0,
                    max_duration_s: 0.05,
                    raster_s: 1e-6,
                    max_duty_cycle: 0.05,
                    window: None,
                },
                software,
            },
        }
    }

    /// The default phantom: at 3 T the main brain metabolites at typical concentrations
    /// (shared/reference/metabolites.md: NAA 12, Cr 4.5 + PCr 3.5, Cho as PCh 1.0 + GPC 0.7,
    /// Glu 11.6, Gln 3.5, mI 6, GABA 1.2 mM); at 11.7 T citric acid, 50 mM.
    pub fn default_phantom(self) -> Phantom {
        let (m, c): (Vec<&str>, Vec<f64>) = match self {
            ConsoleKind::Clinical3T => [
                ("NAA", 12.0),
                ("Cr", 4.5),
                ("PCr", 3.5),
                ("PCh", 1.0),
                ("GPC", 0.7),
                ("Glu", 11.6),
                ("Gln", 3.5),
                ("mI", 6.0),
                ("GABA", 1.2),
            ]
            .into_iter()
            .unzip(),
            ConsoleKind::Spectrometer11T7 => (vec!["Cit"], vec![50.0]),
        };
        Phantom {
            metabolites: m.into_iter().map(String::from).collect(),
            concentrations: c,
        }
    }
}

/// A console with hidden hardware: the phantom through the session's sequence under the
/// [`HiddenTruth`] (module doc).
pub struct SimulatedConsole {
    profile: ConsoleProfile,
    truth: HiddenTruth,
    calibrator: Calibrator,
    noise: NoiseSource,
    noise_sd: f64,
    reference_peak: f64,
}

impl std::fmt::Debug for SimulatedConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedConsole")
            .field("id", &self.profile.id)
            .field("truth", &self.truth)
            .field("noise_sd", &self.noise_sd)
            .finish_non_exhaustive()
    }
}

impl SimulatedConsole {
    /// A console declaring `profile`, measuring `phantom` (a design problem whose molecules,
    /// concentrations, sequence, designed-pulse slot and nominal linewidth are the phantom's;
    /// field and acquisition come from the profile) with hidden `truth`, at `snr` per transient
    /// (module doc; `None` = noiseless) and noise seed `seed`.
    pub fn new(
        profile: ConsoleProfile,
        mut phantom: ProblemSpec,
        truth: HiddenTruth,
        snr: Option<f64>,
        seed: u64,
    ) -> Result<SimulatedConsole, HilError> {
        profile.validate().map_err(HilError::from)?;
        truth.validate()?;
        if let Some(s) = snr
            && !(s.is_finite() && s > 0.0)
        {
            return Err(HilError::invalid("snr", s, "must be finite and > 0"));
        }
        phantom.field = format!("{}MHz", profile.f0_hz * 1e-6);
        phantom.acquisition.points = profile.sample_count;
        phantom.acquisition.dwell_ms = profile.dwell_s * 1e3;
        let problem = DesignProblem::build(phantom)?;
        let mut calibrator = Calibrator::new(&problem)?;
        let (n, dt) = (calibrator.segments(), calibrator.dt());
        let a = 1.0 / (4.0 * n as f64 * dt);
        let reference = calibrator.predict(&HardwareModel::NOMINAL, &vec![a; n], &vec![0.0; n])?;
        let spectrum = SpectrumPlan::new(reference.len())?.spectrum(&reference)?;
        let reference_peak = spectrum.iter().map(|z| z.norm()).fold(0.0, f64::max);
        let m = reference.len() as f64;
        let noise_sd = snr.map_or(0.0, |s| reference_peak / (s * (m - 0.75).sqrt()));
        Ok(SimulatedConsole {
            profile,
            truth,
            calibrator,
            noise: NoiseSource::new(seed),
            noise_sd,
            reference_peak,
        })
    }

    /// The hidden truth.
    pub fn truth(&self) -> &HiddenTruth {
        &self.truth
    }

    /// Noise SD per real component of one transient's FID sample.
    pub fn noise_sd(&self) -> f64 {
        self.noise_sd
    }

    /// Peak height P of the reference spectrum (module doc).
    pub fn reference_peak(&self) -> f64 {
        self.reference_peak
    }

    /// Segments of the designed pulse the console plays.
    pub fn segments(&self) -> usize {
        self.calibrator.segments()
    }

    /// Segment duration (s) of the designed pulse.
    pub fn dt(&self) -> f64 {
        self.calibrator.dt()
    }

    /// The noise-free FID at session time `t_s` (the whole chain but the noise).
    pub fn noiseless(
        &mut self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
        t_s: f64,
    ) -> Result<Vec<C64>, HilError> {
        let own = self.calibrator.dt();
        if !(dt.is_finite() && (dt - own).abs() <= 1e-9 * own) {
            return Err(HilError::invalid(
                "waveform dt",
                dt,
                format!("the session's pulse raster is {own} s"),
            ));
        }
        if !t_s.is_finite() {
            return Err(HilError::invalid("t_s", t_s, "must be finite"));
        }
        let (tx, ty) = self.truth.transmit(ux, uy, dt)?;
        Ok(self
            .calibrator
            .predict(&self.truth.model_at(t_s), &tx, &ty)?)
    }
}

impl ConsolePhysics for SimulatedConsole {
    fn profile(&self) -> &ConsoleProfile {
        &self.profile
    }

    fn acquire(
        &mut self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
        averages: u32,
        t_s: f64,
    ) -> Result<Vec<C64>, HilError> {
        let mut fid = self.noiseless(ux, uy, dt, t_s)?;
        let sd = self.noise_sd / f64::from(averages.max(1)).sqrt();
        if sd > 0.0 {
            for z in &mut fid {
                *z += self.noise.sample(sd);
            }
        }
        Ok(fid)
    }
}
