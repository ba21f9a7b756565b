//! The safety interlock every outgoing waveform passes; nothing bypasses it.
//!
//! This module owns the console's declared limits ([`ConsoleLimits`]), the unchecked
//! [`Waveform`] an optimizer proposes, the [`Interlock`] that checks it, and the
//! [`ApprovedWaveform`] it hands back. It is sans-IO: no sockets, no clocks — the caller passes
//! the time of each play (`now_s`, seconds on any monotone clock of its choosing).
//!
//! # What is checked
//! [`Interlock::approve`] checks a waveform against the console's limits and reports **every**
//! violation it finds, each with its value and its limit ([`SafetyError::Rejected`]):
//! - sizes: `ux` and `uy` of one length, at least one sample; every sample finite;
//! - `dt` finite and > 0 and an integer multiple of the RF raster;
//! - peak B1: max_k |u_k| ≤ `peak_b1_hz`; energy Σ_k |u_k|²·dt ≤ `max_energy_hz2s`;
//! - duration N·dt ≤ `max_duration_s`; the TR finite and > 0, duration ≤ TR and duty cycle
//!   duration/TR ≤ `max_duty_cycle`;
//! - optionally a rolling-window average-power (SAR proxy) limit: the energy of every play
//!   approved in the last `window_s` seconds, this one included, ≤ `max_energy_hz2s`.
//!
//! The per-waveform checks are those of the design module
//! ([`HardwareLimits::waveform_violations`] and [`HardwareLimits::check_design`], with their
//! tolerances [`LIMIT_SLACK`] on peak and energy and [`TIMING_TOLERANCE`](crate::design::constraints::TIMING_TOLERANCE) on timings); this
//! module adds the rolling window and the guarantee that nothing leaves unchecked.
//!
//! Units: samples in Hz (γB1/2π), times in s, energy in Hz²·s.
//!
//! # Nothing bypasses it
//! Every API that sends a waveform to a console takes an [`ApprovedWaveform`], and the only
//! way to obtain one is [`Interlock::approve`]: its fields are private, it has no public
//! constructor, it is neither `Deserialize` nor `Clone` (a clone would be a second play that
//! the rolling window never saw), and the interlock never alters the samples it approves.
//! ```
//! use spinloop::safety::{ConsoleLimits, Interlock, Waveform};
//! let limits = ConsoleLimits {
//!     peak_b1_hz: 1000.0,
//!     max_energy_hz2s: 500.0,
//!     max_duration_s: 0.01,
//!     raster_s: 1e-5,
//!     max_duty_cycle: 0.1,
//!     window: None,
//! };
//! let mut interlock = Interlock::new(limits)?;
//! let w = Waveform { id: 7, dt: 1e-5, ux: vec![500.0; 100], uy: vec![0.0; 100] };
//! let approved = interlock.approve(w, 0.1, 0.0)?;
//! assert_eq!(approved.id(), 7);
//! assert_eq!(approved.ux(), &[500.0; 100][..]);
//! # Ok::<(), spinloop::safety::SafetyError>(())
//! ```
//! Building one by hand does not compile (its fields are private):
//! ```compile_fail
//! use spinloop::safety::{ApprovedWaveform, Waveform};
//! let waveform = Waveform { id: 1, dt: 1e-5, ux: vec![1e9], uy: vec![0.0] };
//! let forged = ApprovedWaveform {
//!     waveform, tr_s: 1.0, approved_at_s: 0.0, energy_hz2s: 0.0, peak_hz: 0.0,
//! };
//! ```
//! nor does reading one from the wire:
//! ```compile_fail
//! use spinloop::safety::ApprovedWaveform;
//! let forged: ApprovedWaveform = serde_json::from_str("{}").unwrap();
//! ```
//! nor copying one to play it twice:
//! ```compile_fail
//! fn twice(a: &spinloop::safety::ApprovedWaveform) -> spinloop::safety::ApprovedWaveform {
//!     a.clone()
//! }
//! ```
//!
//! # Time and the rolling window
//! Each approval is recorded as a play at `now_s`. A play at t counts against the window at
//! time `now` while `now − t < window_s`, so it stops counting exactly `window_s` seconds after
//! it was approved. Time only moves forward: a `now_s` earlier than the latest one seen is
//! [`SafetyError::TimeWentBackwards`] (equal times are allowed), a non-finite one is
//! [`SafetyError::InvalidTime`]; neither changes the state. A rejected waveform is not a play
//! and uses no budget, but its (valid) time still advances the clock.
//!
//! # New limits
//! [`Interlock::set_limits`] (a new hello from the console) is conservative: the clock and the
//! recorded plays are kept — energy already delivered still counts, so a console cannot refill
//! its budget by saying hello again. Plays are only remembered for the window in force, so when
//! the new window is longer than the old one (or there was none), the interlock cannot know
//! what was played before its memory begins; it then assumes the worst, a full window budget
//! spent at the latest time seen, which blocks window-limited approvals for one new window.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::design::constraints::{HardwareLimits, LIMIT_SLACK, energy, peak};
use crate::design::parameterization::{ParamKind, Parameterization};
use crate::physics::PhysicsError;

