//! Layout arithmetic of the plots, free of any backend: clipping polylines to the shown
//! range, axis ranges, tick positions and labels, legend placement.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;

/// A point in data coordinates.
pub(super) type Pt = (f64, f64);

/// Clips the polyline through `(x[i], y[i])` to `lo ≤ x ≤ hi` (exactly, by linear
/// interpolation at the ends). Returns the visible pieces, each with at least one point.
pub(super) fn clip_x(x: &[f64], y: &[f64], lo: f64, hi: f64) -> Vec<Vec<Pt>> {
    let mut pieces = Vec::new();
    if x.len() == 1 {
        if lo <= x[0] && x[0] <= hi {
            pieces.push(vec![(x[0], y[0])]);
        }
        return pieces;
    }
    let mut cur: Vec<Pt> = Vec::new();
    let flush = |cur: &mut Vec<Pt>, pieces: &mut Vec<Vec<Pt>>| {
        if !cur.is_empty() {
            pieces.push(std::mem::take(cur));
        }
    };
    for i in 0..x.len().saturating_sub(1) {
        let (x0, y0, x1, y1) = (x[i], y[i], x[i + 1], y[i + 1]);
        let dx = x1 - x0;
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        if dx == 0.0 {
            if x0 < lo || x0 > hi {
                flush(&mut cur, &mut pieces);
                continue;
            }
        } else {
            let ta = (lo - x0) / dx;
            let tb = (hi - x0) / dx;
            t0 = t0.max(ta.min(tb));
            t1 = t1.min(ta.max(tb));
            if t0 > t1 {
                flush(&mut cur, &mut pieces);
                continue;
            }
        }
        let at = |t: f64| -> Pt {
            if t == 0.0 {
                (x0, y0)
            } else if t == 1.0 {
                (x1, y1)
            } else {
                let xi = (x0 + t * dx).clamp(lo, hi);
                (xi, y0 + t * (y1 - y0))
            }
        };
        let p0 = at(t0);
        let p1 = at(t1);
        if cur.last() != Some(&p0) {
            flush(&mut cur, &mut pieces);
            cur.push(p0);
        }
        cur.push(p1);
        if t1 < 1.0 {
            flush(&mut cur, &mut pieces);
        }
    }
    flush(&mut cur, &mut pieces);
    pieces
}

/// Min and max over the y of all points, or `None` when there are none.
pub(super) fn y_extent<'a>(pieces: impl IntoIterator<Item = &'a Vec<Pt>>) -> Option<(f64, f64)> {
    let mut ext: Option<(f64, f64)> = None;
    for piece in pieces {
        for &(_, y) in piece {
            ext = Some(match ext {
                None => (y, y),
                Some((a, b)) => (a.min(y), b.max(y)),
            });
        }
    }
    ext
}

/// An axis range from a data extent: a degenerate extent (all values equal, to 1e-9
/// relative) is widened around its value; otherwise `pad` of the span is added on each side.
pub(super) fn axis_range(min: f64, max: f64, pad: f64) -> (f64, f64) {
    let mag = min.abs().max(max.abs());
    let span = max - min;
    if span <= 1e-9 * mag || span < 1e-200 {
        let c = 0.5 * (min + max);
        let half = if mag > 1e-200 { 0.1 * mag } else { 1.0 };
        (c - half, c + half)
    } else {
        (min - pad * span, max + pad * span)
    }
}

/// Tick positions plotters will use for a range with at most `max_n` labels.
pub(super) fn ticks(lo: f64, hi: f64, max_n: usize) -> Vec<f64> {
    RangedCoordf64::from(lo.min(hi)..lo.max(hi)).key_points(max_n)
}

/// How tick values are written: fixed with `decimals`, or scientific.
#[derive(Clone, Copy, Debug)]
pub(super) struct TickFormat {
    decimals: usize,
    scientific: bool,
}

impl TickFormat {
    /// The shortest format that writes every tick exactly (to 1e-6 of the tick step);
    /// scientific when the largest tick is ≥ 1e5 or < 1e-3 in magnitude.
    pub(super) fn for_ticks(ticks: &[f64]) -> TickFormat {
        let mag = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
        let step = ticks
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .filter(|s| *s > 0.0)
            .fold(f64::INFINITY, f64::min);
        let step = if step.is_finite() { step } else { mag.max(1.0) };
        let scientific = mag >= 1e5 || (mag > 0.0 && mag < 1e-3);
        for decimals in 0..=12 {
            let f = TickFormat {
                decimals,
                scientific,
            };
            let exact = ticks.iter().all(|&t| {
                f.format(t)
                    .parse::<f64>()
                    .is_ok_and(|v| (v - t).abs() <= 1e-6 * step)
            });
            if exact {
                return f;
            }
        }
        TickFormat {
            decimals: 12,
            scientific,
        }
    }

