//! Protocols: the sequences MR physicists run today, described by their kind, timings and pulse
//! style, and compiled to a [`Sequence`] plus the spatial grid its slice-selective pulses need.
//! This module owns the *vendor-like* pulse set and the named baseline protocols
//! (PRESS TE 30, PRESS TE 80, STEAM TE 10) that pulse designs are compared against.
//!
//! # Vendor-like pulses ([`VendorPulses::clinical_3t`])
//! Modelled on the clinical single-voxel sequences of 3 T scanners:
//! - excitation: 2.6 ms sinc-Hanning with 2 zero crossings per side (time–bandwidth 4,
//!   ≈ 1.5 kHz), 130 segments of 20 µs, 90° about y;
//! - refocusing: 5.2 ms sinc-Hanning with 4 zero crossings per side (time–bandwidth 8,
//!   ≈ 1.5 kHz), 260 segments of 20 µs, 180° about x;
//! - STEAM: three 2.6 ms excitation-type 90° pulses (first about y, then x, x).
//!
//! Every pulse is centred on the carrier (the transmitter frequency). As on a scanner, the
//! slice gradient of each localizing pulse is set from the profile the pulse actually produces
//! at its flip angle ([`Shape::profile_fwhm_hz`]: the spin-echo efficiency |β|² of a 180°, the
//! |Mxy| of a 90°), so the nominal slice (±0.5 grid units) is the profile's FWHM.
//! The *localizing* pulses (PRESS refocusing, the second and third STEAM pulses) are slice-selective over a 2-D spatial
//! grid ([`crate::physics::SpatialGrid`], axis 0 and 1, ±`grid_half_width` slice units), so
//! their slice profiles and chemical-shift displacement enter the signal. The first pulse is
//! simulated as played at the centre of its slice (its duration, J evolution and off-resonance
//! response are exact; its profile across the third axis is not simulated — as in FID-A's
//! shaped PRESS simulations, the excitation profile scales all metabolites alike to first order).
//!
//! # Timings
//! PRESS TE 30 is TE1 = 12 ms, TE2 = 18 ms and PRESS TE 80 is TE1 = 12 ms, TE2 = 68 ms (the
//! first echo period at its practical minimum, as vendor sequences do); STEAM TE 10 has TM = 10 ms.
//! All are overridable: a protocol is plain data.

use std::f64::consts::{FRAC_PI_2, PI};

use super::builders::{
    PulseSpec, Rephase, Sequence, mega_press, press, pulse_acquire, spin_echo, steam,
};
use super::shapes::Shape;
use crate::physics::error::positive;
use crate::physics::{Acquisition, Field, PhysicsError, SpatialGrid};

/// How the pulses of a protocol are realized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PulseStyle {
    /// Instantaneous ideal rotations (no grid).
    Ideal,
    /// The vendor-like shaped pulses of [`VendorPulses::clinical_3t`], slice-selective
    /// localization over the spatial grid.
    Vendor,
}

impl PulseStyle {
    /// Parses `ideal` or `vendor`.
    pub fn parse(s: &str) -> Result<PulseStyle, PhysicsError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ideal" => Ok(PulseStyle::Ideal),
            "vendor" | "shaped" => Ok(PulseStyle::Vendor),
            _ => Err(PhysicsError::invalid(
                "pulses",
                s,
                "expected `ideal` or `vendor`",
            )),
        }
    }
}

/// The kind and timings (s) of a sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SequenceKind {
    /// Pulse–acquire.
    PulseAcquire,
    /// Spin echo with echo time `te`.
    SpinEcho {
        /// Echo time (s).
        te: f64,
    },
    /// PRESS with echo periods `te1` and `te2` (TE = TE1 + TE2).
    Press {
        /// First echo period (s).
        te1: f64,
        /// Second echo period (s).
        te2: f64,
    },
    /// STEAM with echo time `te` and mixing time `tm`.
    Steam {
        /// Echo time (s).
        te: f64,
        /// Mixing time (s).
        tm: f64,
    },
    /// MEGA-PRESS with editing pulses at `edit_ppm` (ON) — 14 ms Gaussian 180° pulses.
    MegaPress {
        /// First echo period (s).
        te1: f64,
        /// Second echo period (s).
        te2: f64,
        /// Frequency of the editing pulses (ppm).
        edit_ppm: f64,
    },
}

