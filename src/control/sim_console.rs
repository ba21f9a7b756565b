//! A simulated console (sans-IO): the hidden hardware truth of a hardware-in-the-loop run.
//! Given the waveform the daemon sent, it returns the FID a real console would measure —
//! the phantom's mixture through the sequence under the true B1 scale, B0 offset, receiver
//! phase, linewidth, amplitude and amplifier compression, plus seeded complex Gaussian noise
//! (the same seed gives the same FIDs on every machine). Used by tests and by the main job
//! (`spinloop run`), which runs the daemon against it.

use num_complex::Complex64 as C64;

use super::ConsoleProfile;
use crate::calibrate::{Calibrator, HardwareModel};
use crate::design::problem::{DesignProblem, ProblemSpec};
use crate::physics::PhysicsError;
use crate::spectrum::processing::NoiseSource;

/// A console with hidden hardware.
pub struct SimConsole {
    /// What it declares in its hello.
    pub profile: ConsoleProfile,
    /// The hidden truth.
    pub truth: HardwareModel,
    /// Noise SD per complex component of one transient.
    pub noise_sd: f64,
    calibrator: Calibrator,
    noise: NoiseSource,
}

impl std::fmt::Debug for SimConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConsole")
            .field("id", &self.profile.id)
            .field("truth", &self.truth)
            .finish_non_exhaustive()
    }
}

impl SimConsole {
    /// A console playing `phantom`'s sequence on its metabolites (the problem's field,
    /// acquisition and designed-pulse slot are taken from `profile`).
    pub fn new(
        profile: ConsoleProfile,
        mut phantom: ProblemSpec,
        truth: HardwareModel,
        noise_sd: f64,
        seed: u64,
    ) -> Result<SimConsole, PhysicsError> {
        profile.validate()?;
        if !(noise_sd.is_finite() && noise_sd >= 0.0) {
            return Err(PhysicsError::invalid(
                "noise_sd",
                noise_sd,
                "must be finite and ≥ 0",
            ));
        }
        phantom.field = format!("{}MHz", profile.f0_hz * 1e-6);
        phantom.acquisition.points = profile.sample_count;
        phantom.acquisition.dwell_ms = profile.dwell_s * 1e3;
        let problem = DesignProblem::build(phantom)?;
        let calibrator = Calibrator::new(&problem)
            .map_err(|e| PhysicsError::invalid("phantom", "calibration model", e.to_string()))?;
        Ok(SimConsole {
            profile,
            truth,
            noise_sd,
            calibrator,
            noise: NoiseSource::new(seed),
        })
    }

    /// Plays a waveform and returns the averaged FID (noise SD / √averages).
    pub fn acquire(
        &mut self,
        ux: &[f64],
        uy: &[f64],
        averages: u32,
    ) -> Result<Vec<C64>, PhysicsError> {
        let mut fid = self
            .calibrator
            .predict(&self.truth, ux, uy)
            .map_err(|e| PhysicsError::Numerical(e.to_string()))?;
        let sd = self.noise_sd / f64::from(averages.max(1)).sqrt();
        if sd > 0.0 {
            for x in &mut fid {
                *x += self.noise.sample(sd);
            }
        }
        Ok(fid)
    }
}
