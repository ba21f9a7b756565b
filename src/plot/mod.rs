//! Plots a person looks at: spectra (ppm axis drawn decreasing left to right, the NMR
//! convention) and RF waveforms, written as PNG or SVG with plotters.
//!
//! This module owns the plot descriptions ([`SpectrumPlot`], [`WaveformPlot`]), their
//! validation, the rendering (`draw.rs`, generic over the plotters backend so PNG and SVG are
//! drawn by the same code), the layout arithmetic (`geom.rs`: clipping, axis ranges, tick
//! labels, legend placement) and the file writing. It knows nothing of the simulator: callers
//! hand it plain `f64` vectors.
//!
//! Conventions and choices:
//! - Text uses the DejaVu Sans font embedded by the `dejavu` crate, registered once with
//!   plotters' `ab_glyph` font table under the family `"sans-serif"` — no system fonts, no
//!   fontconfig. The SVG names the family `sans-serif`, so a viewer uses its own sans font.
//! - **Bad input is an error, never a panic**: empty traces, x/y length mismatch, a
//!   **non-finite value (NaN, ±∞) or a magnitude above 1e300 is an error** naming the trace
//!   and index (not silently skipped: a NaN in a spectrum is a bug upstream), a size outside
//!   [`MIN_WIDTH`]…[`MAX_SIZE`] × [`MIN_HEIGHT`]…[`MAX_SIZE`], `dt` not in 1e-12…1e3 s,
//!   ux/uy length mismatch, a degenerate `ppm_range` or one containing no data all give
//!   [`PlotError::InvalidInput`].
//! - `ppm_range` may be given in either order; lines are clipped exactly at its ends.
//! - Waveforms are piecewise constant (segment k holds `ux[k]`, `uy[k]` for
//!   `k·dt ≤ t < (k+1)·dt`, `dt` in seconds) and are drawn as steps when a segment is at least
//!   4 px wide, otherwise as a line through the segment centres. Top panel: ux and uy (Hz)
//!   against time (ms); bottom panel: |u| (Hz, left axis) and the phase `atan2(uy, ux)`
//!   (degrees, right axis). The phase is not drawn where `|u| ≤ 1e-3·max|u|` (it is
//!   meaningless there) and its line is broken at jumps over 90° (wraps through ±180°, sign
//!   flips of the amplitude) rather than joined by vertical strokes.
//! - Legends (more than one trace) are placed in an upper corner that no line crosses; if both
//!   are crossed, head-room is added above the data so the legend covers nothing (in a plot
//!   too small for that, a one-row legend is tried, and as a last resort a translucent legend
//!   covers the lines). Stacked
//!   spectra are labelled at the right of each trace instead of with a legend, and their
//!   vertical axis has no tick labels (the offsets make values meaningless); every trace is
//!   drawn on the same scale with its zero line in light grey.
//! - Output is deterministic: the same input gives the same bytes.
//! - Files are written to a temporary file in the target directory and renamed into place,
//!   so a failed plot leaves no partial file.

mod draw;
mod geom;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use plotters::prelude::*;
use plotters::style::FontStyle;

/// Smallest accepted image width in pixels.
pub const MIN_WIDTH: u32 = 320;
/// Smallest accepted image height in pixels.
pub const MIN_HEIGHT: u32 = 240;
/// Largest accepted image width or height in pixels.
pub const MAX_SIZE: u32 = 8192;

/// Trace colours, in order (matplotlib's "tab10", which readers of scientific plots know);
/// trace `i` uses `PALETTE[i % 10]`.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Writing the file failed.
    #[error("cannot write plot {path}: {message}")]
    Io {
        /// The file that was to be written.
        path: PathBuf,
        /// What the operating system or the encoder said.
        message: String,
    },
    /// The plotting library failed while drawing.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The plot description is not drawable.
    #[error("invalid plot input: {what}: {reason}")]
    InvalidInput {
        /// The field (and trace or index) at fault.
        what: String,
        /// What is wrong with it, with the value.
        reason: String,
    },
    /// The file name does not end in `.png` or `.svg`.
    #[error("unsupported plot file extension: {} (use .png or .svg)", .0.display())]
    UnsupportedExtension(PathBuf),
}

