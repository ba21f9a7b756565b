//! Pulseq open sequence format (.seq v1.4/1.5) writer for designed RF waveforms.
//!
//! A designed pulse (piecewise-constant controls `ux`, `uy` in Hz, segment length `dt`) becomes a
//! Pulseq file a scanner interpreter (Siemens, GE, Philips, …) can play, written as
//! `shared/reference/interop.md` §1 describes the format and as the reference packages (MATLAB
//! Pulseq `write.m`/`read.m`, pypulseq 1.5.0.post1 `write_seq.py`/`read_seq.py`) write and read
//! it. The sequence is a list of [`PulseqBlock`]s: shaped RF pulses, pure delays and ADC
//! readouts, e.g. [`PulseqExport::pulse_acquire`] = RF → delay → ADC.
//!
//! # What is written
//! ```text
//! # Pulseq sequence file                       header comments
//! [VERSION]      major 1 / minor 5 / revision 0 (or 1.4.1, see PulseqVersion)
//! [DEFINITIONS]  AdcRasterTime, BlockDurationRaster, GradientRasterTime, Name,
//!                RadiofrequencyRasterTime, TotalDuration (s; sorted keys, 9 digits)
//! [BLOCKS]       NUM DUR RF GX GY GZ ADC EXT  (DUR in units of BlockDurationRaster)
//! [RF]           v1.5: id amp mag phase time center(us) delay(us) freqPPM phasePPM freq phase use
//!                v1.4.1: id amp mag phase time delay(us) freq phase
//! [ADC]          v1.5: id num dwell(ns) delay(us) freqPPM phasePPM freq phase phase_id
//!                v1.4.1: id num dwell(ns) delay(us) freq phase
//! [SHAPES]       shape_id k / num_samples n / values (compressed, see compress_shape)
//! [SIGNATURE]    Type md5 / Hash <md5 of the bytes before the "\n[SIGNATURE]">
//! ```
//!
//! # Conventions
//! - The complex RF signal is `ux + i·uy` in Hz (γ̄·B1; `ux` along x of the rotating frame, as in
//!   the physics core's `H = H0 + ux Fx + uy Fy`). Pulseq stores the peak `amp` (Hz), the
//!   magnitude shape `|s|/amp` in [0, 1] and the phase shape `arg(s)/(2π)` wrapped to [0, 1).
//! - Shape samples are quantised to 1e-7 (Pulseq's compression grid) whether the shape is
//!   stored compressed or raw, so a reader gets every magnitude and phase back to ±5e-8 (±0.3 µrad
//!   of phase); the amplitude is written with 9 significant digits (pypulseq's own writer
//!   keeps 6, and its default `read(remove_duplicates=True)` rounds amplitudes to 6 digits).
//!   For the same samples, pypulseq 1.5.0.post1 writes the same `[BLOCKS]`, `[ADC]` and
//!   `[SHAPES]` sections (checked by the peer test in `tests/pulseq.rs`).
//! - Each control segment lasting `dt = m·rf_raster` is written as `m` equal samples on the
//!   default RF raster (time shape id 0): the scanner plays exactly the piecewise-constant
//!   waveform, every reader supports it, and the run-length compression makes the repetition
//!   nearly free. No time shape is written.
//! - Timing (the rules pypulseq's `check_timing` and the interpreters enforce): an RF pulse starts
//!   `rf_dead_time` (rounded up to the RF raster) after its block starts and its block lasts at
//!   least until `rf_ringdown_time` after its end; an ADC starts `adc_dead_time` (rounded up to
//!   the RF raster, where Pulseq puts ADC starts) after its block starts and its block keeps
//!   `adc_dead_time` after the last sample; every block duration is rounded up to
//!   `block_duration_raster`. Pure delays must already be on that raster.
//! - The MD5 ([`md5`], RFC 1321, implemented here) covers the file up to but excluding the
//!   newline that precedes `[SIGNATURE]`, as `write.m`, `verifyFileSignature.m` and pypulseq do.

use std::fmt::Write as _;
use std::path::Path;

use crate::physics::PhysicsError;

/// Pulseq shape quantisation step (the compression grid of `compress_shape`).
pub const SHAPE_QUANTUM: f64 = 1e-7;

