//! Bruker TopSpin shaped-pulse files (JCAMP-DX 5.00 "Shape Data"), read and written as
//! `shared/reference/interop.md` §2a describes them. This module owns [`BrukerShape`], its
//! reader ([`read_shape`], [`read_shape_file`]), writer ([`write_shape`]) and the conversions to
//! and from [`Shape`].
//!
//! # File layout
//! ```text
//! ##TITLE= <name or path>                      (must be the first labelled line)
//! ##JCAMP-DX= 5.00 Bruker JCAMP library
//! ##DATA TYPE= Shape Data
//! ##ORIGIN= …  ##OWNER= …  ##DATE= …  ##TIME= …
//! ##$SHAPE_PARAMETERS= …                       (optional)
//! ##MINX= <min amplitude %>   ##MAXX= <max amplitude %>
//! ##MINY= <min phase deg>     ##MAXY= <max phase deg>
//! ##$SHAPE_EXMODE= Excitation | Inversion | Refocussing | Universal | None
//! ##$SHAPE_TOTROT= <total rotation, degrees>
//! ##$SHAPE_BWFAC= <excitation bandwidth × pulse length>
//! ##$SHAPE_INTEGFAC= <|Σ a·e^{iφ}| / (N·max a)>
//! ##$SHAPE_MODE= 0
//! ##NPOINTS= <N>
//! ##XYPOINTS= (XY..XY)
//! <amp>, <phase>                               N lines: amplitude % of the shape power
//! ##END=                                       level in [0, 100], phase in degrees
//! ```
//! The file carries no duration: points are equally spaced over the pulse length given in the
//! pulse program, so [`BrukerShape::to_shape`] takes it from the caller.
//!
//! # Reader rules
//! - Labels (`##KEY=`) are kept verbatim and in order in [`BrukerShape::header`]; lookups
//!   ([`BrukerShape::get`]) compare labels as JCAMP-DX does, ignoring case, spaces, `-`, `_`
//!   and `/`. `$$` starts a comment (whole comment lines are skipped; inside values and data
//!   lines the rest of the line is ignored when a number is read).
//! - Required: `##TITLE=` first, `##NPOINTS=`, `##XYPOINTS= (XY..XY)`, one data line per point,
//!   and `##END=` (a truncated file is an error; `##END` without `=`, written by some
//!   third-party tools, is accepted). `##DATA TYPE=`, when present, must be `Shape Data`.
//!   Gradient shapes (`##XYDATA=`, `##$SHAPE_EXMODE= Gradient`) are not RF shapes and are
//!   rejected.
//! - Data lines are `amp, phase` (comma and/or blanks). Amplitudes must be finite and in
//!   [0, 100] (TopSpin rescales values above 100; this reader refuses them rather than guess);
//!   phases must be finite (any range; [`write_shape`] wraps them to [0, 360)). A line
//!   that is not two numbers is an error naming its line number.
//! - `##NPOINTS=` must equal the number of data lines; `##MINX=`/`##MAXX=`/`##MINY=`/`##MAXY=`,
//!   when present, must match the data's extrema within printing precision (half a unit in the
//!   last printed digit of the header value plus the same of the data).
//! - `##$SHAPE_INTEGFAC=` is kept as written; [`BrukerShape::integration_factor`] recomputes it
//!   from the points for a peer check.
//! - Errors name the source (`source` argument or path) and the line: syntax errors are
//!   [`PhysicsError::Parse`], out-of-domain values [`PhysicsError::InvalidParameter`] (field
//!   `"<source> line <n> <what>"`), a wrong point count [`PhysicsError::SizeMismatch`].
//!
//! # Writer rules
//! Numbers are written C-style `%.9e` (`1.000000000e+02`): more digits than TopSpin's own
//! `%e`, so that a write → read round trip reproduces amplitudes to 5e-10 relative and phases
//! to 2e-7°. Lines end with LF; the file ends with `##END=`.

use std::collections::HashMap;
use std::path::Path;

use num_complex::Complex64;

