//! Plots: PNG and SVG files of spectra and waveforms exist, hold what they claim (PNG header
//! and pixels decoded here with flate2, SVG text), show the ppm axis decreasing left to right,
//! keep the legend off the lines, reject bad input and are byte-for-byte deterministic.

use std::io::Read;
use std::path::{Path, PathBuf};

use spinloop::plot::{
    PALETTE, PlotError, SpectrumPlot, WaveformPlot, spectrum_rgb, spectrum_svg, waveform_rgb,
    waveform_svg, write_spectrum, write_waveform,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh directory for one test (kept after the run for inspection).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spinloop-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn lorentzian(x: f64, x0: f64, fwhm: f64, a: f64) -> f64 {
    let h = 0.5 * fwhm;
    a * h * h / ((x - x0) * (x - x0) + h * h)
}

/// A ppm axis as an FFT gives it: decreasing.
fn ppm_axis(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 4.5 - 5.0 * i as f64 / (n - 1) as f64)
        .collect()
}

fn spectrum(x: &[f64], peaks: &[(f64, f64)]) -> Vec<f64> {
    x.iter()
        .map(|&x| {
            peaks
                .iter()
                .map(|&(x0, a)| lorentzian(x, x0, 0.05, a))
                .sum()
        })
        .collect()
}

/// Two Lorentzian spectra, before and after.
fn two_trace_plot() -> SpectrumPlot {
    let x = ppm_axis(2048);
    let before = spectrum(&x, &[(2.01, 1.0), (3.03, 0.7), (3.21, 0.6)]);
    let after = spectrum(&x, &[(2.01, 0.8), (3.03, 0.75), (3.21, 0.35), (2.35, 0.3)]);
    SpectrumPlot::new("NAA, Cr and Cho at 3 T")
        .trace("Before", x.clone(), before)
        .trace("After", x, after)
}

/// A sinc-like waveform with a phase ramp.
fn waveform_plot() -> WaveformPlot {
    let n = 400;
    let (mut ux, mut uy) = (Vec::new(), Vec::new());
    for k in 0..n {
        let t = (k as f64 + 0.5) / n as f64 - 0.5;
        let arg = 6.0 * std::f64::consts::PI * t;
        let a = 500.0 * if arg == 0.0 { 1.0 } else { arg.sin() / arg };
        let ph = 2.0 * std::f64::consts::PI * 1.5 * t;
        ux.push(a * ph.cos());
        uy.push(a * ph.sin());
    }
    WaveformPlot::new("Refocusing pulse, 4 ms", 1e-5, ux, uy)
}

struct Png {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// A minimal PNG decoder (8-bit RGB, not interlaced — what the plots write), checking the
/// signature, the chunk layout and the IHDR.
fn decode_png(bytes: &[u8]) -> Png {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut pos = 8;
    let (mut width, mut height) = (0u32, 0u32);
    let mut idat = Vec::new();
    let mut first = true;
    loop {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        if first {
            assert_eq!(kind, b"IHDR", "IHDR must come first");
            assert_eq!(len, 13);
            width = u32::from_be_bytes(data[0..4].try_into().unwrap());
            height = u32::from_be_bytes(data[4..8].try_into().unwrap());
            assert_eq!(data[8], 8, "bit depth");
            assert_eq!(data[9], 2, "colour type RGB");
            assert_eq!(data[12], 0, "not interlaced");
            first = false;
        }
        if kind == b"IDAT" {
            idat.extend_from_slice(data);
        }
        pos += 12 + len;
        if kind == b"IEND" {
            break;
        }
    }
    assert_eq!(pos, bytes.len(), "nothing after IEND");
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = 3 * width as usize;
    assert_eq!(raw.len(), height as usize * (stride + 1));
    let mut rgb = vec![0u8; height as usize * stride];
    for row in 0..height as usize {
        let filter = raw[row * (stride + 1)];
        let line = &raw[row * (stride + 1) + 1..(row + 1) * (stride + 1)];
        for i in 0..stride {
            let a = if i >= 3 { rgb[row * stride + i - 3] } else { 0 };
            let b = if row > 0 {
                rgb[(row - 1) * stride + i]
            } else {
                0
            };
            let c = if row > 0 && i >= 3 {
                rgb[(row - 1) * stride + i - 3]
            } else {
                0
            };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("bad PNG filter {f}"),
            };
            rgb[row * stride + i] = line[i].wrapping_add(pred);
        }
    }
    Png { width, height, rgb }
}