    /// Writes one value; zero (of either sign, or rounding to zero) is written `0`.
    pub(super) fn format(&self, v: f64) -> String {
        let s = if self.scientific {
            format!("{:.*e}", self.decimals, v)
        } else {
            format!("{:.*}", self.decimals, v)
        };
        let is_zero = s
            .trim_start_matches('-')
            .split('e')
            .next()
            .is_some_and(|m| m.chars().all(|c| c == '0' || c == '.'));
        if is_zero { "0".to_string() } else { s }
    }
}

/// A rectangle in normalised plot coordinates: u from left (0) to right (1), v from top (0)
/// to bottom (1).
#[derive(Clone, Copy, Debug)]
pub(super) struct NRect {
    pub u0: f64,
    pub v0: f64,
    pub u1: f64,
    pub v1: f64,
}

/// Whether the polyline (normalised coordinates) enters the rectangle.
pub(super) fn polyline_hits(points: &[Pt], r: &NRect) -> bool {
    let inside = |(u, v): Pt| r.u0 <= u && u <= r.u1 && r.v0 <= v && v <= r.v1;
    if points.len() == 1 {
        return inside(points[0]);
    }
    points.windows(2).any(|w| segment_hits(w[0], w[1], r))
}

/// Liang–Barsky: whether any part of the segment lies in the rectangle.
fn segment_hits(a: Pt, b: Pt, r: &NRect) -> bool {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r.u0),
        (dx, r.u1 - a.0),
        (-dy, a.1 - r.v0),
        (dy, r.v1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return false;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
            if t0 > t1 {
                return false;
            }
        }
    }
    true
}

/// Where a legend goes inside a plotting area.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Corner {
    UpperRight,
    UpperLeft,
}

/// The legend's corner and the fraction of the plot height to keep free at the top (0 when
/// a corner is free as it is).
#[derive(Clone, Copy, Debug)]
pub(super) struct LegendPlace {
    pub corner: Corner,
    pub headroom: f64,
}

/// The legend rectangle (normalised) of a `lw`×`lh` px legend at `corner`, `margin` px from
/// the edges of a `w`×`h` px plotting area, grown by `pad` px on each side.
pub(super) fn legend_rect(
    corner: Corner,
    (w, h): (f64, f64),
    (lw, lh): (f64, f64),
    margin: f64,
    pad: f64,
) -> NRect {
    let (u0, u1) = match corner {
        Corner::UpperRight => (1.0 - (margin + lw + pad) / w, 1.0 - (margin - pad) / w),
        Corner::UpperLeft => ((margin - pad) / w, (margin + lw + pad) / w),
    };
    NRect {
        u0,
        v0: (margin - pad) / h,
        u1,
        v1: (margin + lh + pad) / h,
    }
}

/// Chooses the legend place: the upper-right corner if no line enters it, else the upper
/// left, else upper right with head-room above the data; `None` if that would need more than
/// 45 % of the height. `lines` are in normalised coordinates for the ranges without head-room.
pub(super) fn place_legend(
    lines: &[Vec<Pt>],
    area: (f64, f64),
    legend: (f64, f64),
    margin: f64,
    pad: f64,
) -> Option<LegendPlace> {
    for corner in [Corner::UpperRight, Corner::UpperLeft] {
        let r = legend_rect(corner, area, legend, margin, pad);
        if !lines.iter().any(|l| polyline_hits(l, &r)) {
            return Some(LegendPlace {
                corner,
                headroom: 0.0,
            });
        }
    }
    let need = (margin + legend.1 + 2.0 * pad) / area.1;
    (need <= 0.45).then_some(LegendPlace {
        corner: Corner::UpperRight,
        headroom: need,
    })
}

/// The new top of a range `(bottom, top)` so that `top` lands `headroom` of the height below
/// the new top.
pub(super) fn with_headroom((bottom, top): (f64, f64), headroom: f64) -> (f64, f64) {
    if headroom <= 0.0 {
        return (bottom, top);
    }
    (bottom, (top - headroom * bottom) / (1.0 - headroom))
}

/// Maps data points to normalised coordinates for the given axis ranges; `x_reversed` puts
/// `x_hi` on the left.
pub(super) fn normalise(
    points: &[Pt],
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
    x_reversed: bool,
) -> Vec<Pt> {
    points
        .iter()
        .map(|&(x, y)| {
            let u = if x_reversed {
                (x_hi - x) / (x_hi - x_lo)
            } else {
                (x - x_lo) / (x_hi - x_lo)
            };
            (u, (y_hi - y) / (y_hi - y_lo))
        })
        .collect()
}
