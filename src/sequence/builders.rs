//! Sequence builders: pulse–acquire, spin echo, PRESS (TE1, TE2) and STEAM (TE, TM), each a
//! short function that reads like its diagram and compiles to a physics [`Experiment`].
//!
//! Timing: TE runs from the centre of the excitation pulse to the echo, where acquisition
//! starts; every pulse is centred on its nominal time, so each delay is the centre-to-centre
//! interval minus half of each neighbouring pulse. A delay that would be negative (TE shorter
//! than the pulses) is an error naming the interval.
//!
//! Coherence pathways are selected as ideal crushers would: a [`Block::Filter`] after every
//! pulse keeps the order of the wanted pathway (the detected order is −1; a 180° pulse maps p to
//! −p). Phases: excitation about y (Fz → Fx, so an on-resonance singlet gives a positive
//! absorption line), refocusing about x.

use std::f64::consts::{FRAC_PI_2, PI};

use super::shapes::Shape;
use crate::physics::error::{finite, positive};
use crate::physics::{Acquisition, Block, Experiment, PhysicsError};

/// How one pulse of a sequence is realized.
#[derive(Debug, Clone, PartialEq)]
pub enum PulseSpec {
    /// An ideal instantaneous rotation by `flip` about the axis at `phase` (rad).
    Ideal {
        /// Flip angle (rad).
        flip: f64,
        /// Phase (rad): 0 = x, π/2 = y.
        phase: f64,
    },
    /// A shaped pulse given as piecewise-constant controls (Hz) on a raster `dt` (s); the shape
    /// module scales shapes to a nominal flip and phase.
    Waveform {
        /// Raster (s).
        dt: f64,
        /// x controls (Hz).
        ux: Vec<f64>,
        /// y controls (Hz).
        uy: Vec<f64>,
    },
    /// A slice-selective shaped pulse: a waveform played under a gradient along spatial-grid
    /// axis `axis`, with `hz_per_unit` Hz of offset per unit of grid coordinate (see
    /// [`Block::SlicePulse`]).
    Slice {
        /// Raster (s).
        dt: f64,
        /// x controls (Hz).
        ux: Vec<f64>,
        /// y controls (Hz).
        uy: Vec<f64>,
        /// Grid axis of the slice gradient.
        axis: usize,
        /// Offset (Hz) per unit of grid coordinate.
        hz_per_unit: f64,
        /// Where the slice gradient's phase is undone (90° pulses need it; 180° pulses
        /// between crushers refocus their own).
        rephase: Rephase,
    },
}

/// The gradient lobe that undoes the phase a slice-selective pulse's own gradient leaves
/// across the slice. The lobe has half the pulse's gradient area with the opposite sign (the
/// rotation is taken to act at the pulse centre), played at twice the slice gradient for a
/// quarter of the pulse duration (rounded up to whole raster steps): a `Block::SlicePulse`
/// with zero RF. Its time counts (J evolution and chemical shift run during it), and it sits
/// outside the pulse, so the pulse stays centred on its nominal time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rephase {
    /// No lobe (refocusing pulses).
    None,
    /// A pre-phasing lobe before the pulse (a pulse that stores transverse magnetization,
    /// e.g. the second STEAM pulse).
    Before,
    /// A rephasing lobe after the pulse (excitation, the third STEAM pulse).
    After,
}

impl PulseSpec {
    /// Ideal 90° about y.
    pub fn ideal_excitation() -> PulseSpec {
        PulseSpec::Ideal {
            flip: FRAC_PI_2,
            phase: FRAC_PI_2,
        }
    }

    /// Ideal 90° about x (the second and third STEAM pulses).
    pub fn ideal_90x() -> PulseSpec {
        PulseSpec::Ideal {
            flip: FRAC_PI_2,
            phase: 0.0,
        }
    }

    /// Ideal 180° about x.
    pub fn ideal_refocusing() -> PulseSpec {
        PulseSpec::Ideal {
            flip: PI,
            phase: 0.0,
        }
    }

    /// A shaped pulse scaled to the nominal `flip` (linear definition, see
    /// [`Shape::peak_for_flip`]) and rotated to `phase` (rad).
    pub fn shaped(shape: &Shape, flip: f64, phase: f64) -> Result<PulseSpec, PhysicsError> {
        let peak = shape.peak_for_flip(flip)?;
        let (ux, uy) = shape.with_phase(phase)?.to_controls(peak);
        Ok(PulseSpec::Waveform {
            dt: shape.dt,
            ux,
            uy,
        })
    }