fn pixel(rgb: &[u8], width: u32, x: u32, y: u32) -> (u8, u8, u8) {
    let i = 3 * (y as usize * width as usize + x as usize);
    (rgb[i], rgb[i + 1], rgb[i + 2])
}

/// Counts pixels in the central region (well inside the plotting area) that are not white,
/// and those of the given colour.
fn count_pixels(rgb: &[u8], (w, h): (u32, u32), colour: (u8, u8, u8)) -> (usize, usize) {
    let (mut non_white, mut matching) = (0, 0);
    for y in h / 5..4 * h / 5 {
        for x in w / 5..4 * w / 5 {
            let p = pixel(rgb, w, x, y);
            if p != (255, 255, 255) {
                non_white += 1;
            }
            if p == colour {
                matching += 1;
            }
        }
    }
    (non_white, matching)
}

/// The `<text>` elements of an SVG: (x, y, content).
fn svg_texts(svg: &str) -> Vec<(f64, f64, String)> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        rest = &rest[start..];
        let tag_end = rest.find('>').unwrap();
        let tag = &rest[..tag_end];
        let close = rest.find("</text>").unwrap();
        let content = rest[tag_end + 1..close]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        out.push((attr(tag, "x"), attr(tag, "y"), content));
        rest = &rest[close..];
    }
    out
}

fn attr(tag: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let i = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    let j = tag[i..].find('"').unwrap();
    tag[i..i + j].parse().unwrap()
}

fn attr_str<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(&tag[i..i + j])
}

/// The numeric labels of the horizontal axis: the numeric texts on the lowest common row.
fn x_tick_labels(svg: &str) -> Vec<(f64, f64)> {
    let numeric: Vec<(f64, f64, f64)> = svg_texts(svg)
        .into_iter()
        .filter_map(|(x, y, s)| s.parse::<f64>().ok().map(|v| (x, y, v)))
        .collect();
    let mut rows: Vec<f64> = numeric.iter().map(|t| t.1).collect();
    rows.sort_by(|a, b| b.total_cmp(a));
    rows.dedup();
    let row = rows
        .into_iter()
        .find(|r| numeric.iter().filter(|t| t.1 == *r).count() >= 3)
        .expect("a row of x tick labels");
    let mut ticks: Vec<(f64, f64)> = numeric
        .into_iter()
        .filter(|t| t.1 == row)
        .map(|t| (t.0, t.2))
        .collect();
    ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
    ticks
}