use crate::physics::PhysicsError;
use crate::physics::error::{finite, positive};
use crate::sequence::shapes::Shape;

/// Mantissa digits of the numbers this module writes (`%.9e`).
const DIGITS: usize = 9;

/// Canonical order of the header labels (normalised), used to insert missing labels.
const CANONICAL: [&str; 21] = [
    "TITLE",
    "JCAMPDX",
    "DATATYPE",
    "ORIGIN",
    "OWNER",
    "DATE",
    "TIME",
    "$SHAPEPARAMETERS",
    "MINX",
    "MAXX",
    "MINY",
    "MAXY",
    "$SHAPEEXMODE",
    "$SHAPETOTROT",
    "$SHAPETYPE",
    "$SHAPEBWFAC",
    "$SHAPEINTEGFAC",
    "$SHAPEREPHFAC",
    "$SHAPEMODE",
    "NPOINTS",
    "XYPOINTS",
];

/// `##$SHAPE_EXMODE=` values an RF shape may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExMode {
    /// Excitation pulse.
    Excitation,
    /// Inversion pulse.
    Inversion,
    /// Refocusing pulse (Bruker spells it `Refocussing`).
    Refocussing,
    /// Universal-rotation pulse.
    Universal,
    /// No declared mode.
    None,
}

impl ExMode {
    /// The spelling written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ExMode::Excitation => "Excitation",
            ExMode::Inversion => "Inversion",
            ExMode::Refocussing => "Refocussing",
            ExMode::Universal => "Universal",
            ExMode::None => "None",
        }
    }
}

/// A Bruker shape file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct BrukerShape {
    /// Value of `##TITLE=`.
    pub title: String,
    /// Every `##KEY= value` pair of the header, in file order, from `##TITLE=` up to and
    /// including `##XYPOINTS=` (`##END=` is not stored). Keys are written without `##` and
    /// `=`, e.g. `("$SHAPE_INTEGFAC", "1.000000e+00")`.
    pub header: Vec<(String, String)>,
    /// (amplitude % of the shape power level, phase in degrees), one per point.
    pub points: Vec<(f64, f64)>,
}

/// JCAMP-DX label normalisation: upper case without spaces, `-`, `_`, `/`.
fn norm_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-' | '_' | '/'))
        .flat_map(char::to_uppercase)
        .collect()
}

/// The value without a trailing `$$` comment, trimmed.
fn strip_comment(value: &str) -> &str {
    match value.find("$$") {
        Some(i) => value[..i].trim(),
        None => value.trim(),
    }
}

/// A shortened copy of a line for error messages (shared by the Bruker readers).
pub(crate) fn excerpt(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() <= MAX {
        line.to_string()
    } else {
        let s: String = line.chars().take(MAX).collect();
        format!("{s}…")
    }
}

/// The unit of the last printed digit of a decimal number, e.g. `1.5e+02` → 10, `58.4` → 0.1.
fn printed_unit(token: &str) -> f64 {
    let t = token.trim().trim_start_matches(['+', '-']);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (
            t.get(..i).unwrap_or(""),
            t.get(i + 1..)
                .and_then(|e| e.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (t, 0),
    };
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, f)| f.len().min(400) as i32);
    10f64.powi(exponent.saturating_sub(decimals))
}

/// C-style `%.{DIGITS}e`: `1.000000000e+02`.
fn fmt_e(x: f64) -> String {
    let s = format!("{x:.DIGITS$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let exp: i32 = e.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{m}e{sign}{:02}", exp.unsigned_abs())
        }
        None => s, // NaN / inf: written as is (the reader refuses them)
    }
}

/// Wraps a phase to [0, 360).
fn wrap_deg(p: f64) -> f64 {
    let w = p.rem_euclid(360.0);
    if w >= 360.0 { 0.0 } else { w }
}

/// Per-column extrema of the data with the coarsest printed unit seen.
#[derive(Debug, Clone, Copy)]
struct Column {
    min: f64,
    max: f64,
    unit: f64,
}