    /// A shaped pulse scaled to `flip` on resonance and then moved to `offset_hz` (a
    /// frequency-selective pulse, e.g. a MEGA editing pulse at 1.9 ppm).
    pub fn shaped_at(
        shape: &Shape,
        flip: f64,
        phase: f64,
        offset_hz: f64,
    ) -> Result<PulseSpec, PhysicsError> {
        let peak = shape.peak_for_flip(flip)?;
        let (ux, uy) = shape
            .with_phase(phase)?
            .with_offset(offset_hz)?
            .to_controls(peak);
        Ok(PulseSpec::Waveform {
            dt: shape.dt,
            ux,
            uy,
        })
    }

    /// A slice-selective pulse: `shape` scaled to `flip` on resonance, centred at `offset_hz`,
    /// selecting along grid axis `axis` a slice whose unit is the shape's bandwidth (so grid
    /// coordinate ±0.5 is the nominal slice edge).
    pub fn slice_selective(
        shape: &Shape,
        flip: f64,
        phase: f64,
        offset_hz: f64,
        axis: usize,
    ) -> Result<PulseSpec, PhysicsError> {
        let bw = shape.bandwidth_hz().ok_or_else(|| {
            PhysicsError::invalid(
                "slice-selective shape",
                &shape.name,
                "has no defined bandwidth (use a sinc, Gaussian or hard shape)",
            )
        })?;
        match PulseSpec::shaped_at(shape, flip, phase, offset_hz)? {
            PulseSpec::Waveform { dt, ux, uy } => Ok(PulseSpec::Slice {
                dt,
                ux,
                uy,
                axis,
                hz_per_unit: bw,
                rephase: Rephase::None,
            }),
            other => Ok(other),
        }
    }

    /// The same slice-selective pulse with the slice gradient set so that `bandwidth_hz` of
    /// offset spans one slice unit (e.g. the large-tip FWHM of [`Shape::profile_fwhm_hz`]);
    /// other pulses are returned unchanged.
    pub fn with_slice_bandwidth(mut self, bandwidth_hz: f64) -> Result<PulseSpec, PhysicsError> {
        positive("slice bandwidth_hz", bandwidth_hz)?;
        if let PulseSpec::Slice { hz_per_unit, .. } = &mut self {
            *hz_per_unit = bandwidth_hz;
        }
        Ok(self)
    }

    /// The same pulse with its slice gradient rephased as `rephase` says (slice-selective
    /// pulses only; other pulses are returned unchanged).
    pub fn with_rephase(mut self, rephase: Rephase) -> PulseSpec {
        if let PulseSpec::Slice { rephase: r, .. } = &mut self {
            *r = rephase;
        }
        self
    }

    /// The gradient lobe of a rephased slice-selective pulse, if any: where it goes, the block
    /// and its duration (s).
    fn lobe(&self) -> Option<(Rephase, Block, f64)> {
        match self {
            PulseSpec::Slice {
                dt,
                ux,
                axis,
                hz_per_unit,
                rephase,
                ..
            } if *rephase != Rephase::None && !ux.is_empty() => {
                let n = ux.len();
                let m = n.div_ceil(4);
                Some((
                    *rephase,
                    Block::SlicePulse {
                        dt: *dt,
                        ux: vec![0.0; m],
                        uy: vec![0.0; m],
                        axis: *axis,
                        hz_per_unit: -hz_per_unit * (n as f64 / 2.0) / m as f64,
                    },
                    dt * m as f64,
                ))
            }
            _ => None,
        }
    }

    /// Duration (s): 0 for an ideal pulse.
    pub fn duration(&self) -> f64 {
        match self {
            PulseSpec::Ideal { .. } => 0.0,
            PulseSpec::Waveform { dt, ux, .. } | PulseSpec::Slice { dt, ux, .. } => {
                dt * ux.len() as f64
            }
        }
    }

    fn block(&self) -> Block {
        match self {
            PulseSpec::Ideal { flip, phase } => Block::Hard {
                flip: *flip,
                phase: *phase,
            },
            PulseSpec::Waveform { dt, ux, uy } => Block::Pulse {
                dt: *dt,
                ux: ux.clone(),
                uy: uy.clone(),
            },
            PulseSpec::Slice {
                dt,
                ux,
                uy,
                axis,
                hz_per_unit,
                ..
            } => Block::SlicePulse {
                dt: *dt,
                ux: ux.clone(),
                uy: uy.clone(),
                axis: *axis,
                hz_per_unit: *hz_per_unit,
            },
        }
    }
}