/// The vendor-like pulse set (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct VendorPulses {
    /// Excitation shape (also the STEAM 90° shape).
    pub excitation: Shape,
    /// Refocusing shape.
    pub refocusing: Shape,
    /// Editing shape for MEGA-PRESS.
    pub editing: Shape,
}

impl VendorPulses {
    /// The 3 T clinical set: 2.6 ms sinc-Hanning (2 lobes) excitation, 5.2 ms sinc-Hanning
    /// (4 lobes) refocusing, 14 ms Gaussian editing pulses; 20 µs raster.
    pub fn clinical_3t() -> Result<VendorPulses, PhysicsError> {
        Ok(VendorPulses {
            excitation: Shape::sinc_hanning(2.6e-3, 130, 2)?,
            refocusing: Shape::sinc_hanning(5.2e-3, 260, 4)?,
            editing: Shape::gaussian(14e-3, 700, 0.01)?,
        })
    }
}

/// Two slice-selective copies of `shape` at `flip` about x, along grid axes 0 and 1, with the
/// slice gradient set from the profile the pulse produces (the spin-echo efficiency |β|² when
/// `refocusing`, |Mxy| otherwise), so the nominal slice is the profile's FWHM.
fn slice_pair(
    shape: &Shape,
    flip: f64,
    refocusing: bool,
    rephase: [Rephase; 2],
) -> Result<[PulseSpec; 2], PhysicsError> {
    let bandwidth = shape.profile_fwhm_hz(flip, refocusing)?;
    let slice = |axis: usize| {
        PulseSpec::slice_selective(shape, flip, 0.0, 0.0, axis)?
            .with_rephase(rephase[axis])
            .with_slice_bandwidth(bandwidth)
    };
    Ok([slice(0)?, slice(1)?])
}

/// A sequence protocol: kind, timings and pulse style.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// Sequence kind and timings.
    pub kind: SequenceKind,
    /// Pulse realization.
    pub pulses: PulseStyle,
    /// Grid points per axis for slice-selective pulses (vendor style only).
    pub grid_points: usize,
    /// Half width of the grid in slice units (the nominal slice is ±0.5).
    pub grid_half_width: f64,
    /// A designed excitation (or first STEAM pulse) played instead of the style's own, with
    /// a label for the sequence name; localization stays as the style makes it.
    pub excitation: Option<(String, PulseSpec)>,
}

/// A compiled protocol: the sequence and the grid it must be simulated on (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledProtocol {
    /// The sequence.
    pub sequence: Sequence,
    /// The spatial grid for its slice-selective pulses (None: no slice-selective pulse).
    pub grid: Option<SpatialGrid>,
}

impl Protocol {
    /// A protocol with the default grid (25 × 25 over ±1.2 slice units).
    pub fn new(kind: SequenceKind, pulses: PulseStyle) -> Protocol {
        Protocol {
            kind,
            pulses,
            grid_points: 25,
            grid_half_width: 1.2,
            excitation: None,
        }
    }

    /// Plays `pulse` (named `label` in the sequence name) as the excitation.
    pub fn with_excitation(mut self, label: impl Into<String>, pulse: PulseSpec) -> Protocol {
        self.excitation = Some((label.into(), pulse));
        self
    }

    /// PRESS TE 30 ms (TE1 12, TE2 18).
    pub fn press_te30(pulses: PulseStyle) -> Protocol {
        Protocol::new(
            SequenceKind::Press {
                te1: 0.012,
                te2: 0.018,
            },
            pulses,
        )
    }

    /// PRESS TE 80 ms (TE1 12, TE2 68).
    pub fn press_te80(pulses: PulseStyle) -> Protocol {
        Protocol::new(
            SequenceKind::Press {
                te1: 0.012,
                te2: 0.068,
            },
            pulses,
        )
    }

    /// STEAM TE 10 ms, TM 10 ms.
    pub fn steam_te10(pulses: PulseStyle) -> Protocol {
        Protocol::new(
            SequenceKind::Steam {
                te: 0.010,
                tm: 0.010,
            },
            pulses,
        )
    }