impl Column {
    fn new() -> Column {
        Column {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            unit: 0.0,
        }
    }

    fn add(&mut self, x: f64, token: &str) {
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.unit = self.unit.max(printed_unit(token));
    }
}

fn parse_error(source: &str, line: usize, msg: impl std::fmt::Display) -> PhysicsError {
    PhysicsError::Parse(format!("Bruker shape {source}: line {line}: {msg}"))
}

fn field(source: &str, line: usize, what: &str) -> String {
    format!("{source} line {line} {what}")
}

/// Reads a Bruker shape file from text; `source` (a path or name) is used in errors.
pub fn read_shape(text: &str, source: &str) -> Result<BrukerShape, PhysicsError> {
    let mut header: Vec<(String, String)> = Vec::new();
    // Normalised label → line number (duplicate detection and error messages).
    let mut label_lines: HashMap<String, usize> = HashMap::new();
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut amp_col = Column::new();
    let mut phase_col = Column::new();
    let mut in_data = false;
    let mut data_first_line = 0usize;
    let mut end_line = None;
    let mut last_line = 0usize;

    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        last_line = lineno;
        let line = raw.trim();
        if line.is_empty() || line.starts_with("$$") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("##") {
            let (key, value) = match rest.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (rest.trim(), ""),
            };
            let nk = norm_key(key);
            if nk == "END" {
                end_line = Some(lineno);
                break;
            }
            if !rest.contains('=') {
                return Err(parse_error(
                    source,
                    lineno,
                    format!("expected `##LABEL= value`, got {:?}", excerpt(line)),
                ));
            }
            if in_data {
                return Err(parse_error(
                    source,
                    lineno,
                    format!(
                        "label ##{key}= inside the data table (expected `amp, phase` lines \
                         until ##END=)"
                    ),
                ));
            }
            if header.is_empty() && nk != "TITLE" {
                return Err(parse_error(
                    source,
                    lineno,
                    format!("the first label must be ##TITLE=, got ##{key}="),
                ));
            }
            if nk == "XYDATA" {
                return Err(parse_error(
                    source,
                    lineno,
                    "##XYDATA= is a gradient shape; only RF shapes (##XYPOINTS= (XY..XY)) are \
                     supported",
                ));
            }
            if let Some(first) = label_lines.get(&nk) {
                return Err(parse_error(
                    source,
                    lineno,
                    format!("duplicate label ##{key}= (first on line {first})"),
                ));
            }
            match nk.as_str() {
                "DATATYPE" if norm_key(strip_comment(value)) != "SHAPEDATA" => {
                    return Err(parse_error(
                        source,
                        lineno,
                        format!("##{key}= {value:?}: not a shape file (expected `Shape Data`)"),
                    ));
                }
                "$SHAPEEXMODE" if norm_key(strip_comment(value)) == "GRADIENT" => {
                    return Err(parse_error(
                        source,
                        lineno,
                        "##$SHAPE_EXMODE= Gradient: gradient shapes are not RF shapes",
                    ));
                }
                "XYPOINTS" => {
                    let v: String = strip_comment(value)
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    if !v.eq_ignore_ascii_case("(XY..XY)") {
                        return Err(parse_error(
                            source,
                            lineno,
                            format!("##{key}= {value:?}: expected (XY..XY)"),
                        ));
                    }
                    in_data = true;
                    data_first_line = lineno + 1;
                }
                _ => {}
            }
            header.push((key.to_string(), value.to_string()));
            label_lines.insert(nk, lineno);
            continue;
        }
        if !in_data {
            return Err(parse_error(
                source,
                lineno,
                format!(
                    "unexpected line {:?} before ##XYPOINTS= (header lines start with ##)",
                    excerpt(line)
                ),
            ));
        }
        // Data line: amp, phase.
        let body = strip_comment(line);
        let fields: Vec<&str> = if body.contains(',') {
            body.split(',').map(str::trim).collect()
        } else {
            body.split_whitespace().collect()
        };
        let [amp_tok, phase_tok] = fields.as_slice() else {
            return Err(parse_error(
                source,
                lineno,
                format!("expected `amplitude, phase`, got {:?}", excerpt(line)),
            ));
        };
        let amp: f64 = amp_tok.parse().map_err(|_| {
            parse_error(
                source,
                lineno,
                format!("amplitude {:?} is not a number", excerpt(amp_tok)),
            )
        })?;
        let phase: f64 = phase_tok.parse().map_err(|_| {
            parse_error(
                source,
                lineno,
                format!("phase {:?} is not a number", excerpt(phase_tok)),
            )
        })?;
        finite(field(source, lineno, "amplitude"), amp)?;
        finite(field(source, lineno, "phase"), phase)?;
        if !(0.0..=100.0).contains(&amp) {
            return Err(PhysicsError::invalid(
                field(source, lineno, "amplitude"),
                amp,
                "must be in [0, 100] % of the shape power level",
            ));
        }
        amp_col.add(amp, amp_tok);
        phase_col.add(phase, phase_tok);
        points.push((amp, phase));
    }

    let Some(end_line) = end_line else {
        if last_line == 0 {
            return Err(PhysicsError::Parse(format!(
                "Bruker shape {source}: the file is empty (no ##TITLE=, no ##END=)"
            )));
        }
        return Err(parse_error(
            source,
            last_line,
            "no ##END= (file truncated?)",
        ));
    };
    if !in_data {
        return Err(parse_error(
            source,
            end_line,
            "##END= before any ##XYPOINTS= (XY..XY) data table",
        ));
    }

    let shape = BrukerShape {
        title: header.first().map(|(_, v)| v.clone()).unwrap_or_default(),
        header,
        points,
    };
    let line_of = |nk: &str| -> usize { label_lines.get(nk).copied().unwrap_or(0) };

    // ##NPOINTS
    let Some(np_value) = shape.get("NPOINTS") else {
        return Err(parse_error(
            source,
            data_first_line.saturating_sub(1),
            "missing ##NPOINTS=",
        ));
    };
    let np_line = line_of("NPOINTS");
    let npoints: usize = strip_comment(np_value).parse().map_err(|_| {
        parse_error(
            source,
            np_line,
            format!(
                "##NPOINTS= {:?} is not a non-negative integer",
                excerpt(np_value)
            ),
        )
    })?;
    if npoints != shape.points.len() {
        return Err(PhysicsError::SizeMismatch {
            what: format!(
                "{source}: ##NPOINTS= on line {np_line} vs data lines {data_first_line}..{end_line}"
            ),
            expected: npoints,
            got: shape.points.len(),
        });
    }
    if npoints == 0 {
        return Err(PhysicsError::invalid(
            field(source, np_line, "##NPOINTS"),
            0,
            "a shape needs at least 1 point",
        ));
    }

    // ##MINX/##MAXX/##MINY/##MAXY against the data.
    for (label, data, col) in [
        ("MINX", amp_col.min, &amp_col),
        ("MAXX", amp_col.max, &amp_col),
        ("MINY", phase_col.min, &phase_col),
        ("MAXY", phase_col.max, &phase_col),
    ] {
        let Some(value) = shape.get(label) else {
            continue;
        };
        let l = line_of(label);
        let text_value = strip_comment(value);
        let h: f64 = text_value.parse().map_err(|_| {
            parse_error(
                source,
                l,
                format!("##{label}= {:?} is not a number", excerpt(value)),
            )
        })?;
        finite(field(source, l, &format!("##{label}")), h)?;
        let tol = 0.5 * (printed_unit(text_value) + col.unit)
            + 4.0 * f64::EPSILON * h.abs().max(data.abs());
        if (h - data).abs() > tol {
            return Err(PhysicsError::invalid(
                field(source, l, &format!("##{label}")),
                h,
                format!(
                    "the data's {} is {data}: inconsistent beyond printing precision \
                     (tolerance {tol:e})",
                    match label {
                        "MINX" => "minimum amplitude",
                        "MAXX" => "maximum amplitude",
                        "MINY" => "minimum phase",
                        _ => "maximum phase",
                    }
                ),
            ));
        }
    }
    Ok(shape)
}