/// 1 / [`SHAPE_QUANTUM`]: dividing an integer count by it gives the nearest double to the
/// decimal value (multiplying by 1e-7 can be one ulp off, e.g. 0.09999999999999999).
const QUANTA_PER_UNIT: f64 = 1e7;

/// The largest RF waveform, in samples on the RF raster, that is written (4 s at 1 µs).
pub const MAX_RF_SAMPLES: usize = 1 << 22;

/// Relative tolerance for "is an integer multiple of a raster".
const RASTER_TOL: f64 = 1e-9;

/// Which revision of the file format is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PulseqVersion {
    /// 1.5.0 (current; RF `center`, `use` and ppm offsets, ADC phase-modulation id).
    #[default]
    V1_5_0,
    /// 1.4.1, for interpreters that do not read 1.5 yet (e.g. older Siemens/MaRCoS ones).
    V1_4_1,
}

impl PulseqVersion {
    fn triple(self) -> (u32, u32, u32) {
        match self {
            PulseqVersion::V1_5_0 => (1, 5, 0),
            PulseqVersion::V1_4_1 => (1, 4, 1),
        }
    }
}

/// The scanner's raster times and dead times (all in seconds). They go into `[DEFINITIONS]`
/// and decide where events sit inside their blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PulseqSystem {
    /// RF sample raster (`RadiofrequencyRasterTime`), e.g. 1 µs.
    pub rf_raster: f64,
    /// Gradient raster (`GradientRasterTime`), e.g. 10 µs (no gradients are written, but the
    /// definition is required from v1.4.0 on).
    pub grad_raster: f64,
    /// ADC dwell raster (`AdcRasterTime`), e.g. 100 ns.
    pub adc_raster: f64,
    /// Block duration raster (`BlockDurationRaster`), e.g. 10 µs.
    pub block_duration_raster: f64,
    /// Time the RF amplifier needs before a pulse starts.
    pub rf_dead_time: f64,
    /// Time the RF chain needs after a pulse ends (must stay inside the block).
    pub rf_ringdown_time: f64,
    /// Dead time before and after an ADC readout.
    pub adc_dead_time: f64,
}

impl Default for PulseqSystem {
    /// Siemens-like values: rasters of pypulseq's `Opts` (RF 1 µs, gradient 10 µs, ADC 100 ns,
    /// block 10 µs), RF dead time 100 µs, ringdown 30 µs, ADC dead time 10 µs.
    fn default() -> Self {
        PulseqSystem {
            rf_raster: 1e-6,
            grad_raster: 10e-6,
            adc_raster: 100e-9,
            block_duration_raster: 10e-6,
            rf_dead_time: 100e-6,
            rf_ringdown_time: 30e-6,
            adc_dead_time: 10e-6,
        }
    }
}

/// What an RF pulse is for (the one-letter `use` column of `[RF]` in v1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RfUse {
    /// `e`: excitation.
    #[default]
    Excitation,
    /// `r`: refocusing.
    Refocusing,
    /// `i`: inversion.
    Inversion,
    /// `s`: saturation.
    Saturation,
    /// `p`: preparation.
    Preparation,
    /// `o`: other.
    Other,
    /// `u`: undefined.
    Undefined,
}

impl RfUse {
    /// The letter written in the file.
    pub fn letter(self) -> char {
        match self {
            RfUse::Excitation => 'e',
            RfUse::Refocusing => 'r',
            RfUse::Inversion => 'i',
            RfUse::Saturation => 's',
            RfUse::Preparation => 'p',
            RfUse::Other => 'o',
            RfUse::Undefined => 'u',
        }
    }
}

/// A shaped RF pulse given as piecewise-constant controls.
#[derive(Debug, Clone, PartialEq)]
pub struct RfPulse {
    /// x component of γ̄·B1 per segment (Hz).
    pub ux: Vec<f64>,
    /// y component of γ̄·B1 per segment (Hz); same length as `ux`.
    pub uy: Vec<f64>,
    /// Segment duration (s); a positive integer multiple of the RF raster.
    pub dt: f64,
    /// Frequency offset of the transmitter during the pulse (Hz).
    pub freq_offset_hz: f64,
    /// Phase offset added to the whole pulse (rad).
    pub phase_offset_rad: f64,
    /// What the pulse is for.
    pub rf_use: RfUse,
}