/// A rolling-window average-power (SAR proxy) limit: the summed energy of the plays in any
/// window of `window_s` seconds must stay ≤ `max_energy_hz2s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyWindow {
    /// Window length W (s, finite, > 0).
    pub window_s: f64,
    /// Largest Σ energy over the plays of one window (Hz²·s, finite, > 0).
    pub max_energy_hz2s: f64,
}

/// The hard limits a console declares in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLimits {
    /// Peak B1 (Hz, γB1/2π): every sample must satisfy |u_k| ≤ `peak_b1_hz`.
    pub peak_b1_hz: f64,
    /// Largest energy Σ_k |u_k|²·dt of one waveform (Hz²·s).
    pub max_energy_hz2s: f64,
    /// Longest waveform (s).
    pub max_duration_s: f64,
    /// RF raster (s): `dt` must be an integer multiple of it.
    pub raster_s: f64,
    /// Largest duration / TR, in (0, 1].
    pub max_duty_cycle: f64,
    /// Optional rolling-window energy (average-power) limit.
    #[serde(default)]
    pub window: Option<EnergyWindow>,
}

impl ConsoleLimits {
    /// The per-waveform part of these limits as the design module's [`HardwareLimits`].
    pub fn hardware(&self) -> HardwareLimits {
        HardwareLimits {
            peak_b1_hz: self.peak_b1_hz,
            max_energy_hz2s: Some(self.max_energy_hz2s),
            max_duration_s: self.max_duration_s,
            raster_s: self.raster_s,
            max_duty_cycle: Some(self.max_duty_cycle),
        }
    }

    /// Checks the limits themselves ([`HardwareLimits::validate`]; the window length and
    /// energy, when given, finite and > 0).
    pub fn validate(&self) -> Result<(), SafetyError> {
        self.hardware()
            .validate()
            .map_err(SafetyError::InvalidLimits)?;
        if let Some(w) = self.window {
            for (field, v) in [
                ("limits.window.window_s", w.window_s),
                ("limits.window.max_energy_hz2s", w.max_energy_hz2s),
            ] {
                crate::physics::error::positive(field, v).map_err(SafetyError::InvalidLimits)?;
            }
        }
        Ok(())
    }
}

/// A waveform proposed for sending, not yet checked: `ux`, `uy` in Hz, one sample per raster
/// segment of duration `dt` (s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waveform {
    /// The id the console tags its acquisitions with.
    pub id: u64,
    /// Segment duration (s).
    pub dt: f64,
    /// x samples (Hz).
    pub ux: Vec<f64>,
    /// y samples (Hz).
    pub uy: Vec<f64>,
}

/// A waveform the [`Interlock`] approved: within every limit, and recorded as a play.
///
/// Only [`Interlock::approve`] builds one (see the module documentation); its samples are
/// exactly those proposed.
#[derive(Debug, PartialEq)]
pub struct ApprovedWaveform {
    waveform: Waveform,
    tr_s: f64,
    approved_at_s: f64,
    energy_hz2s: f64,
    peak_hz: f64,
}

impl ApprovedWaveform {
    /// The waveform id.
    pub fn id(&self) -> u64 {
        self.waveform.id
    }

    /// Segment duration (s).
    pub fn dt(&self) -> f64 {
        self.waveform.dt
    }

    /// x samples (Hz).
    pub fn ux(&self) -> &[f64] {
        &self.waveform.ux
    }

    /// y samples (Hz).
    pub fn uy(&self) -> &[f64] {
        &self.waveform.uy
    }

    /// The approved waveform (read only).
    pub fn waveform(&self) -> &Waveform {
        &self.waveform
    }

    /// Duration N·dt (s).
    pub fn duration_s(&self) -> f64 {
        self.waveform.ux.len() as f64 * self.waveform.dt
    }

    /// The TR it was approved for (s).
    pub fn tr_s(&self) -> f64 {
        self.tr_s
    }

    /// The time of the play it was approved as (s).
    pub fn approved_at_s(&self) -> f64 {
        self.approved_at_s
    }

    /// Its energy Σ|u|²·dt (Hz²·s).
    pub fn energy_hz2s(&self) -> f64 {
        self.energy_hz2s
    }