/// Reads a Bruker shape file from disk (bytes that are not UTF-8, e.g. a Latin-1 `##OWNER=`,
/// are replaced, not rejected). Errors name the path.
pub fn read_shape_file(path: impl AsRef<Path>) -> Result<BrukerShape, PhysicsError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| PhysicsError::invalid("path", path.display(), format!("cannot read: {e}")))?;
    read_shape(
        &String::from_utf8_lossy(&bytes),
        &path.display().to_string(),
    )
}

/// Writes a shape file. `##TITLE=` comes from [`BrukerShape::title`]; `##NPOINTS=`,
/// `##MINX=`…`##MAXY=` and `##XYPOINTS=` are derived from the points (inserted in canonical
/// order when the header lacks them); every other header pair is written as stored, with
/// line breaks in values replaced by blanks. Points are written `%.9e`, phases wrapped to
/// [0, 360). The output is accepted by [`read_shape`] whenever the points are (amplitudes
/// finite in [0, 100], phases finite, at least one point) — [`BrukerShape::from_shape`] and
/// [`read_shape`] guarantee that; check hand-built values with [`BrukerShape::validate`].
pub fn write_shape(shape: &BrukerShape) -> String {
    let data: Vec<(String, String)> = shape
        .points
        .iter()
        .map(|&(a, p)| (fmt_e(a), fmt_e(wrap_deg(p))))
        .collect();
    let (mut minx, mut maxx, mut miny, mut maxy) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (a, p) in &data {
        // Extrema of the printed values, so the header matches the data exactly.
        let a: f64 = a.parse().unwrap_or(f64::NAN);
        let p: f64 = p.parse().unwrap_or(f64::NAN);
        minx = minx.min(a);
        maxx = maxx.max(a);
        miny = miny.min(p);
        maxy = maxy.max(p);
    }
    if data.is_empty() {
        (minx, maxx, miny, maxy) = (0.0, 0.0, 0.0, 0.0);
    }
    let mut h = shape.clone();
    h.set_header("TITLE", &shape.title);
    h.set_header("MINX", &fmt_e(minx));
    h.set_header("MAXX", &fmt_e(maxx));
    h.set_header("MINY", &fmt_e(miny));
    h.set_header("MAXY", &fmt_e(maxy));
    h.set_header("NPOINTS", &data.len().to_string());
    h.set_header("XYPOINTS", "(XY..XY)");

    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = String::new();
    for (k, v) in &h.header {
        let nk = norm_key(k);
        if nk == "XYPOINTS" || nk == "END" {
            continue;
        }
        let v = clean(v);
        if v.is_empty() {
            out.push_str(&format!("##{}=\n", clean(k)));
        } else {
            out.push_str(&format!("##{}= {v}\n", clean(k)));
        }
    }
    out.push_str("##XYPOINTS= (XY..XY)\n");
    for (a, p) in &data {
        out.push_str(&format!("{a}, {p}\n"));
    }
    out.push_str("##END=\n");
    out
}

