//! Validation into drawable form, and the drawing itself, generic over the plotters backend
//! (the same code draws the PNG and the SVG).

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::geom::{self, Corner, LegendPlace, Pt, TickFormat};
use super::{PALETTE, PlotError, SpectrumPlot, WaveformPlot, check_size, draw_err};

/// Largest magnitude accepted for any plotted value.
const MAX_MAGNITUDE: f64 = 1e300;
/// Grid lines.
const GRID: RGBColor = RGBColor(222, 222, 222);
/// Zero lines and stacked baselines.
const ZERO: RGBColor = RGBColor(150, 150, 150);
/// Legend border.
const LEGEND_BORDER: RGBColor = RGBColor(170, 170, 170);

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> PlotError {
    PlotError::InvalidInput {
        what: what.into(),
        reason: reason.into(),
    }
}

fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Checks that every value is finite and at most [`MAX_MAGNITUDE`] in magnitude.
fn check_values(what: &str, v: &[f64]) -> Result<(), PlotError> {
    match v
        .iter()
        .position(|x| !x.is_finite() || x.abs() > MAX_MAGNITUDE)
    {
        None => Ok(()),
        Some(i) => Err(invalid(
            format!("{what}[{i}]"),
            if v[i].is_finite() {
                format!("{} exceeds the plottable magnitude 1e300", v[i])
            } else {
                format!("{} is not finite", v[i])
            },
        )),
    }
}

/// Sizes scaled from a 1200×700 reference image, and how thick lines are drawn.
struct Look {
    s: f64,
    /// Draw thick data lines with a square brush of 1 px lines (raster output) instead of
    /// plotters' polygon outline, whose even-odd fill leaves holes where a line folds back on
    /// itself (sharp peaks, dense spectra).
    brush: bool,
}

impl Look {
    fn new((w, h): (u32, u32), brush: bool) -> Look {
        // Linear above the reference size; below it text shrinks more slowly than the image,
        // to stay readable.
        let r = (f64::from(w) / 1200.0).min(f64::from(h) / 700.0);
        Look {
            s: if r >= 1.0 { r } else { r.sqrt() }.clamp(0.6, 3.0),
            brush,
        }
    }
    fn px(&self, v: f64) -> i32 {
        (v * self.s).round().max(1.0) as i32
    }
    fn font(&self, size: f64, style: FontStyle) -> TextStyle<'static> {
        FontDesc::new(FontFamily::SansSerif, size * self.s, style).color(&BLACK)
    }
    fn title(&self) -> TextStyle<'static> {
        self.font(32.0, FontStyle::Bold)
    }
    fn tick(&self) -> TextStyle<'static> {
        self.font(20.0, FontStyle::Normal)
    }
    fn desc(&self) -> TextStyle<'static> {
        self.font(22.0, FontStyle::Normal)
    }
    fn legend(&self) -> TextStyle<'static> {
        self.font(20.0, FontStyle::Normal)
    }
    fn line(&self, c: RGBColor) -> ShapeStyle {
        c.stroke_width(self.px(2.0) as u32)
    }
}

type Area<DB> = DrawingArea<DB, Shift>;
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn text_size<DB: DrawingBackend>(
    area: &Area<DB>,
    text: &str,
    style: &TextStyle,
) -> Result<(i32, i32), PlotError> {
    let (w, h) = area.estimate_text_size(text, style).map_err(draw_err)?;
    Ok((w as i32, h as i32))
}

fn max_text_width<DB: DrawingBackend>(
    area: &Area<DB>,
    texts: impl IntoIterator<Item = String>,
    style: &TextStyle,
) -> Result<i32, PlotError> {
    let mut w = 0;
    for t in texts {
        w = w.max(text_size(area, &t, style)?.0);
    }
    Ok(w)
}