/// The polylines of an SVG with the given stroke: lists of points.
fn svg_polylines(svg: &str, stroke: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|s| &s[..s.find("/>").unwrap()])
        .filter(|tag| attr_str(tag, "stroke") == Some(stroke))
        .map(|tag| {
            attr_str(tag, "points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

/// The legend boxes: the rectangles outlined in the legend border grey.
fn legend_boxes(svg: &str) -> Vec<(f64, f64, f64, f64)> {
    svg.split("<rect")
        .skip(1)
        .map(|s| &s[..s.find("/>").unwrap()])
        .filter(|tag| attr_str(tag, "stroke") == Some("#AAAAAA"))
        .map(|tag| {
            let (x, y) = (attr(tag, "x"), attr(tag, "y"));
            (x, y, x + attr(tag, "width"), y + attr(tag, "height"))
        })
        .collect()
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// There are `n_legends` legends and no vertex of a line of the given colours lies inside
/// one (lines wholly inside a legend are its samples).
fn assert_legend_clear(svg: &str, colours: &[(u8, u8, u8)], n_legends: usize) {
    let boxes = legend_boxes(svg);
    assert_eq!(boxes.len(), n_legends, "legends: {boxes:?}");
    let inside = |(x, y): (f64, f64), &(x0, y0, x1, y1): &(f64, f64, f64, f64)| {
        x0 <= x && x <= x1 && y0 <= y && y <= y1
    };
    for c in colours {
        for line in svg_polylines(svg, &hex(*c)) {
            for b in &boxes {
                if line.iter().all(|p| inside(*p, b)) {
                    continue;
                }
                for p in &line {
                    assert!(
                        !inside(*p, b),
                        "a {} line passes through the legend {b:?} at {p:?}",
                        hex(*c)
                    );
                }
            }
        }
    }
}

/// The colours of the waveform plot's lines: ux, uy, |B1|, phase.
const WAVE_COLOURS: [(u8, u8, u8); 4] = [PALETTE[0], PALETTE[1], (60, 60, 60), PALETTE[2]];

fn assert_invalid(r: Result<impl std::fmt::Debug, PlotError>, what: &str) {
    match r {
        Err(PlotError::InvalidInput { what: w, reason }) => {
            assert!(w.contains(what), "expected {what:?} in {w:?} ({reason})");
            assert!(!reason.is_empty());
        }
        other => panic!("expected InvalidInput about {what}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Spectra

#[test]
fn spectrum_png_and_svg_files() {
    let dir = temp_dir("spectrum");
    let plot = two_trace_plot();
    let png = dir.join("spectrum.png");
    let svg = dir.join("spectrum.SVG");
    write_spectrum(&plot, &png).unwrap();
    write_spectrum(&plot, &svg).unwrap();
    assert_eq!(
        files_in(&dir),
        ["spectrum.SVG", "spectrum.png"],
        "no temporary files left"
    );

    let bytes = std::fs::read(&png).unwrap();
    let decoded = decode_png(&bytes);
    assert_eq!((decoded.width, decoded.height), (1200, 700));
    // The PNG holds exactly the pixels of the in-memory rendering.
    let rgb = spectrum_rgb(&plot).unwrap();
    assert_eq!(decoded.rgb, rgb);
    let (non_white, blue) = count_pixels(&rgb, (1200, 700), PALETTE[0]);
    let (_, orange) = count_pixels(&rgb, (1200, 700), PALETTE[1]);
    assert!(
        non_white > 5_000,
        "plot area nearly blank: {non_white} pixels"
    );
    assert!(blue > 500, "first trace colour: {blue} pixels");
    assert!(orange > 500, "second trace colour: {orange} pixels");

    // Much more drawn than in an empty-looking plot of a flat line.
    let x = ppm_axis(64);
    let flat = SpectrumPlot::new("flat").trace("zero", x.clone(), vec![0.0; x.len()]);
    let flat_rgb = spectrum_rgb(&flat).unwrap();
    let (flat_non_white, _) = count_pixels(&flat_rgb, (1200, 700), PALETTE[0]);
    assert!(non_white > flat_non_white + 3_000);

    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    assert_eq!(text, spectrum_svg(&plot).unwrap());
    let texts: Vec<String> = svg_texts(&text).into_iter().map(|t| t.2).collect();
    for want in [
        "NAA, Cr and Cho at 3 T",
        "Chemical shift (ppm)",
        "Real (a.u.)",
        "Before",
        "After",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
    }
    assert_legend_clear(&text, &PALETTE[..2], 1);
}

#[test]
fn ppm_axis_decreases_left_to_right() {
    let plot = two_trace_plot();
    let ticks = x_tick_labels(&spectrum_svg(&plot).unwrap());
    assert!(ticks.len() >= 4, "{ticks:?}");
    for w in ticks.windows(2) {
        assert!(
            w[0].0 < w[1].0 && w[0].1 > w[1].1,
            "not reversed: {ticks:?}"
        );
    }
    // All data: the labels span most of 4.5 … −0.5.
    assert!(
        ticks[0].1 >= 4.0 && ticks[ticks.len() - 1].1 <= 0.0,
        "{ticks:?}"
    );

    // A sub-range, given in either order, is what is shown.
    for range in [(1.0, 4.0), (4.0, 1.0)] {
        let mut p = two_trace_plot();
        p.ppm_range = Some(range);
        let ticks = x_tick_labels(&spectrum_svg(&p).unwrap());
        assert!(ticks.len() >= 4, "{ticks:?}");
        for w in ticks.windows(2) {
            assert!(
                w[0].0 < w[1].0 && w[0].1 > w[1].1,
                "not reversed: {ticks:?}"
            );
        }
        assert!(
            ticks.iter().all(|t| (1.0..=4.0).contains(&t.1)),
            "{ticks:?}"
        );
        assert_eq!(ticks[0].1, 4.0);
        assert_eq!(ticks[ticks.len() - 1].1, 1.0);
    }

    // The biggest peak (NAA, 2.01 ppm) is drawn right of Cr (3.03 ppm): find the x of the
    // highest point (smallest SVG y) of the first trace.
    let svg = spectrum_svg(&plot).unwrap();
    let line = svg_polylines(&svg, &hex(PALETTE[0]))
        .into_iter()
        .max_by_key(|l| l.len())
        .unwrap();
    let top = line.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let ticks = x_tick_labels(&svg);
    let at = |ppm: f64| {
        let (a, b) = (ticks[0], ticks[ticks.len() - 1]);
        a.0 + (ppm - a.1) / (b.1 - a.1) * (b.0 - a.0)
    };
    assert!(
        (top.0 - at(2.01)).abs() < 3.0,
        "NAA drawn at x = {}, expected {}",
        top.0,
        at(2.01)
    );
}

#[test]
fn legend_moves_or_makes_room_to_stay_off_the_lines() {
    // Peaks in both upper corners: the legend must not cover them.
    let x = ppm_axis(2048);
    let a = spectrum(&x, &[(4.4, 1.0), (2.0, 0.5), (-0.4, 1.0)]);
    let b = spectrum(&x, &[(4.3, 0.9), (3.0, 0.5), (-0.3, 0.95)]);
    let plot = SpectrumPlot::new("Crowded corners")
        .trace("first trace with a long label", x.clone(), a)
        .trace("second", x, b);
    assert_legend_clear(&spectrum_svg(&plot).unwrap(), &PALETTE[..2], 1);
    write_spectrum(&plot, &temp_dir("crowded").join("crowded.png")).unwrap();

    // A single trace has no legend.
    let x = ppm_axis(256);
    let one = SpectrumPlot::new("One").trace("only", x.clone(), spectrum(&x, &[(2.0, 1.0)]));
    let svg = spectrum_svg(&one).unwrap();
    assert!(legend_boxes(&svg).is_empty());
    assert!(!svg_texts(&svg).iter().any(|t| t.2 == "only"));
}

#[test]
fn stacked_basis_set() {
    let dir = temp_dir("stacked");
    let x = ppm_axis(1024);
    let mut plot = SpectrumPlot::new("PRESS basis, TE 30 ms");
    for (name, peaks) in [
        ("NAA", vec![(2.01, 1.0), (2.49, 0.1), (2.67, 0.1)]),
        ("Cr", vec![(3.03, 0.6), (3.92, 0.4)]),
        ("Cho", vec![(3.21, 0.9)]),
        ("Lac", vec![(1.31, 0.5), (1.33, -0.5)]),
    ] {
        plot = plot.trace(name, x.clone(), spectrum(&x, &peaks));
    }
    plot.stacked = true;
    plot.ppm_range = Some((0.5, 4.2));
    write_spectrum(&plot, &dir.join("basis.png")).unwrap();
    let svg = spectrum_svg(&plot).unwrap();
    let texts = svg_texts(&svg);
    // Labels on the right of the plot, top to bottom in trace order.
    let label_y: Vec<f64> = ["NAA", "Cr", "Cho", "Lac"]
        .iter()
        .map(|n| texts.iter().find(|t| t.2 == *n).expect(n).1)
        .collect();
    assert!(label_y.windows(2).all(|w| w[0] < w[1]), "{label_y:?}");
    assert!(legend_boxes(&svg).is_empty());
    // Traces do not overlap: the first trace lies wholly above the second.
    let lowest_of = |c| {
        svg_polylines(&svg, &hex(c))
            .into_iter()
            .flatten()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let highest_of = |c| {
        svg_polylines(&svg, &hex(c))
            .into_iter()
            .flatten()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
    };
    assert!(lowest_of(PALETTE[0]) < highest_of(PALETTE[1]));
}

// ---------------------------------------------------------------------------------------------
// Waveforms

#[test]
fn waveform_png_and_svg_files() {
    let dir = temp_dir("waveform");
    let plot = waveform_plot();
    let png = dir.join("pulse.PNG");
    let svg = dir.join("pulse.svg");
    write_waveform(&plot, &png).unwrap();
    write_waveform(&plot, &svg).unwrap();
    assert_eq!(files_in(&dir), ["pulse.PNG", "pulse.svg"]);

    let decoded = decode_png(&std::fs::read(&png).unwrap());
    assert_eq!((decoded.width, decoded.height), (1200, 800));
    let rgb = waveform_rgb(&plot).unwrap();
    assert_eq!(decoded.rgb, rgb);
    let (non_white, blue) = count_pixels(&rgb, (1200, 800), PALETTE[0]);
    assert!(non_white > 5_000 && blue > 300, "{non_white} {blue}");

    let text = std::fs::read_to_string(&svg).unwrap();
    assert_legend_clear(&text, &WAVE_COLOURS, 2);
    let texts: Vec<String> = svg_texts(&text).into_iter().map(|t| t.2).collect();
    for want in [
        "Refocusing pulse, 4 ms",
        "Time (ms)",
        "B1 (Hz)",
        "|B1| (Hz)",
        "Phase (°)",
        "-180",
        "180",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
    }
    // The time axis runs 0 … 4 ms.
    let ticks = x_tick_labels(&text);
    assert_eq!(ticks[0].1, 0.0);
    assert_eq!(ticks[ticks.len() - 1].1, 4.0);
}

#[test]
fn waveform_of_zeros_and_single_segment() {
    for plot in [
        WaveformPlot::new("zeros", 1e-5, vec![0.0; 100], vec![0.0; 100]),
        WaveformPlot::new("one", 1e-3, vec![250.0], vec![-250.0]),
    ] {
        let svg = waveform_svg(&plot).unwrap();
        assert!(svg.contains(&plot.title));
        waveform_rgb(&plot).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input, determinism

#[test]
fn bad_input_is_an_error() {
    let x = ppm_axis(16);
    let y = spectrum(&x, &[(2.0, 1.0)]);
    let ok = SpectrumPlot::new("t").trace("a", x.clone(), y.clone());
    spectrum_svg(&ok).unwrap();

    assert_invalid(spectrum_svg(&SpectrumPlot::new("none")), "traces");
    assert_invalid(
        spectrum_svg(&SpectrumPlot::new("t").trace("a", vec![], vec![])),
        "trace 0",
    );
    assert_invalid(
        spectrum_svg(&ok.clone().trace("b", x.clone(), y[1..].to_vec())),
        "trace 1",
    );
    let mut nan = y.clone();
    nan[3] = f64::NAN;
    assert_invalid(
        spectrum_svg(&ok.clone().trace("b", x.clone(), nan)),
        "trace 1 (\"b\") y[3]",
    );
    let mut inf = x.clone();
    inf[0] = f64::INFINITY;
    assert_invalid(spectrum_svg(&ok.clone().trace("b", inf, y.clone())), "x[0]");
    for (w, h, what) in [
        (0, 700, "width"),
        (1200, 0, "height"),
        (100_000, 700, "width"),
    ] {
        let mut p = ok.clone();
        p.width = w;
        p.height = h;
        assert_invalid(spectrum_svg(&p), what);
        assert_invalid(spectrum_rgb(&p), what);
    }
    for range in [(2.0, 2.0), (f64::NAN, 1.0), (10.0, 20.0)] {
        let mut p = ok.clone();
        p.ppm_range = Some(range);
        assert_invalid(spectrum_svg(&p), "ppm_range");
    }

    let w = waveform_plot();
    waveform_svg(&w).unwrap();
    for (dt, what) in [
        (0.0, "dt"),
        (-1e-5, "dt"),
        (f64::NAN, "dt"),
        (f64::INFINITY, "dt"),
    ] {
        let mut p = w.clone();
        p.dt = dt;
        assert_invalid(waveform_svg(&p), what);
    }
    let mut p = w.clone();
    p.uy.pop();
    assert_invalid(waveform_svg(&p), "uy");
    assert_invalid(
        waveform_svg(&WaveformPlot::new("e", 1e-5, vec![], vec![])),
        "ux",
    );
    let mut p = w.clone();
    p.ux[7] = f64::NAN;
    assert_invalid(waveform_svg(&p), "ux[7]");
    let mut p = w.clone();
    p.height = 10;
    assert_invalid(waveform_svg(&p), "height");

    // Nothing is left behind by a failed write.
    let dir = temp_dir("bad");
    let mut bad = ok.clone();
    bad.width = 0;
    assert_invalid(write_spectrum(&bad, &dir.join("bad.png")), "width");
    assert!(matches!(
        write_spectrum(&ok, &dir.join("plot.jpg")),
        Err(PlotError::UnsupportedExtension(_))
    ));
    assert!(matches!(
        write_spectrum(&ok, &dir.join("no-extension")),
        Err(PlotError::UnsupportedExtension(_))
    ));
    let mut short = w.clone();
    short.ux.pop();
    assert_invalid(write_waveform(&short, &dir.join("w.svg")), "uy");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    for name in ["missing/plot.png", "missing/plot.svg"] {
        match write_spectrum(&ok, &dir.join(name)) {
            Err(PlotError::Io { path, message }) => {
                assert_eq!(path, dir.join(name));
                assert!(!message.is_empty());
            }
            other => panic!("expected an Io error, got {other:?}"),
        }
    }
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    let e = write_spectrum(&ok, &dir.join("plot.jpg")).unwrap_err();
    assert!(e.to_string().contains("plot.jpg"), "{e}");
}

#[test]
fn same_input_same_bytes() {
    let dir = temp_dir("determinism");
    let plot = two_trace_plot();
    let wave = waveform_plot();
    for (i, ext) in ["png", "svg"].iter().enumerate() {
        let a = dir.join(format!("a{i}.{ext}"));
        let b = dir.join(format!("b{i}.{ext}"));
        write_spectrum(&plot, &a).unwrap();
        write_spectrum(&plot, &b).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{ext}"
        );
        write_waveform(&wave, &a).unwrap();
        write_waveform(&wave, &b).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{ext}"
        );
    }
    assert_eq!(spectrum_svg(&plot).unwrap(), spectrum_svg(&plot).unwrap());
    assert_eq!(waveform_rgb(&wave).unwrap(), waveform_rgb(&wave).unwrap());
}

#[test]
fn other_sizes_render() {
    let dir = temp_dir("sizes");
    let mut plot = two_trace_plot();
    let mut wave = waveform_plot();
    for (w, h) in [(320, 240), (800, 500), (2400, 1400)] {
        plot.width = w;
        plot.height = h;
        wave.width = w;
        wave.height = h;
        let rgb = spectrum_rgb(&plot).unwrap();
        assert_eq!(rgb.len(), 3 * w as usize * h as usize);
        let rgb = waveform_rgb(&wave).unwrap();
        assert_eq!(rgb.len(), 3 * w as usize * h as usize);
        write_spectrum(&plot, &dir.join(format!("spectrum-{w}x{h}.png"))).unwrap();
        write_waveform(&wave, &dir.join(format!("waveform-{w}x{h}.png"))).unwrap();
        if w >= 800 {
            // (In a thumbnail the legend may have to cover the lines.)
            assert_legend_clear(&spectrum_svg(&plot).unwrap(), &PALETTE[..2], 1);
            assert_legend_clear(&waveform_svg(&wave).unwrap(), &WAVE_COLOURS, 2);
        }
    }
}

#[test]
fn text_is_escaped_and_unicode_drawn() {
    let x = ppm_axis(128);
    let mut plot = SpectrumPlot::new("T₂ <fit> & \"µ\" 'test'")
        .trace("a < b", x.clone(), spectrum(&x, &[(2.0, 1.0)]))
        .trace("c & d", x.clone(), spectrum(&x, &[(3.0, 1.0)]));
    plot.y_label = "Magnitude (a.u.)".to_string();
    let svg = spectrum_svg(&plot).unwrap();
    let texts: Vec<String> = svg_texts(&svg).into_iter().map(|t| t.2).collect();
    for want in [plot.title.as_str(), "a < b", "c & d", "Magnitude (a.u.)"] {
        assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
    }
    spectrum_rgb(&plot).unwrap();
}

#[test]
fn awkward_values_render() {
    let dir = temp_dir("awkward");
    let x = ppm_axis(64);
    let cases: Vec<(Vec<f64>, Vec<f64>)> = vec![
        (x.clone(), vec![0.0; 64]),
        (x.clone(), vec![1e-300; 64]),
        (x.clone(), x.iter().map(|v| 1e-250 * v).collect()),
        (x.clone(), x.iter().map(|v| 1e300 * v / 5.0).collect()),
        (x.clone(), vec![-7.5; 64]),
        (vec![2.0], vec![1.0]),
        (vec![2.0, 2.0, 2.0], vec![1.0, -1.0, 3.0]),
        // Not monotonic, crossing the window repeatedly.
        (
            (0..200)
                .map(|i| 2.0 + 3.0 * (i as f64 * 0.1).sin())
                .collect(),
            (0..200).map(|i| (i as f64 * 0.37).cos()).collect(),
        ),
    ];
    for (k, (x, y)) in cases.into_iter().enumerate() {
        for stacked in [false, true] {
            for range in [None, Some((1.0, 4.0))] {
                let mut p = SpectrumPlot::new(format!("case {k}"))
                    .trace("a", x.clone(), y.clone())
                    .trace("b", x.clone(), y.iter().map(|v| 0.5 * v).collect());
                p.stacked = stacked;
                p.ppm_range = range;
                p.width = 400;
                p.height = 300;
                // Either a drawing or an InvalidInput (a window holding no data), never a panic.
                match spectrum_rgb(&p) {
                    Ok(rgb) => assert_eq!(rgb.len(), 3 * 400 * 300),
                    Err(e) => assert_invalid(Err::<(), _>(e), "ppm_range"),
                }
                let _ = spectrum_svg(&p);
                if range.is_none() {
                    write_spectrum(&p, &dir.join(format!("case{k}-{stacked}.png"))).unwrap();
                }
            }
        }
    }
    for (ux, uy) in [
        (vec![1e300, -1e300], vec![1e300, 0.0]),
        (vec![1e-300; 3], vec![0.0; 3]),
        (vec![5.0; 100_000], vec![0.0; 100_000]),
    ] {
        let mut w = WaveformPlot::new("w", 1e-6, ux, uy);
        w.width = 400;
        w.height = 300;
        waveform_rgb(&w).unwrap();
        waveform_svg(&w).unwrap();
    }
}

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random finite data, sizes and windows: a plot or an InvalidInput, never a panic.
        #[test]
        fn never_panics(
            traces in prop::collection::vec(
                prop::collection::vec((-10.0f64..10.0, -1e6f64..1e6), 1..40), 1..5),
            range in prop::option::of((-10.0f64..10.0, -10.0f64..10.0)),
            stacked in any::<bool>(),
            w in 320u32..700,
            h in 240u32..500,
            dt in 1e-7f64..1e-3,
            wave in prop::collection::vec((-1e4f64..1e4, -1e4f64..1e4), 1..300),
        ) {
            let mut p = SpectrumPlot::new("random");
            for (i, t) in traces.iter().enumerate() {
                p = p.trace(format!("t{i}"), t.iter().map(|v| v.0).collect(), t.iter().map(|v| v.1).collect());
            }
            p.ppm_range = range;
            p.stacked = stacked;
            p.width = w;
            p.height = h;
            match spectrum_rgb(&p) {
                Ok(rgb) => prop_assert_eq!(rgb.len(), 3 * w as usize * h as usize),
                Err(PlotError::InvalidInput { what, .. }) => prop_assert_eq!(what, "ppm_range"),
                Err(e) => prop_assert!(false, "{e}"),
            }
            let _ = spectrum_svg(&p);
            let mut wp = WaveformPlot::new(
                "random",
                dt,
                wave.iter().map(|v| v.0).collect(),
                wave.iter().map(|v| v.1).collect(),
            );
            wp.width = w;
            wp.height = h;
            prop_assert!(waveform_rgb(&wp).is_ok());
            prop_assert!(waveform_svg(&wp).is_ok());
        }
    }
}