impl BrukerShape {
    /// A shape file for `shape` (|s| ≤ 1 → amplitude 100·|s| %, phase arg s in degrees wrapped
    /// to [0, 360)). The header is, in order: `##TITLE=` `title`, `##JCAMP-DX= 5.00 Bruker
    /// JCAMP library`, `##DATA TYPE= Shape Data`, `##ORIGIN= spinloop <version>`,
    /// `##OWNER= spinloop`, `##MINX=`…`##MAXY=` of the points, `##$SHAPE_EXMODE=` `exmode`,
    /// `##$SHAPE_TOTROT=` `totrot_deg`, `##$SHAPE_BWFAC=` [`Shape::bandwidth_hz`]·T (0 when
    /// the kind has none), `##$SHAPE_INTEGFAC=` [`BrukerShape::integration_factor`],
    /// `##$SHAPE_MODE= 0`, `##NPOINTS=`, `##XYPOINTS= (XY..XY)`. `##DATE=`/`##TIME=` are not
    /// written (this library reads no clock); add them with [`BrukerShape::set_header`].
    pub fn from_shape(
        shape: &Shape,
        title: &str,
        exmode: ExMode,
        totrot_deg: f64,
    ) -> Result<BrukerShape, PhysicsError> {
        if title.contains(['\r', '\n']) {
            return Err(PhysicsError::invalid(
                "title",
                format!("{title:?}"),
                "must be a single line",
            ));
        }
        finite("totrot_deg", totrot_deg)?;
        if shape.samples.is_empty() {
            return Err(PhysicsError::invalid(
                format!("{}.samples", shape.name),
                "[]",
                "a shape needs at least 1 sample",
            ));
        }
        let mut points = Vec::with_capacity(shape.samples.len());
        for (k, s) in shape.samples.iter().enumerate() {
            if !(s.re.is_finite() && s.im.is_finite()) {
                return Err(PhysicsError::invalid(
                    format!("{}.samples[{k}]", shape.name),
                    s,
                    "must be finite",
                ));
            }
            let a = s.norm();
            if a > 1.0 + 1e-12 {
                return Err(PhysicsError::invalid(
                    format!("{}.samples[{k}]", shape.name),
                    s,
                    "|sample| must be <= 1 (100 %)",
                ));
            }
            let phase = if a > 0.0 { s.arg().to_degrees() } else { 0.0 };
            points.push(((100.0 * a).min(100.0), wrap_deg(phase)));
        }
        let bwfac = shape.bandwidth_hz().map_or(0.0, |bw| bw * shape.duration());
        let mut b = BrukerShape {
            title: title.trim().to_string(),
            header: vec![
                ("TITLE".into(), title.trim().to_string()),
                ("JCAMP-DX".into(), "5.00 Bruker JCAMP library".into()),
                ("DATA TYPE".into(), "Shape Data".into()),
                (
                    "ORIGIN".into(),
                    format!("spinloop {}", env!("CARGO_PKG_VERSION")),
                ),
                ("OWNER".into(), "spinloop".into()),
                ("$SHAPE_EXMODE".into(), exmode.as_str().into()),
                ("$SHAPE_TOTROT".into(), fmt_e(totrot_deg)),
                ("$SHAPE_BWFAC".into(), fmt_e(bwfac)),
                ("$SHAPE_INTEGFAC".into(), String::new()),
                ("$SHAPE_MODE".into(), "0".into()),
            ],
            points,
        };
        let integfac = b.integration_factor();
        b.set_header("$SHAPE_INTEGFAC", &fmt_e(integfac));
        // MINX…MAXY, NPOINTS, XYPOINTS: the same values write_shape derives.
        let written = read_shape(&write_shape(&b), title)?;
        Ok(BrukerShape {
            points: b.points,
            ..written
        })
    }