/// Fills the background, draws the title and returns the area below it.
fn title_area<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    look: &Look,
) -> Result<Area<DB>, PlotError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let h = look.px(58.0);
    if !title.trim().is_empty() {
        let (w, _) = root.dim_in_pixel();
        let mut style = look.title();
        let (tw, _) = text_size(root, title, &style)?;
        let room = w as i32 - 2 * look.px(20.0);
        if tw > room {
            // Shrink a long title to fit rather than clip it.
            let size = look.s * 32.0 * f64::from(room) / f64::from(tw);
            style = FontDesc::new(FontFamily::SansSerif, size, FontStyle::Bold).color(&BLACK);
        }
        root.draw(&Text::new(
            title.to_string(),
            (w as i32 / 2, h / 2 + look.px(4.0)),
            style.pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(draw_err)?;
    }
    Ok(root.margin(h, 0, 0, 0))
}

/// Builds the chart (draws nothing).
#[allow(clippy::too_many_arguments)]
fn build<'a, DB: DrawingBackend>(
    area: &'a Area<DB>,
    look: &Look,
    right: i32,
    x_label_h: i32,
    y_label_w: i32,
    right_label_w: i32,
    x: (f64, f64),
    y: (f64, f64),
) -> Result<Chart<'a, DB>, PlotError> {
    ChartBuilder::on(area)
        .margin_top(look.px(12.0))
        .margin_bottom(look.px(12.0))
        .margin_left(look.px(12.0))
        .margin_right(right)
        .x_label_area_size(x_label_h)
        .y_label_area_size(y_label_w)
        .right_y_label_area_size(right_label_w)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(draw_err)
}

/// The legend: its entries, laid out in a column (or, when a column cannot be kept off the
/// lines, in one row).
struct Legend {
    entries: Vec<(String, RGBColor)>,
    text_w: Vec<i32>,
    text_h: i32,
    row_h: i32,
    pad: i32,
    sample: i32,
    gap: i32,
    horizontal: bool,
    /// No place keeps it off the lines: the background is drawn translucent.
    over_lines: bool,
}

impl Legend {
    fn new<DB: DrawingBackend>(
        area: &Area<DB>,
        look: &Look,
        entries: Vec<(String, RGBColor)>,
    ) -> Result<Legend, PlotError> {
        let font = look.legend();
        let text_w = entries
            .iter()
            .map(|e| text_size(area, &e.0, &font).map(|s| s.0))
            .collect::<Result<Vec<i32>, PlotError>>()?;
        let text_h = text_size(area, "Ag", &font)?.1;
        Ok(Legend {
            entries,
            text_w,
            text_h,
            row_h: (f64::from(text_h) * 1.45).round() as i32,
            pad: look.px(10.0),
            sample: look.px(34.0),
            gap: look.px(10.0),
            horizontal: false,
            over_lines: false,
        })
    }

    /// Width of one entry: sample line, gap, text.
    fn entry_w(&self, i: usize) -> i32 {
        self.sample + self.gap + self.text_w[i]
    }

    fn size(&self) -> (i32, i32) {
        let n = self.entries.len() as i32;
        if self.horizontal {
            let entries: i32 = (0..self.entries.len()).map(|i| self.entry_w(i)).sum();
            (
                2 * self.pad + entries + (n - 1).max(0) * 2 * self.gap,
                2 * self.pad + self.text_h,
            )
        } else {
            let widest = (0..self.entries.len())
                .map(|i| self.entry_w(i))
                .max()
                .unwrap_or(0);
            (
                2 * self.pad + widest,
                2 * self.pad + n * self.row_h - (self.row_h - self.text_h) / 2,
            )
        }
    }

    fn margin(look: &Look) -> i32 {
        look.px(12.0)
    }

