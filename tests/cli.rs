//! The offline commands end to end, as a user runs them: `spinloop simulate` writes NIfTI-MRS
//! and a Bruker experiment, `spinloop basis` a basis set, `spinloop fit` reads both back and
//! recovers the concentrations; `spinloop compare` prints the baseline table; bad input gives
//! a clear error naming the file or parameter and a non-zero exit.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_spinloop");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spinloop-cli-{}-{name}", std::process::id()));
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

fn fails(args: &[&str], needle: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "spinloop {args:?} should fail");
    assert!(
        err.contains(needle),
        "spinloop {args:?}: {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

const SEQ: [&str; 6] = ["--te", "80", "--grid", "5", "--points", "1024"];

#[test]
fn simulate_basis_fit_round_trip_nifti_and_bruker() {
    let d = tmpdir("roundtrip");
    let p = |f: &str| d.join(f).display().to_string();
    let (nii, bru, basis) = (p("mix.nii.gz"), p("bruker"), p("basis.nii"));
    let mut sim = vec![
        "simulate",
        "--metabolites",
        "Glu,Gln,NAA,Cr",
        "--concentrations",
        "11.6,3.5,12,8",
        "--out",
        &nii,
        "--bruker",
        &bru,
    ];
    sim.extend(SEQ);
    let csv = p("mix.csv");
    sim.extend(["--csv", &csv]);
    let out = ok(&sim);
    assert!(out.contains("PRESS TE 80.0 ms"), "{out}");
    let mut b = vec!["basis", "--metabolites", "Glu,Gln,NAA,Cr", "--out", &basis];
    b.extend(SEQ);
    let plot = p("basis.svg");
    b.extend(["--plot", &plot]);
    ok(&b);
    assert!(std::fs::read_to_string(&plot).unwrap().contains("Glu"));
    let header = std::fs::read_to_string(&csv).unwrap();
    assert!(
        header.starts_with("ppm,Glu_re,Glu_im,Gln_re"),
        "{}",
        &header[..60]
    );
    assert_eq!(header.lines().count(), 1025);
    for input in [&nii, &bru] {
        let fit_plot = p("fit.png");
        let json = ok(&[
            "fit", input, "--basis", &basis, "--json", "--plot", &fit_plot,
        ]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = v["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(names, ["Glu", "Gln", "NAA", "Cr"]);
        for (c, truth) in v["concentrations"]
            .as_array()
            .unwrap()
            .iter()
            .zip([11.6, 3.5, 12.0, 8.0])
        {
            let c = c.as_f64().unwrap();
            assert!((c - truth).abs() < 1e-4 * truth, "{input}: {c} vs {truth}");
        }
        assert_eq!(v["correlation"].as_array().unwrap().len(), 4);
        assert!(std::fs::metadata(&fit_plot).unwrap().len() > 1000);
    }
    // Fitting with a basis simulated on the fly (same sequence options) works too.
    let mut f = vec!["fit", &nii, "--metabolites", "Glu,Gln,NAA,Cr"];
    f.extend(SEQ);
    let text = ok(&f);
    assert!(text.contains("correlation matrix"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let d = tmpdir("bad");
    let p = |f: &str| d.join(f).display().to_string();
    let (nii, basis) = (p("mix.nii"), p("basis.nii"));
    let mut sim = vec!["simulate", "--metabolites", "Cr", "--out", &nii];
    sim.extend(SEQ);
    ok(&sim);
    let mut b = vec!["basis", "--metabolites", "Cr", "--out", &basis];
    b.extend(SEQ);
    ok(&b);
    // A truncated NIfTI-MRS file.
    let bytes = std::fs::read(&nii).unwrap();
    let cut = p("cut.nii");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["fit", &cut, "--basis", &basis], "cut.nii");
    // A basis on another dwell or length.
    let other = p("other.nii");
    ok(&[
        "basis",
        "--metabolites",
        "Cr",
        "--out",
        &other,
        "--te",
        "80",
        "--grid",
        "5",
        "--points",
        "1024",
        "--dwell-us",
        "200",
    ]);
    fails(&["fit", &nii, "--basis", &other], "inconsistent dwell");
    let short = p("short.nii");
    ok(&[
        "basis",
        "--metabolites",
        "Cr",
        "--out",
        &short,
        "--te",
        "80",
        "--grid",
        "5",
        "--points",
        "512",
    ]);
    fails(&["fit", &nii, "--basis", &short], "points");
    // A measurement is not a basis set.
    fails(&["fit", &nii, "--basis", &nii], "Metabolite");
    // Timings, names and numbers.
    fails(&["simulate", "--te", "5", "--grid", "3"], "TE1/2");
    fails(&["simulate", "--te", "30", "--te1", "40"], "--te1");
    fails(&["simulate", "--metabolites", "Glx"], "Glx");
    fails(&["simulate", "--te", "nan"], "--te");
    fails(
        &[
            "simulate",
            "--metabolites",
            "Cr,NAA",
            "--concentrations",
            "1",
        ],
        "--concentrations",
    );
    fails(
        &["fit", &p("missing.nii"), "--basis", &basis],
        "missing.nii",
    );
    fails(
        &["fit", &nii, "--basis", &basis, "--window", "1,x"],
        "--window",
    );
    fails(&["simulate", "--field", "3 teslas"], "field");
    fails(&["simulate", "--plot", &p("x.jpg"), "--grid", "3"], "x.jpg");
}

#[test]
fn compare_prints_the_baseline_table() {
    let json = ok(&["compare", "--grid", "3", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 3);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["protocol"].as_str().unwrap())
        .collect();
    assert!(names[0].starts_with("PRESS TE 30.0"), "{names:?}");
    assert!(names[1].starts_with("PRESS TE 80.0"), "{names:?}");
    assert!(names[2].starts_with("STEAM TE 10.0"), "{names:?}");
    for r in &rows {
        let c = r["glu_gln_correlation"].as_f64().unwrap();
        assert!(c.abs() < 1.0, "{r}");
        assert!(r["glu_crlb_percent"].as_f64().unwrap() > 0.0);
        assert!(r["gln_crlb_percent"].as_f64().unwrap() > 0.0);
    }
    // The known trend that motivates TE 80 (Schubert et al. 2004): Glu and Gln are less
    // correlated at TE 80 than at TE 30 or in short-TE STEAM.
    let corr = |i: usize| rows[i]["glu_gln_correlation"].as_f64().unwrap().abs();
    assert!(corr(1) < corr(0) && corr(1) < corr(2), "{rows:?}");
    let text = ok(&["compare", "--grid", "3", "--pulses", "ideal"]);
    assert!(text.contains("| protocol |"), "{text}");
}