    /// The [`Shape`] these points describe over a pulse of `duration` s: N samples of raster
    /// duration/N, s_k = (amp_k/100)·e^{i·phase_k}; named after the title, kind
    /// [`ShapeKind::Custom`](crate::sequence::shapes::ShapeKind::Custom). The amplitudes are
    /// not renormalised (a file whose largest amplitude is 50 % gives max |s| = 0.5).
    pub fn to_shape(&self, duration: f64) -> Result<Shape, PhysicsError> {
        positive("duration", duration)?;
        self.validate()?;
        let n = self.points.len();
        let samples = self
            .points
            .iter()
            .map(|&(a, p)| Complex64::from_polar((a / 100.0).min(1.0), p.to_radians()))
            .collect();
        Shape::from_samples(self.title.clone(), duration / n as f64, samples)
    }

    /// Checks the points: at least one, amplitudes finite in [0, 100], phases finite.
    pub fn validate(&self) -> Result<(), PhysicsError> {
        if self.points.is_empty() {
            return Err(PhysicsError::invalid(
                format!("{}.points", self.title),
                "[]",
                "a shape needs at least 1 point",
            ));
        }
        for (k, &(a, p)) in self.points.iter().enumerate() {
            let f = format!("{}.points[{k}]", self.title);
            finite(format!("{f}.amplitude"), a)?;
            finite(format!("{f}.phase"), p)?;
            if !(0.0..=100.0).contains(&a) {
                return Err(PhysicsError::invalid(
                    format!("{f}.amplitude"),
                    a,
                    "must be in [0, 100] %",
                ));
            }
        }
        Ok(())
    }