/// A named sequence with its timing, ready to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Name, e.g. `PRESS TE 30 ms`.
    pub name: String,
    /// Echo time (s); 0 for pulse–acquire.
    pub te: f64,
    /// The experiment.
    pub experiment: Experiment,
}

/// Incrementally lays out pulses at nominal centre times.
struct Timeline {
    blocks: Vec<Block>,
    /// Time (s) at which the last block ended.
    end: f64,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            blocks: Vec::new(),
            end: 0.0,
        }
    }

    /// Places `pulse` centred at `centre`, preceded by the delay that gets there (and by its
    /// pre-phasing lobe, or followed by its rephasing lobe, if it has one).
    fn pulse(&mut self, what: &str, pulse: &PulseSpec, centre: f64) -> Result<(), PhysicsError> {
        let start = centre - pulse.duration() / 2.0;
        let (before, after) = match pulse.lobe() {
            Some((Rephase::Before, block, d)) => (Some((block, d)), None),
            Some((_, block, d)) => (None, Some((block, d))),
            None => (None, None),
        };
        let lead = before.as_ref().map_or(0.0, |(_, d)| *d);
        self.delay_until(what, start - lead)?;
        self.blocks.extend(before.map(|(b, _)| b));
        self.blocks.push(pulse.block());
        self.end = start + pulse.duration();
        if let Some((block, d)) = after {
            self.blocks.push(block);
            self.end += d;
        }
        Ok(())
    }

    fn delay_until(&mut self, what: &str, t: f64) -> Result<(), PhysicsError> {
        let gap = t - self.end;
        if gap < -1e-12 {
            return Err(PhysicsError::invalid(
                what,
                format!("{:.6} ms", gap * 1e3),
                "the timing does not fit: the pulses overlap or TE is shorter than the pulses",
            ));
        }
        if gap > 0.0 {
            self.blocks.push(Block::Delay { duration: gap });
        }
        self.end = t;
        Ok(())
    }

    fn filter(&mut self, order: i32) {
        self.blocks.push(Block::Filter {
            orders: vec![order],
        });
    }

    fn finish(self, acquisition: Acquisition) -> Experiment {
        Experiment {
            blocks: self.blocks,
            acquisition,
        }
    }
}

fn check_time(field: &str, t: f64) -> Result<f64, PhysicsError> {
    finite(field, t)?;
    if t < 0.0 {
        return Err(PhysicsError::invalid(field, t, "must be >= 0"));
    }
    Ok(t)
}

/// Pulse–acquire: acquisition starts at the end of the excitation pulse.
pub fn pulse_acquire(excitation: &PulseSpec, acquisition: Acquisition) -> Sequence {
    Sequence {
        name: "pulse-acquire".into(),
        te: 0.0,
        experiment: Experiment {
            blocks: vec![excitation.block()],
            acquisition,
        },
    }
}

/// Spin echo 90 – TE/2 – 180 – TE/2 – acquire, pathway +1 → −1.
pub fn spin_echo(
    te: f64,
    excitation: &PulseSpec,
    refocusing: &PulseSpec,
    acquisition: Acquisition,
) -> Result<Sequence, PhysicsError> {
    check_time("TE", te)?;
    let mut tl = Timeline::new();
    let t0 = excitation.duration() / 2.0;
    tl.pulse("excitation", excitation, t0)?;
    tl.filter(1);
    tl.pulse("TE/2 (excitation to refocusing)", refocusing, t0 + te / 2.0)?;
    tl.filter(-1);
    tl.delay_until("TE/2 (refocusing to echo)", t0 + te)?;
    Ok(Sequence {
        name: format!("spin echo TE {:.1} ms", te * 1e3),
        te,
        experiment: tl.finish(acquisition),
    })
}

/// PRESS: 90 – TE1/2 – 180 – (TE1+TE2)/2 – 180 – TE2/2 – acquire; TE = TE1 + TE2, pathway
/// −1 → +1 → −1.
pub fn press(
    te1: f64,
    te2: f64,
    excitation: &PulseSpec,
    refocusing1: &PulseSpec,
    refocusing2: &PulseSpec,
    acquisition: Acquisition,
) -> Result<Sequence, PhysicsError> {
    let experiment = press_layout(
        te1,
        te2,
        excitation,
        [refocusing1, refocusing2],
        None,
        acquisition,
    )?;
    Ok(Sequence {
        name: format!(
            "PRESS TE {:.1} ms (TE1 {:.1}, TE2 {:.1})",
            (te1 + te2) * 1e3,
            te1 * 1e3,
            te2 * 1e3
        ),
        te: te1 + te2,
        experiment,
    })
}