    /// Its peak max|u| (Hz).
    pub fn peak_hz(&self) -> f64 {
        self.peak_hz
    }

    /// Gives the samples back once sent (the result is a plain, unapproved [`Waveform`]).
    pub fn into_waveform(self) -> Waveform {
        self.waveform
    }
}

/// One broken limit, with its value and its limit in its message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Violation {
    /// Sizes, emptiness, finite samples, dt domain, peak B1 or energy
    /// ([`HardwareLimits::waveform_violations`]).
    #[error("{0}")]
    Waveform(PhysicsError),
    /// Duration over the maximum.
    #[error("duration: {0}")]
    Duration(PhysicsError),
    /// dt off the RF raster.
    #[error("raster: {0}")]
    Raster(PhysicsError),
    /// TR invalid, duration over TR, or duty cycle over the maximum.
    #[error("duty cycle: {0}")]
    DutyCycle(PhysicsError),
    /// The rolling-window energy, this play included, over its limit.
    #[error(
        "rolling-window energy {energy_hz2s} Hz²·s (this play {play_hz2s} Hz²·s + {earlier} \
         earlier play(s) in the last {window_s} s) exceeds the limit {max_hz2s} Hz²·s"
    )]
    WindowEnergy {
        /// Σ energy over the window, this play included (Hz²·s).
        energy_hz2s: f64,
        /// This play's energy (Hz²·s).
        play_hz2s: f64,
        /// Number of earlier plays still in the window.
        earlier: usize,
        /// The window length (s).
        window_s: f64,
        /// The limit (Hz²·s).
        max_hz2s: f64,
    },
}

/// Why the interlock refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SafetyError {
    /// The console's limits are invalid.
    #[error("invalid console limits: {0}")]
    InvalidLimits(PhysicsError),
    /// `now_s` is not finite.
    #[error("invalid time now_s = {0} s: must be finite")]
    InvalidTime(f64),
    /// `now_s` is earlier than the latest time seen.
    #[error("time went backwards: now_s = {now_s} s is before the latest time seen {latest_s} s")]
    TimeWentBackwards {
        /// The time given (s).
        now_s: f64,
        /// The latest time seen before (s).
        latest_s: f64,
    },
    /// The waveform breaks one or more limits; all of them are listed.
    #[error("waveform {id} rejected, {} violation(s): {}", .violations.len(), Joined(.violations))]
    Rejected {
        /// The waveform id.
        id: u64,
        /// Every violation found (never empty).
        violations: Vec<Violation>,
    },
}

/// Displays violations joined by "; ".
struct Joined<'a>(&'a [Violation]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Wraps a design-module error into the violation of one timing check.
type ViolationKind = fn(PhysicsError) -> Violation;

/// One recorded play: its time (s) and energy (Hz²·s).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Play {
    at_s: f64,
    energy_hz2s: f64,
}

/// The interlock: a console's limits and the plays it approved (for the rolling window).
#[derive(Debug, Clone)]
pub struct Interlock {
    limits: ConsoleLimits,
    plays: VecDeque<Play>,
    latest_s: Option<f64>,
}