impl RfPulse {
    /// An on-resonance excitation pulse with no phase offset.
    pub fn new(ux: Vec<f64>, uy: Vec<f64>, dt: f64) -> Self {
        RfPulse {
            ux,
            uy,
            dt,
            freq_offset_hz: 0.0,
            phase_offset_rad: 0.0,
            rf_use: RfUse::Excitation,
        }
    }

    /// Duration of the pulse (s): number of segments × `dt`.
    pub fn duration(&self) -> f64 {
        self.ux.len() as f64 * self.dt
    }
}

/// An ADC readout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adc {
    /// Number of complex samples (> 0).
    pub num_samples: usize,
    /// Dwell time per sample (s); a positive integer multiple of the ADC raster.
    pub dwell: f64,
    /// Receiver frequency offset (Hz).
    pub freq_offset_hz: f64,
    /// Receiver phase offset (rad).
    pub phase_offset_rad: f64,
}

impl Adc {
    /// An on-resonance readout of `num_samples` points with `dwell` s per point.
    pub fn new(num_samples: usize, dwell: f64) -> Self {
        Adc {
            num_samples,
            dwell,
            freq_offset_hz: 0.0,
            phase_offset_rad: 0.0,
        }
    }
}

/// One block of the sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum PulseqBlock {
    /// A shaped RF pulse (starts after the RF dead time, block keeps the ringdown time).
    Rf(RfPulse),
    /// A pure delay of this many seconds (> 0, on the block duration raster).
    Delay(f64),
    /// An ADC readout (starts after the ADC dead time, block keeps it after the last sample).
    Adc(Adc),
}

/// A sequence to export as a Pulseq file.
#[derive(Debug, Clone, PartialEq)]
pub struct PulseqExport {
    /// Sequence name (the `Name` definition): printable ASCII, one line.
    pub name: String,
    /// File format revision to write.
    pub version: PulseqVersion,
    /// Rasters and dead times of the target scanner.
    pub system: PulseqSystem,
    /// The blocks, played in order.
    pub blocks: Vec<PulseqBlock>,
}

/// A shape in Pulseq's compressed form (`[SHAPES]` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedShape {
    /// Number of samples of the decompressed shape.
    pub num_samples: usize,
    /// Stored values: either `num_samples` raw (quantised) samples or the run-length coded
    /// derivative.
    pub data: Vec<f64>,
}

/// Where the events of one block sit, as written (rasters resolved).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockTiming {
    /// Block duration in units of the block duration raster (the `DUR` column).
    pub duration_ticks: u64,
    /// Block duration (s).
    pub duration: f64,
    /// Start of the RF or ADC event relative to the block start (s); 0 for delays.
    pub event_delay: f64,
}

impl PulseqExport {
    /// A "pulse–acquire" sequence: the RF pulse, then (if `gap` > 0) a delay of `gap` s, then
    /// (if given) the ADC readout.
    pub fn pulse_acquire(
        name: impl Into<String>,
        system: PulseqSystem,
        rf: RfPulse,
        gap: f64,
        adc: Option<Adc>,
    ) -> Self {
        let mut blocks = vec![PulseqBlock::Rf(rf)];
        if gap != 0.0 {
            blocks.push(PulseqBlock::Delay(gap));
        }
        if let Some(adc) = adc {
            blocks.push(PulseqBlock::Adc(adc));
        }
        PulseqExport {
            name: name.into(),
            version: PulseqVersion::V1_5_0,
            system,
            blocks,
        }
    }

    /// Checks every field; the error names the offending one (e.g. `blocks[0].rf.dt`).
    pub fn validate(&self) -> Result<(), PhysicsError> {
        self.timings().map(|_| ())
    }