    /// Chooses the layout, corner and head-room for lines given in normalised coordinates
    /// (a column if it can be kept off the lines, else a row, else a translucent column over
    /// the lines — only in plots too small for the legend).
    fn place(&mut self, look: &Look, plot: (u32, u32), lines: &[Vec<Pt>]) -> LegendPlace {
        for horizontal in [false, true] {
            self.horizontal = horizontal;
            let size = self.size();
            if size.0 + 2 * Legend::margin(look) > plot.0 as i32 {
                continue;
            }
            if let Some(place) = geom::place_legend(
                lines,
                (f64::from(plot.0), f64::from(plot.1)),
                (f64::from(size.0), f64::from(size.1)),
                f64::from(Legend::margin(look)),
                f64::from(look.px(8.0)),
            ) {
                return place;
            }
        }
        self.horizontal = false;
        self.over_lines = true;
        LegendPlace {
            corner: Corner::UpperRight,
            headroom: 0.0,
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &Area<DB>,
        look: &Look,
        plot_px: &(std::ops::Range<i32>, std::ops::Range<i32>),
        corner: Corner,
    ) -> Result<(), PlotError> {
        let m = Legend::margin(look);
        let (w, h) = self.size();
        let x0 = match corner {
            Corner::UpperRight => plot_px.0.end - m - w,
            Corner::UpperLeft => plot_px.0.start + m,
        };
        let y0 = plot_px.1.start + m;
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + w, y0 + h)],
            if self.over_lines {
                WHITE.mix(0.75).filled()
            } else {
                WHITE.filled()
            },
        ))
        .map_err(draw_err)?;
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + w, y0 + h)],
            LEGEND_BORDER.stroke_width(1),
        ))
        .map_err(draw_err)?;
        let font = look.legend();
        let mut xs = x0 + self.pad;
        for (i, (label, c)) in self.entries.iter().enumerate() {
            // Text is centred a little above the middle of its row box, as it looks centred.
            let cy = if self.horizontal {
                y0 + self.pad + self.text_h / 2 - look.px(2.0)
            } else {
                y0 + self.pad + self.row_h * i as i32 + self.row_h / 2 - look.px(2.0)
            };
            if !self.horizontal {
                xs = x0 + self.pad;
            }
            root.draw(&PathElement::new(
                vec![(xs, cy), (xs + self.sample, cy)],
                look.line(*c),
            ))
            .map_err(draw_err)?;
            root.draw(&Text::new(
                label.clone(),
                (xs + self.sample + self.gap, cy),
                font.pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(draw_err)?;
            xs += self.entry_w(i) + 2 * self.gap;
        }
        Ok(())
    }
}

/// Draws a closed frame around the plotting area.
fn frame<DB: DrawingBackend>(
    root: &Area<DB>,
    px: &(std::ops::Range<i32>, std::ops::Range<i32>),
) -> Result<(), PlotError> {
    root.draw(&Rectangle::new(
        [(px.0.start, px.1.start), (px.0.end - 1, px.1.end - 1)],
        BLACK.stroke_width(1),
    ))
    .map_err(draw_err)
}

