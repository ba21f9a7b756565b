//! `spinloop optimize` end to end, as a user runs it, on a small problem: every output is
//! written and agrees with itself and with the problem (the Bruker shape with its own header
//! and with the waveform JSON, the waveform within the peak limit, the Pulseq header with the
//! waveform and the acquisition, the report's objective table and product-operator section);
//! a warm start from the written waveform continues from the same loss; pypulseq reads the
//! `.seq` (signature, timing, RF samples); bad input fails before any output is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use spinloop::design::problem::{ProblemSpec, WaveformFile};
use spinloop::formats::bruker::read_shape_file;

const BIN: &str = env!("CARGO_BIN_EXE_spinloop");
const PROBLEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/problems/small_glu_gln_press.toml"
);
const NAME: &str = "small_glu_gln_press";
const OUTPUTS: [&str; 7] = [
    ".waveform.json",
    ".seq",
    ".bruker.shape",
    ".spectra.png",
    ".waveform.png",
    ".product_operators.txt",
    ".report.md",
];

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spinloop-cliopt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run spinloop")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "spinloop {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn spec() -> ProblemSpec {
    ProblemSpec::from_toml(&std::fs::read_to_string(PROBLEM).unwrap(), PROBLEM).unwrap()
}

/// Runs the small problem for 3 iterations into `out` (plus `extra` arguments).
fn optimize(out: &Path, extra: &[&str]) -> String {
    let out = out.display().to_string();
    let mut args = vec![
        "optimize",
        PROBLEM,
        "--out",
        &out,
        "--iterations",
        "3",
        "--compare-grid",
        "0",
        "--quiet",
    ];
    args.extend(extra);
    ok(&args)
}

fn output(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!("{NAME}{suffix}"))
}

fn read_waveform(dir: &Path) -> WaveformFile {
    serde_json::from_str(&std::fs::read_to_string(output(dir, ".waveform.json")).unwrap()).unwrap()
}