    /// The timing of every block as it will be written (validates the export).
    pub fn timings(&self) -> Result<Vec<BlockTiming>, PhysicsError> {
        self.validate_header()?;
        let s = &self.system;
        let mut out = Vec::with_capacity(self.blocks.len());
        for (b, block) in self.blocks.iter().enumerate() {
            let t = match block {
                PulseqBlock::Rf(rf) => {
                    let m = check_rf(rf, s, b)?;
                    let delay_ticks = ceil_ticks(s.rf_dead_time, s.rf_raster);
                    let delay = delay_ticks as f64 * s.rf_raster;
                    let samples = rf.ux.len() * m;
                    let end =
                        (delay_ticks as f64 + samples as f64) * s.rf_raster + s.rf_ringdown_time;
                    let ticks = ceil_ticks(end, s.block_duration_raster);
                    BlockTiming {
                        duration_ticks: ticks,
                        duration: ticks as f64 * s.block_duration_raster,
                        event_delay: delay,
                    }
                }
                PulseqBlock::Delay(d) => {
                    let field = format!("blocks[{b}].delay");
                    if !d.is_finite() || *d <= 0.0 {
                        return Err(PhysicsError::invalid(field, d, "must be finite and > 0 s"));
                    }
                    let ticks =
                        on_raster(&field, *d, s.block_duration_raster, "block_duration_raster")?;
                    BlockTiming {
                        duration_ticks: ticks,
                        duration: ticks as f64 * s.block_duration_raster,
                        event_delay: 0.0,
                    }
                }
                PulseqBlock::Adc(adc) => {
                    check_adc(adc, s, b)?;
                    let delay_ticks = ceil_ticks(s.adc_dead_time, s.rf_raster);
                    let delay = delay_ticks as f64 * s.rf_raster;
                    let end = delay + adc.num_samples as f64 * adc.dwell + s.adc_dead_time;
                    let ticks = ceil_ticks(end, s.block_duration_raster);
                    BlockTiming {
                        duration_ticks: ticks,
                        duration: ticks as f64 * s.block_duration_raster,
                        event_delay: delay,
                    }
                }
            };
            out.push(t);
        }
        Ok(out)
    }

    /// Total duration (s) of the sequence: the sum of the block durations.
    pub fn total_duration(&self) -> Result<f64, PhysicsError> {
        let ticks: u64 = self.timings()?.iter().map(|t| t.duration_ticks).sum();
        Ok(ticks as f64 * self.system.block_duration_raster)
    }