/// MEGA-PRESS: PRESS (TE1, TE2) with two frequency-selective editing pulses in the second echo
/// period, centred midway between the refocusing pulses and midway between the second
/// refocusing pulse and the echo (the symmetric placement that refocuses the edited coupling).
/// Editing ON puts them on the coupling partner (GABA C3 at 1.9 ppm), OFF elsewhere; the
/// edited spectrum is ON − OFF.
#[allow(clippy::too_many_arguments)]
pub fn mega_press(
    te1: f64,
    te2: f64,
    excitation: &PulseSpec,
    refocusing1: &PulseSpec,
    refocusing2: &PulseSpec,
    editing: &PulseSpec,
    acquisition: Acquisition,
) -> Result<Sequence, PhysicsError> {
    let experiment = press_layout(
        te1,
        te2,
        excitation,
        [refocusing1, refocusing2],
        Some(editing),
        acquisition,
    )?;
    Ok(Sequence {
        name: format!("MEGA-PRESS TE {:.1} ms", (te1 + te2) * 1e3),
        te: te1 + te2,
        experiment,
    })
}

/// The PRESS timeline shared by [`press`] and [`mega_press`]: pulses at their centre times,
/// pathway filters −1 → +1 → −1 after excitation and refocusing, and (for MEGA) the editing
/// pulses midway in each half of the second echo period.
fn press_layout(
    te1: f64,
    te2: f64,
    excitation: &PulseSpec,
    [refocusing1, refocusing2]: [&PulseSpec; 2],
    editing: Option<&PulseSpec>,
    acquisition: Acquisition,
) -> Result<Experiment, PhysicsError> {
    check_time("TE1", te1)?;
    check_time("TE2", te2)?;
    let mut tl = Timeline::new();
    let t0 = excitation.duration() / 2.0;
    let (r1, r2, echo) = (t0 + te1 / 2.0, t0 + te1 + te2 / 2.0, t0 + te1 + te2);
    tl.pulse("excitation", excitation, t0)?;
    tl.filter(-1);
    tl.pulse("TE1/2 (excitation to first refocusing)", refocusing1, r1)?;
    tl.filter(1);
    if let Some(edit) = editing {
        tl.pulse("first editing pulse", edit, (r1 + r2) / 2.0)?;
    }
    tl.pulse(
        "(TE1+TE2)/2 (between the refocusing pulses)",
        refocusing2,
        r2,
    )?;
    tl.filter(-1);
    if let Some(edit) = editing {
        tl.pulse("second editing pulse", edit, (r2 + echo) / 2.0)?;
    }
    tl.delay_until("TE2/2 (second refocusing to echo)", echo)?;
    Ok(tl.finish(acquisition))
}

/// STEAM: 90 – TE/2 – 90 – TM – 90 – TE/2 – acquire, stimulated-echo pathway +1 → 0 → −1
/// (half the magnetization, as on a scanner).
pub fn steam(
    te: f64,
    tm: f64,
    pulses: [&PulseSpec; 3],
    acquisition: Acquisition,
) -> Result<Sequence, PhysicsError> {
    check_time("TE", te)?;
    check_time("TM", tm)?;
    let mut tl = Timeline::new();
    let t0 = pulses[0].duration() / 2.0;
    tl.pulse("first 90", pulses[0], t0)?;
    tl.filter(1);
    tl.pulse("TE/2 (first to second 90)", pulses[1], t0 + te / 2.0)?;
    tl.filter(0);
    tl.pulse("TM (second to third 90)", pulses[2], t0 + te / 2.0 + tm)?;
    tl.filter(-1);
    tl.delay_until("TE/2 (third 90 to echo)", t0 + te + tm)?;
    Ok(Sequence {
        name: format!("STEAM TE {:.1} ms TM {:.1} ms", te * 1e3, tm * 1e3),
        te,
        experiment: tl.finish(acquisition),
    })
}

/// Checks an acquisition's parameters (the simulator checks them again).
pub fn acquisition(
    points: usize,
    dwell: f64,
    linewidth_hz: f64,
) -> Result<Acquisition, PhysicsError> {
    if points == 0 {
        return Err(PhysicsError::invalid("points", 0, "must be >= 1"));
    }
    positive("dwell", dwell)?;
    finite("linewidth_hz", linewidth_hz)?;
    Ok(Acquisition {
        points,
        dwell,
        linewidth_hz,
    })
}