/// One line of a spectrum plot.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Legend (or stacked-trace) label.
    pub label: String,
    /// Abscissa (ppm for spectra).
    pub x: Vec<f64>,
    /// Ordinate, same length as `x`.
    pub y: Vec<f64>,
}

/// A spectrum plot: one or more traces against chemical shift.
#[derive(Debug, Clone)]
pub struct SpectrumPlot {
    /// Title drawn above the plot.
    pub title: String,
    /// The traces: x in ppm, y the real part (or magnitude) in arbitrary units.
    pub traces: Vec<Trace>,
    /// Shown ppm range `(lo, hi)` (either order accepted); `None` shows all data. The axis is
    /// always drawn with ppm decreasing left to right.
    pub ppm_range: Option<(f64, f64)>,
    /// Vertical axis label, e.g. `"Real (a.u.)"`.
    pub y_label: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Offset the traces vertically (basis sets) instead of overlaying them (before/after).
    pub stacked: bool,
}

impl SpectrumPlot {
    /// An empty 1200×700 overlay plot with y label `"Real (a.u.)"`.
    pub fn new(title: impl Into<String>) -> SpectrumPlot {
        SpectrumPlot {
            title: title.into(),
            traces: Vec::new(),
            ppm_range: None,
            y_label: "Real (a.u.)".to_string(),
            width: 1200,
            height: 700,
            stacked: false,
        }
    }