impl Interlock {
    /// An interlock for a console's (validated) limits, with no plays yet.
    pub fn new(limits: ConsoleLimits) -> Result<Self, SafetyError> {
        limits.validate()?;
        Ok(Interlock {
            limits,
            plays: VecDeque::new(),
            latest_s: None,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &ConsoleLimits {
        &self.limits
    }

    /// The latest time seen (s), if any.
    pub fn latest_time_s(&self) -> Option<f64> {
        self.latest_s
    }

    /// Replaces the limits (a new hello). Invalid limits are refused and the old ones stay.
    /// Conservative (see the module documentation): the clock and the plays are kept, and a
    /// window longer than the one in force (or a first window) after any time was seen is
    /// charged a full budget at the latest time seen.
    pub fn set_limits(&mut self, limits: ConsoleLimits) -> Result<(), SafetyError> {
        limits.validate()?;
        let old = self.limits.window.map(|w| w.window_s);
        if let (Some(new), Some(latest)) = (limits.window, self.latest_s)
            && old.is_none_or(|o| new.window_s > o)
        {
            self.plays.push_back(Play {
                at_s: latest,
                energy_hz2s: new.max_energy_hz2s,
            });
        }
        self.limits = limits;
        Ok(())
    }

    /// Σ energy (Hz²·s) of the recorded plays still in the window at `now_s` (0 without a
    /// window limit), and how many they are. Does not change the state.
    pub fn window_energy(&self, now_s: f64) -> (f64, usize) {
        match self.limits.window {
            None => (0.0, 0),
            Some(w) => self
                .plays
                .iter()
                .filter(|p| now_s - p.at_s < w.window_s)
                .fold((0.0, 0), |(e, n), p| (e + p.energy_hz2s, n + 1)),
        }
    }

    /// Checks `w`, played with repetition time `tr_s` at time `now_s`, against every limit
    /// (see the module documentation). Ok: the waveform, unaltered, as an
    /// [`ApprovedWaveform`], recorded as a play at `now_s`. Err: every violation, and no play
    /// is recorded. Never panics.
    pub fn approve(
        &mut self,
        w: Waveform,
        tr_s: f64,
        now_s: f64,
    ) -> Result<ApprovedWaveform, SafetyError> {
        if !now_s.is_finite() {
            return Err(SafetyError::InvalidTime(now_s));
        }
        if let Some(latest_s) = self.latest_s
            && now_s < latest_s
        {
            return Err(SafetyError::TimeWentBackwards { now_s, latest_s });
        }
        self.latest_s = Some(now_s);
        if let Some(win) = self.limits.window {
            while self
                .plays
                .front()
                .is_some_and(|p| now_s - p.at_s >= win.window_s)
            {
                self.plays.pop_front();
            }
        } else {
            self.plays.clear();
        }

        let mut violations = self.waveform_violations(&w, tr_s);
        let e = energy(&w.ux, &w.uy, w.dt);
        if let Some(win) = self.limits.window
            && w.ux.len() == w.uy.len()
            && e.is_finite()
            && e >= 0.0
        {
            let (earlier_e, earlier) = self.window_energy(now_s);
            let total = earlier_e + e;
            // `total` is finite or +∞ (a sum of finite, non-negative energies): never NaN.
            if total > win.max_energy_hz2s * (1.0 + LIMIT_SLACK) {
                violations.push(Violation::WindowEnergy {
                    energy_hz2s: total,
                    play_hz2s: e,
                    earlier,
                    window_s: win.window_s,
                    max_hz2s: win.max_energy_hz2s,
                });
            }
        }
        if !violations.is_empty() {
            return Err(SafetyError::Rejected {
                id: w.id,
                violations,
            });
        }
        if self.limits.window.is_some() && e > 0.0 {
            self.plays.push_back(Play {
                at_s: now_s,
                energy_hz2s: e,
            });
        }
        let peak_hz = peak(&w.ux, &w.uy);
        Ok(ApprovedWaveform {
            waveform: w,
            tr_s,
            approved_at_s: now_s,
            energy_hz2s: e,
            peak_hz,
        })
    }

    /// The per-waveform violations, each check of the design module run on its own so that
    /// all of them are reported (the design check stops at the first timing violation).
    fn waveform_violations(&self, w: &Waveform, tr_s: f64) -> Vec<Violation> {
        let hw = self.limits.hardware();
        let dt_ok = w.dt.is_finite() && w.dt > 0.0;
        // Samples, sizes, peak, energy and the dt domain: the timing limits neutralized
        // (raster = dt, no duration or duty limit) so that they are checked separately below.
        let samples = HardwareLimits {
            max_duration_s: f64::MAX,
            raster_s: if dt_ok { w.dt } else { hw.raster_s },
            max_duty_cycle: None,
            ..hw
        };
        let mut out: Vec<Violation> = samples
            .waveform_violations(&w.ux, &w.uy, w.dt, None)
            .into_iter()
            .map(Violation::Waveform)
            .collect();
        let n = w.ux.len();
        if !dt_ok || n == 0 || n != w.uy.len() {
            return out;
        }
        // Timing: each limit alone through `check_design` on a parameterization of the same
        // segments and dt (its peak set to the limit, so only timing is judged).
        let p = Parameterization {
            segments: n,
            dt: w.dt,
            peak_hz: hw.peak_b1_hz,
            kind: ParamKind::Cartesian,
            fixed_edges: 0,
        };
        let only =
            |max_duration_s: f64, raster_s: f64, max_duty_cycle: Option<f64>| HardwareLimits {
                max_duration_s,
                raster_s,
                max_duty_cycle,
                ..hw
            };
        let checks: [(ViolationKind, HardwareLimits, Option<f64>); 3] = [
            (
                Violation::Duration,
                only(hw.max_duration_s, w.dt, None),
                None,
            ),
            (Violation::Raster, only(f64::MAX, hw.raster_s, None), None),
            (
                Violation::DutyCycle,
                only(f64::MAX, w.dt, hw.max_duty_cycle),
                Some(tr_s),
            ),
        ];
        for (wrap, limits, tr) in checks {
            if let Err(e) = limits.check_design(&p, tr) {
                out.push(wrap(e));
            }
        }
        out
    }
}