    fn validate_header(&self) -> Result<(), PhysicsError> {
        let name = self.name.trim();
        if name.is_empty()
            || name.starts_with('#')
            || !self.name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        {
            return Err(PhysicsError::invalid(
                "name",
                format!("{:?}", self.name),
                "must be non-empty printable ASCII on one line, not starting with '#'",
            ));
        }
        let s = &self.system;
        for (field, v) in [
            ("system.rf_raster", s.rf_raster),
            ("system.grad_raster", s.grad_raster),
            ("system.adc_raster", s.adc_raster),
            ("system.block_duration_raster", s.block_duration_raster),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1e-3) {
                return Err(PhysicsError::invalid(
                    field,
                    v,
                    "must be finite, > 0 and ≤ 1 ms",
                ));
            }
        }
        for (field, v) in [
            ("system.rf_dead_time", s.rf_dead_time),
            ("system.rf_ringdown_time", s.rf_ringdown_time),
            ("system.adc_dead_time", s.adc_dead_time),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(PhysicsError::invalid(
                    field,
                    v,
                    "must be finite and in [0, 1] s",
                ));
            }
        }
        if self.blocks.is_empty() {
            return Err(PhysicsError::invalid(
                "blocks",
                "[]",
                "a sequence needs at least one block",
            ));
        }
        Ok(())
    }

    /// The complete `.seq` file text, signature included.
    pub fn to_seq_string(&self) -> Result<String, PhysicsError> {
        let timings = self.timings()?;
        let s = &self.system;
        let v15 = self.version == PulseqVersion::V1_5_0;

        // Event libraries (identical events and shapes share one id).
        let mut shapes: Vec<CompressedShape> = Vec::new();
        let mut rf_lines: Vec<String> = Vec::new();
        let mut adc_lines: Vec<String> = Vec::new();
        let mut rows: Vec<[usize; 2]> = Vec::with_capacity(self.blocks.len()); // (rf id, adc id)
        for (b, (block, t)) in self.blocks.iter().zip(&timings).enumerate() {
            match block {
                PulseqBlock::Rf(rf) => {
                    let (samples, amp, center) = rf_samples(rf, s, b)?;
                    let mag: Vec<f64> = samples
                        .iter()
                        .map(|&(m, _)| if amp > 0.0 { (m / amp).min(1.0) } else { 0.0 })
                        .collect();
                    let phase: Vec<f64> = samples.iter().map(|&(_, p)| p).collect();
                    let mag_id = intern_shape(&mut shapes, compress_shape(&mag)?);
                    let phase_id = intern_shape(&mut shapes, compress_shape(&phase)?);
                    let delay_us = fmt_g(t.event_delay * 1e6);
                    let line = if v15 {
                        format!(
                            "{} {mag_id} {phase_id} 0 {} {delay_us} 0 0 {} {} {}",
                            fmt_g(amp),
                            fmt_g(center * 1e6),
                            fmt_g(rf.freq_offset_hz),
                            fmt_g(rf.phase_offset_rad),
                            rf.rf_use.letter()
                        )
                    } else {
                        format!(
                            "{} {mag_id} {phase_id} 0 {delay_us} {} {}",
                            fmt_g(amp),
                            fmt_g(rf.freq_offset_hz),
                            fmt_g(rf.phase_offset_rad)
                        )
                    };
                    rows.push([intern(&mut rf_lines, line), 0]);
                }
                PulseqBlock::Delay(_) => rows.push([0, 0]),
                PulseqBlock::Adc(adc) => {
                    let dwell_ns = fmt_g(adc.dwell * 1e9);
                    let delay_us = fmt_g(t.event_delay * 1e6);
                    let (f, p) = (fmt_g(adc.freq_offset_hz), fmt_g(adc.phase_offset_rad));
                    let n = adc.num_samples;
                    let line = if v15 {
                        format!("{n} {dwell_ns} {delay_us} 0 0 {f} {p} 0")
                    } else {
                        format!("{n} {dwell_ns} {delay_us} {f} {p}")
                    };
                    rows.push([0, intern(&mut adc_lines, line)]);
                }
            }
        }

        let total_ticks: u64 = timings.iter().map(|t| t.duration_ticks).sum();
        let (major, minor, revision) = self.version.triple();
        let mut o = String::new();
        // Writing into a String cannot fail; `let _ =` keeps clippy quiet without unwraps.
        let _ = writeln!(o, "# Pulseq sequence file");
        let _ = writeln!(o, "# Created by spinloop {}\n", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(
            o,
            "[VERSION]\nmajor {major}\nminor {minor}\nrevision {revision}\n"
        );
        o.push_str("[DEFINITIONS]\n");
        let _ = writeln!(o, "AdcRasterTime {}", fmt_g(s.adc_raster));
        let _ = writeln!(o, "BlockDurationRaster {}", fmt_g(s.block_duration_raster));
        let _ = writeln!(o, "GradientRasterTime {}", fmt_g(s.grad_raster));
        let _ = writeln!(o, "Name {}", self.name.trim());
        let _ = writeln!(o, "RadiofrequencyRasterTime {}", fmt_g(s.rf_raster));
        let _ = writeln!(
            o,
            "TotalDuration {}\n",
            fmt_g(total_ticks as f64 * s.block_duration_raster)
        );

        o.push_str("# Format of blocks:\n# NUM DUR RF  GX  GY  GZ  ADC  EXT\n[BLOCKS]\n");
        let w = self.blocks.len().to_string().len();
        for (k, (t, [rf, adc])) in timings.iter().zip(&rows).enumerate() {
            let _ = writeln!(
                o,
                "{:>w$} {:>3} {rf:>3} {:>3} {:>3} {:>3} {adc:>2} {:>2}",
                k + 1,
                t.duration_ticks,
                0,
                0,
                0,
                0
            );
        }
        o.push('\n');

        if !rf_lines.is_empty() {
            o.push_str("# Format of RF events:\n");
            if v15 {
                o.push_str(
                    "# id ampl. mag_id phase_id time_shape_id center delay freqPPM phasePPM freq phase use\n\
                     # ..   Hz      ..       ..            ..     us    us     ppm  rad/MHz   Hz   rad  ..\n\
                     # Field \"use\" is the initial of: excitation refocusing inversion saturation preparation other undefined\n",
                );
            } else {
                o.push_str(
                    "# id amplitude mag_id phase_id time_shape_id delay freq phase\n\
                     # ..        Hz   ....     ....          ....    us   Hz   rad\n",
                );
            }
            o.push_str("[RF]\n");
            for (k, line) in rf_lines.iter().enumerate() {
                let _ = writeln!(o, "{} {line}", k + 1);
            }
            o.push('\n');
        }
        if !adc_lines.is_empty() {
            o.push_str("# Format of ADC events:\n");
            if v15 {
                o.push_str(
                    "# id num dwell delay freqPPM phasePPM freq phase phase_id\n\
                     # ..  ..    ns    us     ppm  rad/MHz   Hz   rad       ..\n",
                );
            } else {
                o.push_str("# id num dwell delay freq phase\n# ..  ..    ns    us   Hz   rad\n");
            }
            o.push_str("[ADC]\n");
            for (k, line) in adc_lines.iter().enumerate() {
                let _ = writeln!(o, "{} {line}", k + 1);
            }
            o.push('\n');
        }
        if !shapes.is_empty() {
            o.push_str("# Sequence Shapes\n[SHAPES]\n\n");
            for (k, shape) in shapes.iter().enumerate() {
                let _ = writeln!(o, "shape_id {}\nnum_samples {}", k + 1, shape.num_samples);
                for &v in &shape.data {
                    o.push_str(&fmt_g(v));
                    o.push('\n');
                }
                o.push('\n');
            }
        }

        let hash = hex(&md5(o.as_bytes()));
        o.push_str(
            "\n[SIGNATURE]\n\
             # This is the hash of the Pulseq file, calculated right before the [SIGNATURE] section was added\n\
             # It can be reproduced/verified with md5sum if the file trimmed to the position right above [SIGNATURE]\n\
             # The new line character preceding [SIGNATURE] BELONGS to the signature (and needs to be stripped away for recalculating/verification)\n\
             Type md5\n",
        );
        let _ = writeln!(o, "Hash {hash}");
        Ok(o)
    }

    /// Writes the `.seq` file atomically (see [`crate::formats::write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<(), PhysicsError> {
        let text = self.to_seq_string()?;
        super::write_atomic(path, text.as_bytes())
            .map_err(|e| PhysicsError::Io(format!("cannot write {}: {e}", path.display())))
    }
}