/// The "- loss: a → b" line of the report.
fn report_losses(report: &str) -> (f64, f64) {
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix("- loss: "))
        .unwrap_or_else(|| panic!("no loss line in\n{report}"));
    let (a, b) = line.split_once(" → ").unwrap();
    (a.trim().parse().unwrap(), b.trim().parse().unwrap())
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn optimize_writes_consistent_outputs() {
    let spec = spec();
    let d = tmpdir("outputs");
    let stdout = optimize(&d, &[]);
    assert!(stdout.contains("wrote:"), "{stdout}");
    for s in OUTPUTS {
        let p = output(&d, s);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .len();
        assert!(len > 0, "{} is empty", p.display());
        assert!(stdout.contains(&p.display().to_string()), "{stdout}");
    }
    for s in [".spectra.png", ".waveform.png"] {
        let bytes = std::fs::read(output(&d, s)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{s} is not a PNG");
    }

    // The waveform: the problem's segments and raster, finite, within the peak limit.
    let w = read_waveform(&d);
    let n = spec.pulse.segments;
    let limit = spec.limits.peak_b1_hz;
    assert_eq!((w.ux.len(), w.uy.len()), (n, n));
    assert!(rel(w.dt, spec.pulse.dt_us * 1e-6) < 1e-12, "dt {}", w.dt);
    assert_eq!(w.peak_b1_hz, Some(limit));
    let mag: Vec<f64> = w.ux.iter().zip(&w.uy).map(|(x, y)| x.hypot(*y)).collect();
    assert!(mag.iter().all(|m| m.is_finite()));
    let peak = mag.iter().copied().fold(0.0, f64::max);
    assert!(
        peak > 0.0 && peak <= limit,
        "peak {peak} Hz, limit {limit} Hz"
    );
    spec.limits
        .check_waveform(&w.ux, &w.uy, w.dt, None)
        .unwrap();

    // The Bruker shape against its own header and against the waveform.
    let shape = read_shape_file(output(&d, ".bruker.shape")).unwrap();
    let h = |k: &str| {
        shape
            .get_f64(k)
            .unwrap()
            .unwrap_or_else(|| panic!("no ##{k}="))
    };
    assert_eq!(shape.points.len(), n);
    assert_eq!(h("NPOINTS"), n as f64);
    let amps: Vec<f64> = shape.points.iter().map(|p| p.0).collect();
    let phases: Vec<f64> = shape.points.iter().map(|p| p.1).collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for (key, want) in [
        ("MINX", min(&amps)),
        ("MAXX", max(&amps)),
        ("MINY", min(&phases)),
        ("MAXY", max(&phases)),
    ] {
        assert!(
            (h(key) - want).abs() <= 1e-12 * want.abs().max(1.0),
            "##{key}= {} but the points give {want}",
            h(key)
        );
    }
    assert_eq!(h("MAXX"), 100.0, "amplitudes are % of the peak");
    let integfac = h("$SHAPE_INTEGFAC");
    assert!(
        rel(integfac, shape.integration_factor()) < 1e-8,
        "##$SHAPE_INTEGFAC= {integfac}, points give {}",
        shape.integration_factor()
    );
    // … and |∫B1 dt|/(B1max·T) of the waveform itself.
    let (sx, sy) = (w.ux.iter().sum::<f64>(), w.uy.iter().sum::<f64>());
    let from_waveform = sx.hypot(sy) / (n as f64 * peak);
    assert!(
        rel(integfac, from_waveform) < 1e-8,
        "##$SHAPE_INTEGFAC= {integfac}, waveform gives {from_waveform}"
    );
    assert_eq!(shape.exmode(), Some("Excitation"));
    for (k, &(a, phase)) in shape.points.iter().enumerate() {
        let m = a / 100.0 * peak;
        assert!(
            (m - mag[k]).abs() <= 1e-9 * peak,
            "point {k}: amplitude {a} % of {peak} Hz = {m} Hz, |u| = {} Hz",
            mag[k]
        );
        if mag[k] > 1e-3 * peak {
            let want = w.uy[k].atan2(w.ux[k]).to_degrees().rem_euclid(360.0);
            let diff = (phase - want + 180.0).rem_euclid(360.0) - 180.0;
            assert!(
                diff.abs() < 1e-6,
                "point {k}: phase {phase}°, waveform {want}°"
            );
        }
    }

    // The Pulseq file: the RF amplitude is the waveform's peak, the ADC the acquisition's.
    let seq = std::fs::read_to_string(output(&d, ".seq")).unwrap();
    let section = |name: &str| -> Vec<Vec<String>> {
        seq.lines()
            .skip_while(|l| l.trim() != name)
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    };
    let rf = section("[RF]");
    assert_eq!(rf.len(), 1, "{rf:?}");
    let amp: f64 = rf[0][1].parse().unwrap();
    assert!(
        rel(amp, peak) < 1e-8,
        "[RF] amplitude {amp} Hz, peak {peak} Hz"
    );
    assert_eq!(rf[0].last().unwrap(), "e");
    let adc = section("[ADC]");
    assert_eq!(adc.len(), 1, "{adc:?}");
    assert_eq!(adc[0][1], spec.acquisition.points.to_string());
    let dwell_ns: f64 = adc[0][2].parse().unwrap();
    assert!(rel(dwell_ns, spec.acquisition.dwell_ms * 1e6) < 1e-12);
    assert_eq!(section("[BLOCKS]").len(), 2);

    // The report: problem size, the objective table with every part, the product operators.
    let report = std::fs::read_to_string(output(&d, ".report.md")).unwrap();
    for needle in [
        &format!("# {NAME}"),
        &format!("{n} segments × 20.0 µs"),
        &format!("limit {limit:.1} Hz"),
        "2 members",
        "× 9 grid positions",
        "lbfgs — 3 iterations",
        "| objective part | start | optimized |",
        "| crlb%(Gln) |",
        "| corr²(Glu,Gln) |",
        "| enhancement(NAA) |",
        "| suppression(Glu) |",
        "## Product operators",
        "Glu / glutamate",
        "Gln / glutamine",
        "NAA / CH3",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
    let po = std::fs::read_to_string(output(&d, ".product_operators.txt")).unwrap();
    assert!(
        report.contains(&po),
        "the report quotes the product operators"
    );
    assert!(po.contains("I1y") || po.contains("I1x"), "{po}");
    let table: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| objective") && !l.starts_with("| ---"))
        .collect();
    assert_eq!(table.len(), spec.objectives.len(), "{table:?}");
    for row in table {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        for c in &cells[1..] {
            assert!(c.parse::<f64>().is_ok_and(f64::is_finite), "{row}");
        }
    }
    let (start, end) = report_losses(&report);
    assert!(end < start, "loss {start} → {end}");

    // A warm start from the written waveform continues from the loss the first run ended at.
    let d2 = tmpdir("warm");
    let json = output(&d, ".waveform.json").display().to_string();
    optimize(&d2, &["--warm-start", &json]);
    let report2 = std::fs::read_to_string(output(&d2, ".report.md")).unwrap();
    let (start2, end2) = report_losses(&report2);
    assert!(
        rel(start2, end) < 1e-6,
        "warm start begins at loss {start2}, the previous run ended at {end}"
    );
    assert!(end2 <= start2);
    for dir in [d, d2] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

fn fails_without_output(problem: &Path, extra: &[&str], needles: &[&str]) {
    let out_dir = tmpdir("bad").join("never");
    let out = out_dir.display().to_string();
    let problem = problem.display().to_string();
    let mut args = vec!["optimize", &problem, "--out", &out, "--quiet"];
    args.extend(extra);
    let started = std::time::Instant::now();
    let r = run(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "spinloop {args:?} should fail");
    for n in needles {
        assert!(err.contains(n), "spinloop {args:?}: {err:?} lacks {n:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !out_dir.exists() || std::fs::read_dir(&out_dir).unwrap().next().is_none(),
        "{} has output although the problem was rejected",
        out_dir.display()
    );
    println!(
        "{extra:?}: failed in {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        err.trim()
    );
}

#[test]
fn bad_problem_fails_before_writing_anything() {
    let d = tmpdir("badfile");
    let bad = d.join("unknown_metabolite.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(PROBLEM)
            .unwrap()
            .replace("\"NAA\"]", "\"Unobtainium\"]"),
    )
    .unwrap();
    fails_without_output(
        &bad,
        &[],
        &[
            "Unobtainium",
            "unknown metabolite",
            "unknown_metabolite.toml",
        ],
    );
    // An unknown optimizer from the command line.
    fails_without_output(
        Path::new(PROBLEM),
        &["--method", "bfgs"],
        &["optimizer.method", "bfgs"],
    );
    // A missing problem file names the file.
    fails_without_output(&d.join("missing.toml"), &[], &["missing.toml"]);
    std::fs::remove_dir_all(d).unwrap();
}

const PEER: &str = r#"
import hashlib, json, sys, warnings
import numpy as np
import pypulseq as pp

seq_path, wave_path = sys.argv[1], sys.argv[2]
w = json.load(open(wave_path))
# PulseqSystem::default(): pypulseq's rasters, Siemens-like dead times.
opts = pp.Opts(rf_dead_time=100e-6, rf_ringdown_time=30e-6, adc_dead_time=10e-6,
               rf_raster_time=1e-6, grad_raster_time=10e-6, adc_raster_time=100e-9,
               block_duration_raster=10e-6)
seq = pp.Sequence(system=opts)
with warnings.catch_warnings():
    warnings.simplefilter("error")  # a version or definition warning fails the peer
    seq.read(seq_path, remove_duplicates=False)
dflt = pp.Sequence(system=opts)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    dflt.read(seq_path)
for s in (seq, dflt):
    ok, errors = s.check_timing()
    assert ok, f"check_timing: {errors}"

raw = open(seq_path, "rb").read()
md5 = hashlib.md5(raw[:raw.index(b"\n[SIGNATURE]")]).hexdigest()
assert seq.signature_type == "md5", seq.signature_type
assert seq.signature_value == md5, (seq.signature_value, md5)

rf = seq.get_block(1).rf
m = int(round(w["dt"] / 1e-6))
want = np.repeat(np.array(w["ux"]) + 1j * np.array(w["uy"]), m)
assert rf.signal.shape == want.shape, (rf.signal.shape, want.shape)
peak = float(np.abs(want).max())
err = float(np.abs(rf.signal - want).max())
t = (np.arange(want.size) + 0.5) * 1e-6
assert np.allclose(rf.t, t, rtol=0, atol=1e-12)
adc = seq.get_block(2).adc
total, nblocks, _ = seq.duration()
print("PEER-RESULT " + json.dumps({
    "md5": md5, "peak": peak, "max_err": err, "n": int(rf.signal.size), "delay": rf.delay,
    "use": seq.rf_library.type[seq.block_events[1][1]], "blocks": nblocks,
    "adc_samples": int(adc.num_samples), "adc_dwell": adc.dwell, "total": total,
}))
"#;

#[test]
fn peer_pypulseq_reads_the_optimized_pulse() {
    let Some(python) = std::env::var_os("SPINLOOP_PEER_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the peer venv is required in CI: SPINLOOP_PEER_PYTHON must name the python of \
                 a venv with tests/peers/requirements.txt (.ci/run creates target/peer-venv)"
            );
        }
        println!(
            "peer_pypulseq_reads_the_optimized_pulse skipped: SPINLOOP_PEER_PYTHON is not set"
        );
        return;
    };
    let spec = spec();
    let d = tmpdir("peer");
    optimize(&d, &[]);
    let (seq, wave) = (output(&d, ".seq"), output(&d, ".waveform.json"));
    let out = Command::new(&python)
        .arg("-c")
        .arg(PEER)
        .arg(&seq)
        .arg(&wave)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypulseq peer failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PEER-RESULT "))
        .unwrap_or_else(|| panic!("no result line:\n{stdout}"));
    let r: Value = serde_json::from_str(line).unwrap();
    let text = std::fs::read_to_string(&seq).unwrap();
    let stored = text
        .lines()
        .find_map(|l| l.strip_prefix("Hash "))
        .unwrap()
        .trim();
    assert_eq!(r["md5"].as_str().unwrap(), stored, "MD5 signature");
    let w = read_waveform(&d);
    let m = (w.dt / 1e-6).round() as usize;
    assert_eq!(r["n"].as_u64().unwrap() as usize, spec.pulse.segments * m);
    let (peak, err) = (r["peak"].as_f64().unwrap(), r["max_err"].as_f64().unwrap());
    assert!(
        err <= 1e-6 * peak,
        "pypulseq's RF samples differ from the waveform by {err} Hz of {peak} Hz"
    );
    assert!((r["delay"].as_f64().unwrap() - 100e-6).abs() < 1e-12);
    assert_eq!(r["use"].as_str().unwrap(), "e");
    assert_eq!(r["blocks"].as_u64().unwrap(), 2);
    assert_eq!(
        r["adc_samples"].as_u64().unwrap() as usize,
        spec.acquisition.points
    );
    assert!(
        rel(
            r["adc_dwell"].as_f64().unwrap(),
            spec.acquisition.dwell_ms * 1e-3
        ) < 1e-12
    );
    println!(
        "pypulseq: signature {stored}, timing OK, RF max error {err:.3e} Hz of {peak:.3} Hz, \
         total {} s",
        r["total"]
    );
    std::fs::remove_dir_all(d).unwrap();
}
