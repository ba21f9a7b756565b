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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// A 3 T console measuring an acetate singlet (1.904 ppm) with `truth` lines appended.
    fn console(truth: &str, snr: Option<f64>, seed: u64) -> SimulatedConsole {
        let snr = snr.map_or_else(String::new, |s| format!("snr = {s}\n"));
        let text = format!(
            r#"seed = {seed}
{snr}
[console]
kind = "3t-clinical"
[truth]
{truth}
[phantom]
metabolites = ["Ace"]
concentrations = [10.0]
[session]
sequence = {{ kind = "pulse_acquire" }}
pulse = {{ segments = 20, dt_s = 20e-6 }}
[[session.objective]]
kind = "enhancement"
metabolite = "Ace"
window_ppm = [1.8, 2.0]
"#
        );
        Scenario::from_toml(&text, "test.toml")
            .expect("scenario")
            .console()
            .expect("console")
    }

    /// A 90° hard pulse of the console's designed length.
    fn hard(c: &SimulatedConsole, phase: f64) -> (Vec<f64>, Vec<f64>, f64) {
        let n = c.segments();
        let a = 1.0 / (4.0 * n as f64 * c.dt());
        (vec![a * phase.cos(); n], vec![a * phase.sin(); n], c.dt())
    }

    fn max_dev(a: &[C64], b: &[C64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).norm())
            .fold(0.0, f64::max)
    }

    fn max_abs(a: &[C64]) -> f64 {
        a.iter().map(|x| x.norm()).fold(0.0, f64::max)
    }

    #[test]
    fn a_receiver_phase_rotates_the_fid_exactly() {
        let phi = 0.83;
        let mut a = console("", None, 1);
        let mut b = console(&format!("rx_phase_rad = {phi}"), None, 1);
        let (ux, uy, dt) = hard(&a, 0.0);
        let fa = a.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        let fb = b.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        let rot: Vec<C64> = fa.iter().map(|z| z * C64::from_polar(1.0, phi)).collect();
        assert!(max_dev(&fb, &rot) <= 1e-13 * max_abs(&fa));
    }

    #[test]
    fn b0_drift_shifts_the_line_by_the_expected_frequency() {
        let drift = 0.4; // Hz/s
        let mut c = console(
            &format!("b0_offset_hz = 1.5\nb0_drift_hz_per_s = {drift}"),
            None,
            1,
        );
        let (ux, uy, dt) = hard(&c, 0.0);
        let (t0, t1) = (0.0, 25.0); // 10 Hz apart
        let f0 = c.acquire(&ux, &uy, dt, 1, t0).expect("fid");
        let f1 = c.acquire(&ux, &uy, dt, 1, t1).expect("fid");
        // A singlet: s(t) = A·e^{i2πνt}·e^{−πlw·t}; the ratio of the two FIDs turns at the
        // frequency difference ν̇0·(t1 − t0), sample to sample.
        let dwell = c.profile().dwell_s;
        let expected = 2.0 * std::f64::consts::PI * drift * (t1 - t0) * dwell;
        for k in 0..200 {
            let r0 = f1[k] / f0[k];
            let r1 = f1[k + 1] / f0[k + 1];
            let step = (r1 / r0).arg();
            assert!(
                (step - expected).abs() < 1e-9,
                "k {k}: {step} vs {expected}"
            );
        }
        // And B0(t) is exactly a console with that constant offset.
        let mut k = console(&format!("b0_offset_hz = {}", 1.5 + drift * t1), None, 1);
        let fk = k.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        assert!(max_dev(&fk, &f1) <= 1e-12 * max_abs(&fk));
    }

    #[test]
    fn zero_group_delay_and_linear_amplifier_are_the_plain_model() {
        let mut c = console("tx_group_delay_s = 0.0", None, 1);
        let (ux, uy, dt) = hard(&c, 0.4);
        let f = c.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        let mut plain = console("", None, 1);
        let p = plain
            .calibrator
            .predict(&HardwareModel::NOMINAL, &ux, &uy)
            .expect("predict");
        assert_eq!(f, p);
    }

    #[test]
    fn am_pm_of_a_constant_amplitude_pulse_is_an_rf_phase_shift() {
        // Every sample gets the same phase Φ(a): the pulse is the same pulse with its phase
        // advanced by Φ — exactly what a pulse played at RF phase Φ gives.
        let (pm_max, pm_sat) = (0.6, 400.0);
        let mut c = console(
            &format!("am_pm_max_rad = {pm_max}\nam_pm_sat_hz = {pm_sat}"),
            None,
            1,
        );
        let mut plain = console("", None, 1);
        let (ux, uy, dt) = hard(&c, 0.0);
        let a = ux[0];
        let q = (a / pm_sat) * (a / pm_sat);
        let phi = pm_max * q / (1.0 + q);
        let f = c.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        let (px, py, _) = hard(&plain, phi);
        let g = plain.acquire(&px, &py, dt, 1, 0.0).expect("fid");
        assert!(max_dev(&f, &g) <= 1e-12 * max_abs(&g));
        // and differs from the undistorted pulse by a phase only (for a singlet: a rotation
        // of the transverse magnetization about z by Φ).
        let h = plain.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        let rot = (f[10] / h[10]).arg();
        assert!((rot.abs() - phi).abs() < 1e-9, "{rot} vs ±{phi}");
        assert!(((f[10].norm() - h[10].norm()) / h[10].norm()).abs() < 1e-12);
    }

    #[test]
    fn snr_sets_the_noise_sd_and_the_measured_sd_matches() {
        let snr = 50.0;
        let mut c = console("", Some(snr), 7);
        let m = c.profile().sample_count as f64;
        assert!((c.reference_peak() / (c.noise_sd() * (m - 0.75).sqrt()) - snr).abs() < 1e-9 * snr);
        let mut clean = console("", None, 7);
        let (ux, uy, dt) = hard(&c, 0.0);
        let truth = clean.acquire(&ux, &uy, dt, 1, 0.0).expect("fid");
        for averages in [1u32, 4] {
            let mut sum2 = 0.0;
            let mut n = 0usize;
            for _ in 0..8 {
                let f = c.acquire(&ux, &uy, dt, averages, 0.0).expect("fid");
                for (x, t) in f.iter().zip(&truth) {
                    let d = x - t;
                    sum2 += d.re * d.re + d.im * d.im;
                    n += 2;
                }
            }
            let sd = (sum2 / n as f64).sqrt();
            let want = c.noise_sd() / f64::from(averages).sqrt();
            // Relative standard error of an SD estimate from n samples: 1/√(2n) ≈ 0.55 %.
            let rel = 4.0 / (2.0 * n as f64).sqrt();
            assert!((sd / want - 1.0).abs() < rel, "sd {sd} vs {want} (±{rel})");
        }
    }

    #[test]
    fn the_same_seed_gives_bit_identical_fids() {
        let truth =
            "b1_scale = 0.9\nb0_drift_hz_per_s = 0.2\nam_pm_max_rad = 0.1\nam_pm_sat_hz = 500.0";
        let mut a = console(truth, Some(100.0), 99);
        let mut b = console(truth, Some(100.0), 99);
        let mut other = console(truth, Some(100.0), 100);
        let (ux, uy, dt) = hard(&a, 0.2);
        for k in 0..3 {
            let t = 2.0 * f64::from(k);
            let fa = a.acquire(&ux, &uy, dt, 1, t).expect("fid");
            let fb = b.acquire(&ux, &uy, dt, 1, t).expect("fid");
            let fo = other.acquire(&ux, &uy, dt, 1, t).expect("fid");
            let bits = |f: &[C64]| -> Vec<(u64, u64)> {
                f.iter().map(|z| (z.re.to_bits(), z.im.to_bits())).collect()
            };
            assert_eq!(bits(&fa), bits(&fb));
            assert_ne!(bits(&fa), bits(&fo));
        }
    }

    #[test]
    fn a_wrong_raster_or_length_is_an_error_not_a_panic() {
        let mut c = console("", None, 1);
        let (ux, uy, dt) = hard(&c, 0.0);
        assert!(c.acquire(&ux, &uy, dt * 2.0, 1, 0.0).is_err());
        assert!(c.acquire(&ux[1..], &uy[1..], dt, 1, 0.0).is_err());
        let mut bad = ux.clone();
        bad[3] = f64::NAN;
        assert!(c.acquire(&bad, &uy, dt, 1, 0.0).is_err());
    }
}