/// Checks an RF pulse; returns the number of raster samples per segment.
fn check_rf(rf: &RfPulse, s: &PulseqSystem, b: usize) -> Result<usize, PhysicsError> {
    let f = |name: &str| format!("blocks[{b}].rf.{name}");
    if rf.ux.is_empty() {
        return Err(PhysicsError::invalid(
            f("ux"),
            "[]",
            "the waveform is empty",
        ));
    }
    if rf.ux.len() != rf.uy.len() {
        return Err(PhysicsError::SizeMismatch {
            what: f("uy"),
            expected: rf.ux.len(),
            got: rf.uy.len(),
        });
    }
    for (name, u) in [("ux", &rf.ux), ("uy", &rf.uy)] {
        if let Some((k, v)) = u.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(PhysicsError::invalid(
                f(&format!("{name}[{k}]")),
                v,
                "must be finite",
            ));
        }
    }
    for (name, v) in [
        ("freq_offset_hz", rf.freq_offset_hz),
        ("phase_offset_rad", rf.phase_offset_rad),
    ] {
        if !v.is_finite() {
            return Err(PhysicsError::invalid(f(name), v, "must be finite"));
        }
    }
    if !(rf.dt.is_finite() && rf.dt > 0.0) {
        return Err(PhysicsError::invalid(
            f("dt"),
            rf.dt,
            "must be finite and > 0 s",
        ));
    }
    let m = on_raster(&f("dt"), rf.dt, s.rf_raster, "rf_raster")?;
    let m = usize::try_from(m).unwrap_or(usize::MAX);
    if rf.ux.len().saturating_mul(m) > MAX_RF_SAMPLES {
        return Err(PhysicsError::invalid(
            f("ux.len()"),
            rf.ux.len(),
            format!("{m} raster samples per segment give more than {MAX_RF_SAMPLES} RF samples"),
        ));
    }
    Ok(m)
}