    /// Adds a trace.
    pub fn trace(mut self, label: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Self {
        self.traces.push(Trace {
            label: label.into(),
            x,
            y,
        });
        self
    }
}

/// An RF waveform plot: (ux, uy) in Hz against time, and amplitude |u| with phase.
#[derive(Debug, Clone)]
pub struct WaveformPlot {
    /// Title drawn above the plot.
    pub title: String,
    /// Segment duration in seconds (drawn in ms).
    pub dt: f64,
    /// In-phase B1 component per segment, Hz.
    pub ux: Vec<f64>,
    /// Quadrature B1 component per segment, Hz.
    pub uy: Vec<f64>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

impl WaveformPlot {
    /// A 1200×800 waveform plot.
    pub fn new(title: impl Into<String>, dt: f64, ux: Vec<f64>, uy: Vec<f64>) -> WaveformPlot {
        WaveformPlot {
            title: title.into(),
            dt,
            ux,
            uy,
            width: 1200,
            height: 800,
        }
    }
}

/// Writes the plot; the format comes from the extension (`.png` or `.svg`, case-insensitive).
pub fn write_spectrum(plot: &SpectrumPlot, path: &Path) -> Result<(), PlotError> {
    let format = format_of(path)?;
    let prepared = draw::PreparedSpectrum::new(plot)?;
    let size = (plot.width, plot.height);
    match format {
        Format::Png => write_png(path, size, |root| draw::spectrum(root, &prepared, true)),
        Format::Svg => {
            let svg = render_svg(size, |root| draw::spectrum(root, &prepared, false))?;
            write_bytes(path, format, svg.as_bytes())
        }
    }
}

/// Writes the plot; the format comes from the extension (`.png` or `.svg`, case-insensitive).
pub fn write_waveform(plot: &WaveformPlot, path: &Path) -> Result<(), PlotError> {
    let format = format_of(path)?;
    let prepared = draw::PreparedWaveform::new(plot)?;
    let size = (plot.width, plot.height);
    match format {
        Format::Png => write_png(path, size, |root| draw::waveform(root, &prepared, true)),
        Format::Svg => {
            let svg = render_svg(size, |root| draw::waveform(root, &prepared, false))?;
            write_bytes(path, format, svg.as_bytes())
        }
    }
}

/// The SVG text (for tests and for embedding).
pub fn spectrum_svg(plot: &SpectrumPlot) -> Result<String, PlotError> {
    let prepared = draw::PreparedSpectrum::new(plot)?;
    render_svg((plot.width, plot.height), |root| {
        draw::spectrum(root, &prepared, false)
    })
}

/// The SVG text (for tests and for embedding).
pub fn waveform_svg(plot: &WaveformPlot) -> Result<String, PlotError> {
    let prepared = draw::PreparedWaveform::new(plot)?;
    render_svg((plot.width, plot.height), |root| {
        draw::waveform(root, &prepared, false)
    })
}

/// The rendered image as RGB bytes, row-major from the top-left, `3·width·height` long —
/// the pixels a PNG of the plot holds (for tests and for embedding).
pub fn spectrum_rgb(plot: &SpectrumPlot) -> Result<Vec<u8>, PlotError> {
    let prepared = draw::PreparedSpectrum::new(plot)?;
    render_rgb((plot.width, plot.height), |root| {
        draw::spectrum(root, &prepared, true)
    })
}

/// The rendered image as RGB bytes, row-major from the top-left, `3·width·height` long.
pub fn waveform_rgb(plot: &WaveformPlot) -> Result<Vec<u8>, PlotError> {
    let prepared = draw::PreparedWaveform::new(plot)?;
    render_rgb((plot.width, plot.height), |root| {
        draw::waveform(root, &prepared, true)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> Result<Format, PlotError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(PlotError::UnsupportedExtension(path.to_path_buf())),
    }
}

/// Registers DejaVu Sans with plotters once; every later call returns the first outcome.
fn ensure_fonts() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let fonts: [(FontStyle, &'static [u8]); 4] = [
                (FontStyle::Normal, dejavu::sans::regular()),
                (FontStyle::Bold, dejavu::sans::bold()),
                (FontStyle::Italic, dejavu::sans::oblique()),
                (FontStyle::Oblique, dejavu::sans::oblique()),
            ];
            for (style, bytes) in fonts {
                plotters::style::register_font("sans-serif", style, bytes)
                    .map_err(|_| format!("DejaVu Sans ({}) is not a valid font", style.as_str()))?;
            }
            Ok(())
        })
        .clone()
        .map_err(PlotError::Draw)
}

fn check_size((w, h): (u32, u32)) -> Result<(), PlotError> {
    for (what, v, min) in [("width", w, MIN_WIDTH), ("height", h, MIN_HEIGHT)] {
        if v < min || v > MAX_SIZE {
            return Err(PlotError::InvalidInput {
                what: what.to_string(),
                reason: format!("{v} px is outside {min}..={MAX_SIZE} px"),
            });
        }
    }
    Ok(())
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn render_svg<F>(size: (u32, u32), f: F) -> Result<String, PlotError>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), PlotError>,
{
    check_size(size)?;
    ensure_fonts()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        f(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn render_rgb<F>(size: (u32, u32), f: F) -> Result<Vec<u8>, PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), PlotError>,
{
    check_size(size)?;
    ensure_fonts()?;
    let mut buf = vec![255u8; 3 * size.0 as usize * size.1 as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        f(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(buf)
}

/// A temporary name next to `path`, ending in the format's extension (the PNG encoder picks
/// its format from the name).
fn temp_path(path: &Path, format: Format) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = match format {
        Format::Png => "png",
        Format::Svg => "svg",
    };
    let name = format!(".{stem}.{}.{n}.tmp.{ext}", std::process::id());
    match path.parent() {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

fn write_png<F>(path: &Path, size: (u32, u32), f: F) -> Result<(), PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), PlotError>,
{
    check_size(size)?;
    ensure_fonts()?;
    let tmp = temp_path(path, Format::Png);
    let result = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        f(&root)?;
        root.present().map_err(|e| PlotError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    })();
    // The backend is dropped by now (a backend dropped unsaved saves itself, so the temporary
    // file may exist even after an error).
    finish(result, &tmp, path)
}

fn write_bytes(path: &Path, format: Format, bytes: &[u8]) -> Result<(), PlotError> {
    let tmp = temp_path(path, format);
    let result = std::fs::write(&tmp, bytes).map_err(|e| PlotError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    });
    finish(result, &tmp, path)
}

/// Renames the finished temporary file into place, or removes it after a failure.
fn finish(result: Result<(), PlotError>, tmp: &Path, path: &Path) -> Result<(), PlotError> {
    let result = result.and_then(|()| {
        std::fs::rename(tmp, path).map_err(|e| PlotError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}