/// Draws polyline pieces (single points as dots) of the chart `area` onto `root`.
fn draw_pieces<DB: DrawingBackend, CT: CoordTranslate<From = Pt>>(
    root: &Area<DB>,
    area: &DrawingArea<DB, CT>,
    look: &Look,
    pieces: &[Vec<Pt>],
    c: RGBColor,
) -> Result<(), PlotError> {
    let style = look.line(c);
    let w = style.stroke_width as i32;
    for piece in pieces {
        if piece.len() == 1 {
            area.draw(&Circle::new(piece[0], look.px(3.0), c.filled()))
                .map_err(draw_err)?;
        } else if look.brush && w > 1 {
            let px: Vec<(i32, i32)> = piece.iter().map(|p| area.map_coordinate(p)).collect();
            let offsets = -(w - 1) / 2..=w / 2;
            for dx in offsets.clone() {
                for dy in offsets.clone() {
                    let shifted: Vec<(i32, i32)> =
                        px.iter().map(|&(x, y)| (x + dx, y + dy)).collect();
                    root.draw(&PathElement::new(shifted, c.stroke_width(1)))
                        .map_err(draw_err)?;
                }
            }
        } else {
            area.draw(&PathElement::new(piece.clone(), style))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Spectra

struct PTrace {
    label: String,
    colour: RGBColor,
    /// Visible pieces, stacking offset applied.
    pieces: Vec<Vec<Pt>>,
    /// The trace's zero line when stacked.
    baseline: Option<f64>,
}

/// A validated spectrum plot, clipped to its ppm range.
pub(super) struct PreparedSpectrum {
    title: String,
    y_label: String,
    size: (u32, u32),
    /// `(lo, hi)`, lo < hi.
    x_range: (f64, f64),
    stacked: bool,
    traces: Vec<PTrace>,
    y_extent: (f64, f64),
}

impl PreparedSpectrum {
    pub(super) fn new(plot: &SpectrumPlot) -> Result<PreparedSpectrum, PlotError> {
        let size = (plot.width, plot.height);
        check_size(size)?;
        if plot.traces.is_empty() {
            return Err(invalid("traces", "no traces to plot"));
        }
        for (i, t) in plot.traces.iter().enumerate() {
            let name = format!("trace {i} ({:?})", t.label);
            if t.x.is_empty() {
                return Err(invalid(name, "has no points"));
            }
            if t.x.len() != t.y.len() {
                return Err(invalid(
                    name,
                    format!("x has {} points but y has {}", t.x.len(), t.y.len()),
                ));
            }
            check_values(&format!("{name} x"), &t.x)?;
            check_values(&format!("{name} y"), &t.y)?;
        }
        let x_range = match plot.ppm_range {
            Some((a, b)) => {
                check_values("ppm_range", &[a, b])?;
                if a == b {
                    return Err(invalid(
                        "ppm_range",
                        format!("({a}, {b}) is empty: the two ends must differ"),
                    ));
                }
                (a.min(b), a.max(b))
            }
            None => {
                let (lo, hi) = plot
                    .traces
                    .iter()
                    .flat_map(|t| t.x.iter())
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    });
                geom::axis_range(lo, hi, 0.0)
            }
        };
        let mut traces: Vec<PTrace> = plot
            .traces
            .iter()
            .enumerate()
            .map(|(i, t)| PTrace {
                label: t.label.clone(),
                colour: colour(i),
                pieces: geom::clip_x(&t.x, &t.y, x_range.0, x_range.1),
                baseline: None,
            })
            .collect();
        if traces.iter().all(|t| t.pieces.is_empty()) {
            return Err(invalid(
                "ppm_range",
                format!(
                    "no point of any trace lies in ({}, {}) ppm",
                    x_range.0, x_range.1
                ),
            ));
        }
        let stacked = plot.stacked && traces.len() > 1;
        if stacked {
            let (lo, hi) = geom::y_extent(traces.iter().flat_map(|t| t.pieces.iter()))
                .expect("some trace is visible");
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let spacing = if hi > lo { 1.1 * (hi - lo) } else { 1.0 };
            let n = traces.len();
            for (k, t) in traces.iter_mut().enumerate() {
                let off = (n - 1 - k) as f64 * spacing;
                for p in t.pieces.iter_mut() {
                    for pt in p.iter_mut() {
                        pt.1 += off;
                    }
                }
                t.baseline = Some(off);
            }
        }
        let (mut lo, mut hi) = geom::y_extent(traces.iter().flat_map(|t| t.pieces.iter()))
            .expect("some trace is visible");
        for t in &traces {
            if let Some(b) = t.baseline {
                lo = lo.min(b);
                hi = hi.max(b);
            }
        }
        if !(hi - lo).is_finite() {
            return Err(invalid(
                "traces",
                format!("the y values span ({lo}, {hi}), too wide to plot"),
            ));
        }
        Ok(PreparedSpectrum {
            title: plot.title.clone(),
            y_label: plot.y_label.clone(),
            size,
            x_range,
            stacked,
            traces,
            y_extent: (lo, hi),
        })
    }
}

/// Draws a spectrum plot; `raster` for bitmap output.
pub(super) fn spectrum<DB: DrawingBackend>(
    root: &Area<DB>,
    p: &PreparedSpectrum,
    raster: bool,
) -> Result<(), PlotError> {
    let look = Look::new(p.size, raster);
    let area = title_area(root, &p.title, &look)?;
    let (x_lo, x_hi) = p.x_range;
    let tick_font = look.tick();
    let desc_font = look.desc();
    let tick_h = text_size(&area, "0123456789", &tick_font)?.1;
    let desc_h = text_size(&area, "Ag", &desc_font)?.1;
    let x_label_h = tick_h + desc_h + look.px(30.0);
    let right = if p.stacked {
        max_text_width(
            &area,
            p.traces.iter().map(|t| t.label.clone()),
            &look.legend(),
        )? + look.px(36.0)
    } else {
        look.px(40.0)
    };
    let (aw, ah) = area.dim_in_pixel();
    let n_x = ((f64::from(aw) / (100.0 * look.s)) as usize).clamp(3, 16);
    let n_y = ((f64::from(ah) / (70.0 * look.s)) as usize).clamp(3, 12);
    let n_y = if p.stacked { 0 } else { n_y };
    let y_label_w = |range: (f64, f64)| -> Result<i32, PlotError> {
        if p.stacked {
            return Ok(desc_h + look.px(24.0));
        }
        let f = TickFormat::for_ticks(&geom::ticks(range.0, range.1, n_y));
        let labels = geom::ticks(range.0, range.1, n_y)
            .into_iter()
            .map(|t| f.format(t));
        Ok(max_text_width(&area, labels, &tick_font)? + desc_h + look.px(30.0))
    };

    let mut y_range = geom::axis_range(p.y_extent.0, p.y_extent.1, 0.05);
    let legend = if !p.stacked && p.traces.len() > 1 {
        let mut legend = Legend::new(
            &area,
            &look,
            p.traces
                .iter()
                .map(|t| (t.label.clone(), t.colour))
                .collect(),
        )?;
        let chart = build(
            &area,
            &look,
            right,
            x_label_h,
            y_label_w(y_range)?,
            0,
            (x_hi, x_lo),
            y_range,
        )?;
        let dims = chart.plotting_area().dim_in_pixel();
        let lines: Vec<Vec<Pt>> = p
            .traces
            .iter()
            .flat_map(|t| t.pieces.iter())
            .map(|piece| geom::normalise(piece, p.x_range, y_range, true))
            .collect();
        let place = legend.place(&look, dims, &lines);
        y_range = geom::with_headroom(y_range, place.headroom);
        Some((legend, place.corner))
    } else {
        None
    };

    let mut chart = build(
        &area,
        &look,
        right,
        x_label_h,
        y_label_w(y_range)?,
        0,
        (x_hi, x_lo),
        y_range,
    )?;
    let xf = TickFormat::for_ticks(&geom::ticks(x_lo, x_hi, n_x));
    let yf = TickFormat::for_ticks(&geom::ticks(y_range.0, y_range.1, n_y.max(1)));
    let x_fmt = |v: &f64| xf.format(*v);
    let y_fmt = |v: &f64| yf.format(*v);
    chart
        .configure_mesh()
        .x_labels(n_x)
        .y_labels(n_y)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc("Chemical shift (ppm)")
        .y_desc(p.y_label.clone())
        .label_style(tick_font.clone())
        .axis_desc_style(desc_font.clone())
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK)
        .draw()
        .map_err(draw_err)?;

    let zero_style = ZERO.stroke_width(1);
    if p.stacked {
        for t in &p.traces {
            if let Some(b) = t.baseline {
                chart
                    .plotting_area()
                    .draw(&PathElement::new(vec![(x_hi, b), (x_lo, b)], zero_style))
                    .map_err(draw_err)?;
            }
        }
    } else if y_range.0 < 0.0 && 0.0 < y_range.1 {
        chart
            .plotting_area()
            .draw(&PathElement::new(
                vec![(x_hi, 0.0), (x_lo, 0.0)],
                zero_style,
            ))
            .map_err(draw_err)?;
    }
    for t in &p.traces {
        draw_pieces(root, chart.plotting_area(), &look, &t.pieces, t.colour)?;
    }
    let px = chart.plotting_area().get_pixel_range();
    frame(root, &px)?;
    if let Some((legend, corner)) = legend {
        legend.draw(root, &look, &px, corner)?;
    }
    if p.stacked {
        let font = look.legend();
        for t in &p.traces {
            if let Some(b) = t.baseline {
                let (_, y) = chart.backend_coord(&(x_lo, b));
                root.draw(&Text::new(
                    t.label.clone(),
                    (px.0.end + look.px(10.0), y),
                    font.color(&t.colour)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(draw_err)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Waveforms

/// A validated waveform plot (times in ms).
pub(super) struct PreparedWaveform {
    title: String,
    size: (u32, u32),
    dt_ms: f64,
    ux: Vec<f64>,
    uy: Vec<f64>,
    amp: Vec<f64>,
    amp_max: f64,
    /// Phase in degrees; `None` where the amplitude is negligible.
    phase: Vec<Option<f64>>,
}

/// The lines of a waveform plot.
struct WaveLines {
    ux: Vec<Pt>,
    uy: Vec<Pt>,
    amp: Vec<Pt>,
    phase: Vec<Vec<Pt>>,
}

/// Phase steps larger than this (wraps through ±180°, sign flips of the amplitude) break the
/// phase line instead of being joined by a vertical stroke.
const PHASE_BREAK_DEG: f64 = 90.0;

/// Segments at least this wide (px) are drawn as steps; narrower ones as a line through the
/// segment centres (steps that fine only add jaggies).
const MIN_STEP_PX: f64 = 4.0;

impl PreparedWaveform {
    pub(super) fn new(plot: &WaveformPlot) -> Result<PreparedWaveform, PlotError> {
        let size = (plot.width, plot.height);
        check_size(size)?;
        let dt = plot.dt;
        if !(1e-12..=1e3).contains(&dt) {
            return Err(invalid(
                "dt",
                format!("{dt} s is outside 1e-12..=1e3 s (it must be a positive duration)"),
            ));
        }
        if plot.ux.is_empty() {
            return Err(invalid("ux", "the waveform has no segments"));
        }
        if plot.ux.len() != plot.uy.len() {
            return Err(invalid(
                "uy",
                format!(
                    "ux has {} segments but uy has {}",
                    plot.ux.len(),
                    plot.uy.len()
                ),
            ));
        }
        check_values("ux", &plot.ux)?;
        check_values("uy", &plot.uy)?;
        let n = plot.ux.len();
        if n as f64 * dt > 1e6 {
            return Err(invalid(
                "dt",
                format!("{n} segments of {dt} s last more than 1e6 s"),
            ));
        }
        let amp: Vec<f64> = plot
            .ux
            .iter()
            .zip(&plot.uy)
            .map(|(x, y)| x.hypot(*y))
            .collect();
        let amp_max = amp.iter().fold(0.0f64, |m, a| m.max(*a));
        if !amp_max.is_finite() {
            return Err(invalid("ux, uy", "the amplitude |u| overflows"));
        }
        let phase = (0..n)
            .map(|k| {
                (amp_max > 0.0 && amp[k] > 1e-3 * amp_max)
                    .then(|| plot.uy[k].atan2(plot.ux[k]).to_degrees())
            })
            .collect();
        Ok(PreparedWaveform {
            title: plot.title.clone(),
            size,
            dt_ms: dt * 1e3,
            ux: plot.ux.clone(),
            uy: plot.uy.clone(),
            amp,
            amp_max,
            phase,
        })
    }

    fn t_ms(&self) -> f64 {
        self.ux.len() as f64 * self.dt_ms
    }

    /// The lines, as steps or through the segment centres.
    fn lines(&self, steps: bool) -> WaveLines {
        let dt = self.dt_ms;
        let line = |v: &[f64]| -> Vec<Pt> {
            if steps {
                v.iter()
                    .enumerate()
                    .flat_map(|(k, &v)| [(k as f64 * dt, v), ((k + 1) as f64 * dt, v)])
                    .collect()
            } else {
                v.iter()
                    .enumerate()
                    .map(|(k, &v)| ((k as f64 + 0.5) * dt, v))
                    .collect()
            }
        };
        let mut phase = Vec::new();
        let mut cur: Vec<Pt> = Vec::new();
        let mut last: Option<f64> = None;
        for (k, ph) in self.phase.iter().enumerate() {
            let jump = match (last, ph) {
                (Some(a), Some(b)) => (a - b).abs() > PHASE_BREAK_DEG,
                _ => true,
            };
            if jump && !cur.is_empty() {
                phase.push(std::mem::take(&mut cur));
            }
            if let Some(ph) = *ph {
                if steps {
                    cur.push((k as f64 * dt, ph));
                    cur.push(((k + 1) as f64 * dt, ph));
                } else {
                    cur.push(((k as f64 + 0.5) * dt, ph));
                }
            }
            last = *ph;
        }
        if !cur.is_empty() {
            phase.push(cur);
        }
        WaveLines {
            ux: line(&self.ux),
            uy: line(&self.uy),
            amp: line(&self.amp),
            phase,
        }
    }
}

/// The phase axis: ticks every 90° from −180° to 180° (plotters would pick multiples of 100).
#[derive(Clone)]
struct PhaseAxis {
    lo: f64,
    hi: f64,
}

impl Ranged for PhaseAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.lo..self.hi).map(v, limit)
    }
    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.max_num_points() == 0 {
            Vec::new()
        } else {
            PHASE_TICKS.to_vec()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

const PHASE_TICKS: [f64; 5] = [-180.0, -90.0, 0.0, 90.0, 180.0];

const UX_COLOUR: RGBColor = RGBColor(31, 119, 180);
const UY_COLOUR: RGBColor = RGBColor(255, 127, 14);
const AMP_COLOUR: RGBColor = RGBColor(60, 60, 60);
const PHASE_COLOUR: RGBColor = RGBColor(44, 160, 44);

/// Draws a waveform plot; `raster` for bitmap output.
pub(super) fn waveform<DB: DrawingBackend>(
    root: &Area<DB>,
    p: &PreparedWaveform,
    raster: bool,
) -> Result<(), PlotError> {
    let look = Look::new(p.size, raster);
    let area = title_area(root, &p.title, &look)?;
    let (top, bottom) = {
        let (_, h) = area.dim_in_pixel();
        area.split_vertically(h / 2)
    };
    let tick_font = look.tick();
    let desc_font = look.desc();
    let tick_h = text_size(&area, "0123456789", &tick_font)?.1;
    let desc_h = text_size(&area, "Ag", &desc_font)?.1;
    let x_label_h = tick_h + desc_h + look.px(26.0);
    let (aw, ah) = top.dim_in_pixel();
    let n_x = ((f64::from(aw) / (100.0 * look.s)) as usize).clamp(3, 16);
    let n_y = ((f64::from(ah) / (60.0 * look.s)) as usize).clamp(3, 10);
    let t = (0.0, p.t_ms());

    // Top panel: ux, uy.
    let (lo, hi) =
        p.ux.iter()
            .chain(&p.uy)
            .fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mut top_range = geom::axis_range(lo, hi, 0.06);
    // Bottom panel: |u| from zero, phase on the right.
    let mut amp_range = if p.amp_max > 1e-200 {
        (0.0, 1.06 * p.amp_max)
    } else {
        (0.0, 1.0)
    };
    let mut phase_range = (-180.0, 180.0);

    let label_w = |range: (f64, f64)| -> Result<i32, PlotError> {
        let ticks = geom::ticks(range.0, range.1, n_y);
        let f = TickFormat::for_ticks(&ticks);
        max_text_width(&area, ticks.into_iter().map(|t| f.format(t)), &tick_font)
    };
    let right_w = max_text_width(
        &area,
        PHASE_TICKS.iter().map(|t| format!("{t:.0}")),
        &tick_font,
    )? + desc_h
        + look.px(30.0);
    let left_w = |top_range, amp_range| -> Result<i32, PlotError> {
        Ok(label_w(top_range)?.max(label_w(amp_range)?) + desc_h + look.px(30.0))
    };

    // Legends, placed on provisional charts.
    let margin_right = look.px(12.0);
    let mut top_legend = Legend::new(
        &area,
        &look,
        vec![
            ("ux (in phase)".to_string(), UX_COLOUR),
            ("uy (quadrature)".to_string(), UY_COLOUR),
        ],
    )?;
    let mut bottom_legend = Legend::new(
        &area,
        &look,
        vec![
            ("|B1| (left axis)".to_string(), AMP_COLOUR),
            ("phase (right axis)".to_string(), PHASE_COLOUR),
        ],
    )?;
    let lw = left_w(top_range, amp_range)?;
    let (top_place, w) = {
        let chart = build(
            &top,
            &look,
            margin_right + right_w,
            x_label_h,
            lw,
            0,
            t,
            top_range,
        )?;
        let dims = chart.plotting_area().dim_in_pixel();
        let steps = f64::from(dims.0) / p.ux.len() as f64 >= MIN_STEP_PX;
        let w = p.lines(steps);
        let lines = [
            geom::normalise(&w.ux, t, top_range, false),
            geom::normalise(&w.uy, t, top_range, false),
        ];
        (top_legend.place(&look, dims, &lines), w)
    };
    let bottom_place = {
        let chart = build(
            &bottom,
            &look,
            margin_right,
            x_label_h,
            lw,
            right_w,
            t,
            amp_range,
        )?;
        let dims = chart.plotting_area().dim_in_pixel();
        let mut lines = vec![geom::normalise(&w.amp, t, amp_range, false)];
        lines.extend(
            w.phase
                .iter()
                .map(|piece| geom::normalise(piece, t, phase_range, false)),
        );
        bottom_legend.place(&look, dims, &lines)
    };
    top_range = geom::with_headroom(top_range, top_place.headroom);
    amp_range = geom::with_headroom(amp_range, bottom_place.headroom);
    phase_range = geom::with_headroom(phase_range, bottom_place.headroom);
    let lw = left_w(top_range, amp_range)?;

    let tf = TickFormat::for_ticks(&geom::ticks(t.0, t.1, n_x));
    let t_fmt = |v: &f64| tf.format(*v);

    // Top panel.
    {
        let mut chart = build(
            &top,
            &look,
            margin_right + right_w,
            x_label_h,
            lw,
            0,
            t,
            top_range,
        )?;
        let yf = TickFormat::for_ticks(&geom::ticks(top_range.0, top_range.1, n_y));
        let y_fmt = |v: &f64| yf.format(*v);
        chart
            .configure_mesh()
            .x_labels(n_x)
            .y_labels(n_y)
            .x_label_formatter(&t_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc("Time (ms)")
            .y_desc("B1 (Hz)")
            .label_style(tick_font.clone())
            .axis_desc_style(desc_font.clone())
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        if top_range.0 < 0.0 && 0.0 < top_range.1 {
            chart
                .plotting_area()
                .draw(&PathElement::new(
                    vec![(t.0, 0.0), (t.1, 0.0)],
                    ZERO.stroke_width(1),
                ))
                .map_err(draw_err)?;
        }
        draw_pieces(
            root,
            chart.plotting_area(),
            &look,
            std::slice::from_ref(&w.ux),
            UX_COLOUR,
        )?;
        draw_pieces(
            root,
            chart.plotting_area(),
            &look,
            std::slice::from_ref(&w.uy),
            UY_COLOUR,
        )?;
        let px = chart.plotting_area().get_pixel_range();
        frame(root, &px)?;
        top_legend.draw(root, &look, &px, top_place.corner)?;
    }

    // Bottom panel.
    {
        let chart = build(
            &bottom,
            &look,
            margin_right,
            x_label_h,
            lw,
            right_w,
            t,
            amp_range,
        )?;
        let mut chart = chart.set_secondary_coord(
            t.0..t.1,
            PhaseAxis {
                lo: phase_range.0,
                hi: phase_range.1,
            },
        );
        let yf = TickFormat::for_ticks(&geom::ticks(amp_range.0, amp_range.1, n_y));
        let y_fmt = |v: &f64| yf.format(*v);
        let phase_fmt = |v: &f64| format!("{v:.0}");
        chart
            .configure_mesh()
            .x_labels(n_x)
            .y_labels(n_y)
            .x_label_formatter(&t_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc("Time (ms)")
            .y_desc("|B1| (Hz)")
            .label_style(tick_font.clone())
            .axis_desc_style(desc_font.clone())
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        chart
            .configure_secondary_axes()
            .y_label_formatter(&phase_fmt)
            .y_desc("Phase (°)")
            .label_style(tick_font.clone())
            .axis_desc_style(desc_font.clone())
            .axis_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        draw_pieces(
            root,
            chart.plotting_area(),
            &look,
            std::slice::from_ref(&w.amp),
            AMP_COLOUR,
        )?;
        draw_pieces(
            root,
            chart.secondary_plotting_area(),
            &look,
            &w.phase,
            PHASE_COLOUR,
        )?;
        let px = chart.plotting_area().get_pixel_range();
        frame(root, &px)?;
        bottom_legend.draw(root, &look, &px, bottom_place.corner)?;
    }
    Ok(())
}