fn check_adc(adc: &Adc, s: &PulseqSystem, b: usize) -> Result<(), PhysicsError> {
    let f = |name: &str| format!("blocks[{b}].adc.{name}");
    if adc.num_samples == 0 {
        return Err(PhysicsError::invalid(f("num_samples"), 0, "must be > 0"));
    }
    if !(adc.dwell.is_finite() && adc.dwell > 0.0) {
        return Err(PhysicsError::invalid(
            f("dwell"),
            adc.dwell,
            "must be finite and > 0 s",
        ));
    }
    on_raster(&f("dwell"), adc.dwell, s.adc_raster, "adc_raster")?;
    if adc.num_samples as f64 * adc.dwell > 100.0 {
        return Err(PhysicsError::invalid(
            f("num_samples"),
            adc.num_samples,
            "the readout would last more than 100 s",
        ));
    }
    for (name, v) in [
        ("freq_offset_hz", adc.freq_offset_hz),
        ("phase_offset_rad", adc.phase_offset_rad),
    ] {
        if !v.is_finite() {
            return Err(PhysicsError::invalid(f(name), v, "must be finite"));
        }
    }
    Ok(())
}

/// `x / raster` as an integer ≥ 1 when `x` is a multiple of `raster` within [`RASTER_TOL`].
fn on_raster(field: &str, x: f64, raster: f64, raster_name: &str) -> Result<u64, PhysicsError> {
    let r = (x / raster).round();
    if (1.0..1e15).contains(&r) && (x - r * raster).abs() <= RASTER_TOL * x {
        Ok(r as u64)
    } else {
        Err(PhysicsError::invalid(
            field,
            x,
            format!("must be a positive integer multiple of {raster_name} = {raster} s"),
        ))
    }
}

/// Smallest n with n·raster ≥ x (tolerating rounding noise of x).
fn ceil_ticks(x: f64, raster: f64) -> u64 {
    let q = x / raster;
    let r = q.round();
    if (q - r).abs() <= 1e-6 {
        r.max(0.0) as u64
    } else {
        q.ceil().max(0.0) as u64
    }
}

/// The pulse on the RF raster as (|s|, phase/2π in [0,1)) pairs, its peak and its center (s).
type RfRaster = (Vec<(f64, f64)>, f64, f64);

fn rf_samples(rf: &RfPulse, s: &PulseqSystem, b: usize) -> Result<RfRaster, PhysicsError> {
    let m = check_rf(rf, s, b)?;
    let mut out = Vec::with_capacity(rf.ux.len() * m);
    for (&x, &y) in rf.ux.iter().zip(&rf.uy) {
        let mag = x.hypot(y);
        let mut p = y.atan2(x) / std::f64::consts::TAU;
        if p < 0.0 {
            p += 1.0;
        }
        if p >= 1.0 {
            p = 0.0;
        }
        out.extend(std::iter::repeat_n((mag, p), m));
    }
    let amp = out.iter().fold(0.0f64, |a, &(m, _)| a.max(m));
    // Center as pypulseq's calc_rf_center: middle of the samples within 1e-5 of the peak.
    let peak: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, (m, _))| *m >= amp * 0.99999)
        .map(|(k, _)| k)
        .collect();
    let center = match (peak.first(), peak.last()) {
        (Some(&a), Some(&z)) => ((a as f64 + 0.5) + (z as f64 + 0.5)) / 2.0 * s.rf_raster,
        _ => 0.0,
    };
    Ok((out, amp, center))
}

fn intern(lines: &mut Vec<String>, line: String) -> usize {
    match lines.iter().position(|l| *l == line) {
        Some(k) => k + 1,
        None => {
            lines.push(line);
            lines.len()
        }
    }
}

fn intern_shape(shapes: &mut Vec<CompressedShape>, shape: CompressedShape) -> usize {
    match shapes.iter().position(|s| *s == shape) {
        Some(k) => k + 1,
        None => {
            shapes.push(shape);
            shapes.len()
        }
    }
}