    /// Sets the grid (points per axis, half width in slice units).
    pub fn with_grid(mut self, points: usize, half_width: f64) -> Protocol {
        self.grid_points = points;
        self.grid_half_width = half_width;
        self
    }

    /// Compiles the protocol for a field and carrier: the sequence (named after the protocol
    /// and its pulses) and its grid. Timings that do not fit the pulses are errors naming the
    /// interval.
    pub fn compile(
        &self,
        field: Field,
        carrier_ppm: f64,
        acquisition: Acquisition,
    ) -> Result<CompiledProtocol, PhysicsError> {
        let vendor = match self.pulses {
            PulseStyle::Ideal => None,
            PulseStyle::Vendor => {
                if self.grid_points == 0 {
                    return Err(PhysicsError::invalid("grid points", 0, "must be >= 1"));
                }
                positive("grid half width", self.grid_half_width)?;
                Some(VendorPulses::clinical_3t()?)
            }
        };
        // 90° about y (Fz → Fx, an upright absorption line).
        let excitation = match (&self.excitation, &vendor) {
            (Some((_, pulse)), _) => pulse.clone(),
            (None, None) => PulseSpec::ideal_excitation(),
            (None, Some(v)) => PulseSpec::shaped(&v.excitation, FRAC_PI_2, FRAC_PI_2)?,
        };
        let refocusing = || match &vendor {
            None => Ok([PulseSpec::ideal_refocusing(), PulseSpec::ideal_refocusing()]),
            Some(v) => slice_pair(&v.refocusing, PI, true, [Rephase::None; 2]),
        };
        let (mut sequence, slice_axes) = match self.kind {
            SequenceKind::PulseAcquire => (pulse_acquire(&excitation, acquisition), 0),
            SequenceKind::SpinEcho { te } => {
                let [r, _] = refocusing()?;
                (spin_echo(te, &excitation, &r, acquisition)?, 1)
            }
            SequenceKind::Press { te1, te2 } => {
                let [r1, r2] = refocusing()?;
                (press(te1, te2, &excitation, &r1, &r2, acquisition)?, 2)
            }
            SequenceKind::Steam { te, tm } => {
                // The second pulse stores the magnetization (pre-phasing lobe), the third
                // recalls it (rephasing lobe).
                let [second, third] = match &vendor {
                    None => [PulseSpec::ideal_90x(), PulseSpec::ideal_90x()],
                    Some(v) => slice_pair(
                        &v.excitation,
                        FRAC_PI_2,
                        false,
                        [Rephase::Before, Rephase::After],
                    )?,
                };
                (
                    steam(te, tm, [&excitation, &second, &third], acquisition)?,
                    2,
                )
            }
            SequenceKind::MegaPress { te1, te2, edit_ppm } => {
                let offset = field.offset_hz(edit_ppm, carrier_ppm);
                // Editing pulses are shaped with either pulse style: an ideal pulse has no
                // frequency selectivity.
                let shape = match &vendor {
                    Some(v) => v.editing.clone(),
                    None => VendorPulses::clinical_3t()?.editing,
                };
                let editing = PulseSpec::shaped_at(&shape, PI, 0.0, offset)?;
                let [r1, r2] = refocusing()?;
                (
                    mega_press(te1, te2, &excitation, &r1, &r2, &editing, acquisition)?,
                    2,
                )
            }
        };
        let grid = match vendor {
            Some(_) if slice_axes > 0 => Some(SpatialGrid::uniform(
                slice_axes,
                self.grid_points,
                self.grid_half_width,
            )?),
            _ => None,
        };
        if let Some((label, _)) = &self.excitation {
            sequence.name = format!("{} with {label}", sequence.name);
        }
        if let Some(g) = &grid {
            sequence.name = format!(
                "{} (vendor-like pulses, {} grid)",
                sequence.name,
                g.axes
                    .iter()
                    .map(|a| a.len().to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            );
        } else if self.pulses == PulseStyle::Vendor {
            sequence.name = format!("{} (vendor-like pulses)", sequence.name);
        } else {
            sequence.name = format!("{} (ideal pulses)", sequence.name);
        }
        Ok(CompiledProtocol { sequence, grid })
    }
}