    /// `##$SHAPE_INTEGFAC` as interop.md §2a defines it, recomputed from the points:
    /// |∫B1 dt| / (B1max·T) = |Σ a_k·e^{iφ_k}| / (N·max a_k) — the coherent (signed) mean of
    /// the complex amplitude normalised to the peak; 1 for a hard pulse, 0 for an all-zero
    /// shape.
    pub fn integration_factor(&self) -> f64 {
        let max = self.points.iter().map(|p| p.0).fold(0.0, f64::max);
        if self.points.is_empty() || max <= 0.0 {
            return 0.0;
        }
        let sum: Complex64 = self
            .points
            .iter()
            .map(|&(a, p)| Complex64::from_polar(a, p.to_radians()))
            .sum();
        sum.norm() / (self.points.len() as f64 * max)
    }

    /// The value of a header label, compared as JCAMP-DX does (case, spaces, `-`, `_`, `/`
    /// ignored; without `##` and `=`), e.g. `get("$SHAPE_TOTROT")`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let nk = norm_key(key.trim_start_matches('#').trim_end_matches('='));
        self.header
            .iter()
            .find(|(k, _)| norm_key(k) == nk)
            .map(|(_, v)| v.as_str())
    }

    /// A header value as a number (a trailing `$$` comment is ignored): `Ok(None)` when the
    /// label is absent, an error naming the label when it is not a finite number.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, PhysicsError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let x: f64 = strip_comment(v).parse().map_err(|_| {
            PhysicsError::Parse(format!(
                "Bruker shape {}: ##{key}= {:?} is not a number",
                self.title,
                excerpt(v)
            ))
        })?;
        finite(format!("{}: ##{key}", self.title), x).map(Some)
    }

    /// `##$SHAPE_EXMODE=`, if present.
    pub fn exmode(&self) -> Option<&str> {
        self.get("$SHAPE_EXMODE")
    }

    /// `##$SHAPE_TOTROT=` (degrees), if present.
    pub fn totrot_deg(&self) -> Result<Option<f64>, PhysicsError> {
        self.get_f64("$SHAPE_TOTROT")
    }

    /// Sets a header label: replaces its value where it is, or inserts it after the last
    /// present label that precedes it in the canonical order of interop.md §2a (unknown labels
    /// go just before `##NPOINTS=`, or at the end). Setting `TITLE` also sets
    /// [`BrukerShape::title`].
    pub fn set_header(&mut self, key: &str, value: &str) {
        let key = key.trim_start_matches('#').trim_end_matches('=').trim();
        let nk = norm_key(key);
        if nk == "TITLE" {
            self.title = value.to_string();
        }
        if let Some(entry) = self.header.iter_mut().find(|(k, _)| norm_key(k) == nk) {
            entry.1 = value.to_string();
            return;
        }
        let rank = |k: &str| CANONICAL.iter().position(|c| *c == k);
        let my_rank = rank(&nk).or_else(|| rank("$SHAPEMODE"));
        let pos = match my_rank {
            Some(r) => self
                .header
                .iter()
                .rposition(|(k, _)| rank(&norm_key(k)).is_some_and(|kr| kr <= r))
                .map_or(0, |i| i + 1),
            None => self.header.len(),
        };
        self.header
            .insert(pos, (key.to_string(), value.to_string()));
    }
}