/// Compresses a shape as Pulseq does (pypulseq `compress_shape.py`, MATLAB `compressShape.m`):
/// quantise to [`SHAPE_QUANTUM`], take the first difference (first sample kept), run-length
/// encode it (a run of L > 1 equal values becomes `v v L−2`). Shapes of ≤ 4 samples, and shapes
/// whose code is not shorter, are stored raw (quantised). Errors on non-finite samples or
/// samples beyond ±1e8.
pub fn compress_shape(samples: &[f64]) -> Result<CompressedShape, PhysicsError> {
    let mut q = Vec::with_capacity(samples.len());
    for (k, &x) in samples.iter().enumerate() {
        if !(x.is_finite() && x.abs() <= 1e8) {
            return Err(PhysicsError::invalid(
                format!("shape[{k}]"),
                x,
                "must be finite and within ±1e8",
            ));
        }
        q.push((x * QUANTA_PER_UNIT).round() as i64);
    }
    let raw = || CompressedShape {
        num_samples: q.len(),
        data: q.iter().map(|&v| v as f64 / QUANTA_PER_UNIT).collect(),
    };
    if q.len() <= 4 {
        return Ok(raw());
    }
    let mut code: Vec<f64> = Vec::new();
    let mut k = 0;
    while k < q.len() {
        let d = q[k] - if k == 0 { 0 } else { q[k - 1] };
        let mut len = 1;
        while k + len < q.len() && q[k + len] - q[k + len - 1] == d {
            len += 1;
        }
        let v = d as f64 / QUANTA_PER_UNIT;
        code.push(v);
        if len > 1 {
            code.push(v);
            code.push((len - 2) as f64);
        }
        k += len;
    }
    if code.len() < q.len() {
        Ok(CompressedShape {
            num_samples: q.len(),
            data: code,
        })
    } else {
        Ok(raw())
    }
}

/// Inverse of [`compress_shape`] (pypulseq `decompress_shape.py`): raw if `data` has
/// `num_samples` values, else expand the runs and take the cumulative sum.
pub fn decompress_shape(shape: &CompressedShape) -> Result<Vec<f64>, PhysicsError> {
    let (n, data) = (shape.num_samples, &shape.data);
    if data.len() == n {
        return Ok(data.clone());
    }
    let bad = |why: &str| PhysicsError::Parse(format!("compressed shape: {why}"));
    let mut deriv = Vec::with_capacity(n);
    let mut i = 0;
    while i < data.len() {
        if i + 1 < data.len() && data[i] == data[i + 1] {
            let count = *data.get(i + 2).ok_or_else(|| bad("run without a count"))?;
            if !(count >= 0.0 && count.fract() == 0.0 && count as usize + 2 <= n) {
                return Err(bad("invalid run count"));
            }
            deriv.extend(std::iter::repeat_n(data[i], count as usize + 2));
            i += 3;
        } else {
            deriv.push(data[i]);
            i += 1;
        }
        if deriv.len() > n {
            return Err(bad("more samples than num_samples"));
        }
    }
    if deriv.len() != n {
        return Err(bad("fewer samples than num_samples"));
    }
    let mut acc = 0.0;
    Ok(deriv
        .into_iter()
        .map(|d| {
            acc += d;
            acc
        })
        .collect())
}

/// Formats like C's `%.9g` (the reference writers' number format).
fn fmt_g(x: f64) -> String {
    const SIG: i32 = 9;
    if x == 0.0 || !x.is_finite() {
        return if x.is_finite() {
            "0".into()
        } else {
            x.to_string()
        };
    }
    let e = format!("{:.*e}", (SIG - 1) as usize, x);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..SIG).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        trim(&format!("{:.*}", (SIG - 1 - exp) as usize, x))
    }
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// MD5 digest (RFC 1321) of `data`, as the Pulseq signature uses it.
pub fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(2^32 · |sin(i + 1)|)
    let k: [u32; 64] =
        std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32);
    let mut h: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ])
        });
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_rfc1321_vectors() {
        let cases: [(&str, &str); 7] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&md5(input.as_bytes())), want, "md5({input:?})");
        }
    }

    #[test]
    fn fmt_g_matches_printf() {
        for (x, want) in [
            (1e-5, "1e-05"),
            (1e-6, "1e-06"),
            (1e-7, "1e-07"),
            (0.0002, "0.0002"),
            (100.00000000000001, "100"),
            (999.974, "999.974"),
            (-0.5, "-0.5"),
            (250000.0, "250000"),
            (123456789.0, "123456789"),
            (1234567890.0, "1.23456789e+09"),
            (0.00163, "0.00163"),
            (1.0 / 3.0, "0.333333333"),
            (98.0, "98"),
        ] {
            assert_eq!(fmt_g(x), want, "{x}");
        }
    }

    #[test]
    fn compression_spec_example() {
        let c = compress_shape(&[0.0; 100]).unwrap();
        assert_eq!(c.data, vec![0.0, 0.0, 98.0]);
        assert_eq!(decompress_shape(&c).unwrap(), vec![0.0; 100]);
        let short = compress_shape(&[0.1, 0.2, 0.3]).unwrap();
        assert_eq!(short.data.len(), 3);
    }
}
