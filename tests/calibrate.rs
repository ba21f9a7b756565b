//! Hardware calibration (`spinloop::calibrate`): the forward model against the simulator and
//! closed forms, the Jacobian against the exact adjoint gradient and central differences,
//! recovery of a hidden truth with and without noise, standard errors against a Monte Carlo
//! spread, B1 identifiability with probe waveforms, AM/AM compression, and bad input.

use num_complex::Complex64 as C64;
use spinloop::calibrate::{
    CalibrateError, Calibrator, FitOptions, FreeParameters, HardwareModel, Measurement,
    PROBE_SCALES, Probe, probe_waveform,
};
use spinloop::design::problem::{DesignProblem, ProblemSpec};
use spinloop::physics::{Member, SimOptions, Simulator};
use spinloop::spectrum::processing::NoiseSource;
use spinloop::spectrum::{SpectrumPlan, frequency_axis, ppm_axis, window_indices};

/// Pulse–acquire at 3 T, Lac + NAA + Cr, the designed pulse a 2 ms, 50-segment sinc 90°.
const PULSE_ACQUIRE: &str = r#"
name = "calibration_pulse_acquire"
field = "3T"
carrier_ppm = 3.0
molecules = ["Lac", "NAA", "Cr"]
concentrations = [2.0, 12.0, 8.0]

[acquisition]
points = 1024
dwell_ms = 0.25
linewidth_hz = 4.0

[sequence]
kind = "pulse_acquire"
pulses = "ideal"

[pulse]
segments = 50
dt_us = 40.0

[limits]
peak_b1_hz = 5000.0
max_duration_s = 0.01
raster_s = 10e-6

[[objective]]
kind = "enhancement"
metabolite = "NAA"
window_ppm = [1.9, 2.1]

[quantification]
window_ppm = [0.8, 4.3]
"#;

/// Vendor PRESS on a 3 × 3 grid, NAA + Cr, 512 points.
const PRESS: &str = r#"
name = "calibration_press"
field = "3T"
carrier_ppm = 3.0
molecules = ["NAA", "Cr"]
concentrations = [12.0, 8.0]

[acquisition]
points = 512
dwell_ms = 0.25
linewidth_hz = 5.0

[sequence]
kind = "press"
te1_ms = 12.0
te2_ms = 18.0
pulses = "vendor"
grid_points = 3

[pulse]
segments = 40
dt_us = 50.0

[limits]
peak_b1_hz = 5000.0
max_duration_s = 0.01
raster_s = 10e-6

[[objective]]
kind = "enhancement"
metabolite = "NAA"
window_ppm = [1.9, 2.1]

[quantification]
window_ppm = [1.8, 4.2]
"#;

fn problem(text: &str) -> DesignProblem {
    let spec = ProblemSpec::from_toml(text, "test").expect("spec");
    DesignProblem::build(spec).expect("problem")
}

fn truth() -> HardwareModel {
    HardwareModel {
        b1_scale: 0.85,
        b0_offset_hz: 3.7,
        phase0_rad: 0.4,
        phase1_s: 2e-5,
        linewidth_hz: 1.5,
        amplitude: 1.3,
        compression: None,
    }
}

/// Every parameter but compression free (phase1 included).
fn all_but_compression() -> FitOptions {
    FitOptions {
        free: FreeParameters {
            phase1: true,
            ..FreeParameters::default()
        },
        ..FitOptions::default()
    }
}

fn measure(
    cal: &mut Calibrator,
    model: &HardwareModel,
    (ux, uy): &(Vec<f64>, Vec<f64>),
    sigma: f64,
    seed: u64,
) -> Measurement {
    let mut fid = cal.predict(model, ux, uy).expect("predict");
    NoiseSource::new(seed)
        .add_to(&mut fid, sigma)
        .expect("noise");
    Measurement {
        ux: ux.clone(),
        uy: uy.clone(),
        dt: cal.dt(),
        fid,
        dwell_s: cal.acquisition().dwell,
        averages: 1,
    }
}

/// The reference 90° played at the probe scales (45° and 135° nominal).
fn probes(p: &DesignProblem) -> Vec<(Vec<f64>, Vec<f64>)> {
    PROBE_SCALES
        .iter()
        .map(|&s| probe_waveform(&p.reference.0, &p.reference.1, s).expect("probe"))
        .collect()
}

/// Peak |u| (Hz) of the problem's reference pulse.
fn peak_of(p: &DesignProblem) -> f64 {
    p.reference
        .0
        .iter()
        .zip(&p.reference.1)
        .map(|(x, y)| x.hypot(*y))
        .fold(0.0, f64::max)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

const SIGMA: f64 = 0.5;

#[test]
fn set_members_equals_a_new_simulator() {
    let p = problem(PULSE_ACQUIRE);
    let exp = p.experiment_with(p.reference.0.clone(), p.reference.1.clone());
    let mols = p.simulator.molecules().to_vec();
    let members = vec![
        Member {
            b1: 0.9,
            b0_hz: 2.0,
        },
        Member {
            b1: 1.1,
            b0_hz: -1.0,
        },
    ];
    let mut fresh = Simulator::new(
        mols.clone(),
        p.field,
        3.0,
        members.clone(),
        SimOptions::default(),
    )
    .expect("sim");
    let mut reused = Simulator::new(
        mols,
        p.field,
        3.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .expect("sim");
    reused.simulate(&exp).expect("simulate");
    reused.set_members(members).expect("set");
    assert_eq!(reused.members().len(), 2);
    assert_eq!(
        fresh.simulate(&exp).expect("fresh"),
        reused.simulate(&exp).expect("reused")
    );
    assert!(reused.set_members(vec![]).is_err());
    assert!(
        reused
            .set_members(vec![Member {
                b1: -1.0,
                b0_hz: 0.0
            }])
            .is_err()
    );
}

#[test]
fn predict_is_the_simulated_mixture_with_the_receiver_model() {
    let mut p = problem(PULSE_ACQUIRE);
    let (ux, uy) = p.reference.clone();
    let conc = p.spec.concentrations.clone().expect("concentrations");
    let nominal_mix = p
        .signals(&ux, &uy)
        .expect("signals")
        .mixture(0, &conc)
        .expect("mix");
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let nominal = cal
        .predict(&HardwareModel::NOMINAL, &ux, &uy)
        .expect("predict");
    for (a, b) in nominal.iter().zip(&nominal_mix) {
        assert!((a - b).norm() <= 1e-12 * nominal_mix[0].norm());
    }
    // Receiver parameters in closed form.
    let dwell = cal.acquisition().dwell;
    let m = HardwareModel {
        phase0_rad: 0.4,
        linewidth_hz: 1.5,
        amplitude: 1.3,
        ..HardwareModel::NOMINAL
    };
    let got = cal.predict(&m, &ux, &uy).expect("predict");
    for (k, (g, s)) in got.iter().zip(&nominal).enumerate() {
        let want = s * C64::from_polar(
            1.3 * (-std::f64::consts::PI * 1.5 * k as f64 * dwell).exp(),
            0.4,
        );
        assert!((g - want).norm() <= 1e-12 * nominal[0].norm(), "k = {k}");
    }
    // The receive delay multiplies the spectrum by e^{i2πfτ}.
    let tau = 3e-5;
    let delayed = cal
        .predict(&HardwareModel { phase1_s: tau, ..m }, &ux, &uy)
        .expect("predict");
    let plan = SpectrumPlan::new(delayed.len()).expect("plan");
    let (sd, s0) = (
        plan.spectrum(&delayed).expect("s"),
        plan.spectrum(&got).expect("s"),
    );
    let f = frequency_axis(delayed.len(), dwell);
    let scale = s0.iter().map(|z| z.norm()).fold(0.0, f64::max);
    for j in 0..f.len() {
        let want = s0[j] * C64::from_polar(1.0, 2.0 * std::f64::consts::PI * f[j] * tau);
        assert!((sd[j] - want).norm() <= 1e-12 * scale, "bin {j}");
    }
    // B1 and B0 are the simulator's member.
    let hw = HardwareModel {
        b1_scale: 0.85,
        b0_offset_hz: 3.7,
        ..HardwareModel::NOMINAL
    };
    let mut sim = Simulator::new(
        p.simulator.molecules().to_vec(),
        p.field,
        3.0,
        vec![Member {
            b1: 0.85,
            b0_hz: 3.7,
        }],
        SimOptions::default(),
    )
    .expect("sim");
    let want = sim
        .simulate(&p.experiment_with(ux.clone(), uy.clone()))
        .expect("simulate")
        .mixture(0, &conc)
        .expect("mix");
    let got = cal.predict(&hw, &ux, &uy).expect("predict");
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).norm() <= 1e-12 * want[0].norm());
    }
}

#[test]
fn jacobian_gradient_equals_the_exact_adjoint_gradient() {
    for (label, text, compression) in [
        ("pulse-acquire", PULSE_ACQUIRE, false),
        ("pulse-acquire, AM/AM", PULSE_ACQUIRE, true),
        ("PRESS 3x3 grid", PRESS, false),
    ] {
        let p = problem(text);
        let mut cal = Calibrator::new(&p).expect("calibrator");
        let peak = peak_of(&p);
        let hidden = HardwareModel {
            compression: compression.then_some(1.3 * peak),
            ..truth()
        };
        let data: Vec<Measurement> = probes(&p)
            .iter()
            .enumerate()
            .map(|(i, w)| measure(&mut cal, &hidden, w, SIGMA, 11 + i as u64))
            .collect();
        let options = FitOptions {
            free: FreeParameters {
                phase1: true,
                compression,
                ..FreeParameters::default()
            },
            ..FitOptions::default()
        };
        // Away from the truth, so the residual is large and every gradient component matters.
        let at = HardwareModel {
            b1_scale: 0.95,
            b0_offset_hz: 1.0,
            phase0_rad: 0.1,
            phase1_s: 0.0,
            linewidth_hz: 0.5,
            amplitude: 1.1,
            compression: compression.then_some(2.0 * peak),
        };
        let lin = cal.linearize(&data, &at, &options).expect("linearize");
        let (cost, exact) = cal.exact_gradient(&data, &at, &options).expect("gradient");
        assert!(rel(lin.cost(), cost) < 1e-12, "{} vs {}", lin.cost(), cost);
        let jtr = lin.gradient();
        for ((name, a), b) in lin.names.iter().zip(&jtr).zip(&exact) {
            assert!(rel(*a, *b) < 1e-6, "{label} {name}: Jᵀr {a} vs exact {b}");
            eprintln!("{label:>20} {name:>18}: Jᵀr vs adjoint {:.1e}", rel(*a, *b));
        }
    }
}

#[test]
fn jacobian_matches_central_differences_of_predict() {
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let peak = peak_of(&p);
    let hidden = HardwareModel {
        compression: Some(1.3 * peak),
        ..truth()
    };
    let waves = probes(&p);
    let data: Vec<Measurement> = waves
        .iter()
        .enumerate()
        .map(|(i, w)| measure(&mut cal, &hidden, w, SIGMA, 21 + i as u64))
        .collect();
    let options = FitOptions {
        free: FreeParameters {
            phase1: true,
            compression: true,
            ..FreeParameters::default()
        },
        ..FitOptions::default()
    };
    let at = HardwareModel {
        compression: Some(2.0 * peak),
        ..HardwareModel::NOMINAL
    };
    // The residual rebuilt from `predict`: √w·(spectrum(predict) − spectrum(fid)) on the window.
    let acq = cal.acquisition();
    let plan = SpectrumPlan::new(acq.points).expect("plan");
    let ppm = ppm_axis(acq.points, acq.dwell, 3.0, p.field.f0_mhz);
    let (lo, hi) = cal.default_window_ppm();
    let idx = window_indices(&ppm, lo, hi);
    let residual = |cal: &mut Calibrator, m: &HardwareModel| -> Vec<f64> {
        let mut r = Vec::new();
        for (d, w) in data.iter().zip(&waves) {
            let y = plan
                .spectrum(&cal.predict(m, &w.0, &w.1).expect("predict"))
                .expect("s");
            let s = plan.spectrum(&d.fid).expect("s");
            for &j in &idx {
                r.push((y[j] - s[j]).re);
                r.push((y[j] - s[j]).im);
            }
        }
        r
    };
    let lin = cal.linearize(&data, &at, &options).expect("linearize");
    let r0 = residual(&mut cal, &at);
    let scale = r0.iter().map(|x| x.abs()).fold(0.0, f64::max);
    for (a, b) in lin.residual.iter().zip(&r0) {
        assert!((a - b).abs() <= 1e-10 * scale);
    }
    let steps = [1e-4, 1e-4, 1e-3, 1e-7, 1e-3, 1e-4, 2e-4 * peak];
    for (col, &pi) in lin.columns.iter().zip(&lin.parameters) {
        let h = steps[pi];
        let shifted = |d: f64| {
            let mut v = at.to_vector();
            v[pi] += d;
            HardwareModel::from_vector(&v)
        };
        let rp = residual(&mut cal, &shifted(h));
        let rm = residual(&mut cal, &shifted(-h));
        let fd: Vec<f64> = rp
            .iter()
            .zip(&rm)
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect();
        let norm = fd.iter().map(|x| x * x).sum::<f64>().sqrt();
        let err = col
            .iter()
            .zip(&fd)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            err <= 1e-6 * norm,
            "{}: |J − FD| = {err:e}, |FD| = {norm:e}",
            lin.names[lin.parameters.iter().position(|&q| q == pi).unwrap_or(0)]
        );
    }
}

#[test]
fn recovers_the_hidden_truth() {
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let waves = probes(&p);
    let options = all_but_compression();
    // Noise free: the truth to rounding.
    let clean: Vec<Measurement> = waves
        .iter()
        .map(|w| measure(&mut cal, &truth(), w, 0.0, 0))
        .collect();
    let fit = cal
        .fit(&clean, &HardwareModel::NOMINAL, &options)
        .expect("fit");
    assert!(fit.converged, "{fit:?}");
    let (got, want) = (fit.model.to_vector(), truth().to_vector());
    for i in 0..6 {
        let tol = 1e-6 * want[i].abs().max(if i == 3 { 1e-5 } else { 1.0 });
        assert!(
            (got[i] - want[i]).abs() <= tol,
            "parameter {i}: {} vs {}",
            got[i],
            want[i]
        );
    }
    // With noise: within 4σ, σ sensible, the noise level recovered.
    let noisy: Vec<Measurement> = waves
        .iter()
        .enumerate()
        .map(|(i, w)| measure(&mut cal, &truth(), w, SIGMA, 100 + i as u64))
        .collect();
    let fit = cal
        .fit(&noisy, &HardwareModel::NOMINAL, &options)
        .expect("fit");
    assert!(fit.converged, "{fit:?}");
    assert!(rel(fit.noise_sd, SIGMA) < 0.1, "noise {}", fit.noise_sd);
    for par in fit.parameters() {
        let i = spinloop::calibrate::PARAMETER_NAMES
            .iter()
            .position(|n| *n == par.name)
            .expect("name");
        let sd = par.std_error.expect("free");
        assert!(sd.is_finite() && sd > 0.0, "{par:?}");
        assert!(
            (par.value - want[i]).abs() <= 4.0 * sd,
            "{}: {} vs truth {} (σ {sd})",
            par.name,
            par.value,
            want[i]
        );
    }
    let e = fit.std_errors;
    assert!(e.b1_scale.expect("b1") < 0.02, "{e:?}");
    assert!(e.b0_offset_hz.expect("b0") < 0.5, "{e:?}");
    let n = fit.free.len();
    for i in 0..n {
        assert!((fit.correlation[i * n + i] - 1.0).abs() < 1e-12);
    }
    assert_eq!(fit.parameters().len(), 6);
}

#[test]
fn standard_error_matches_the_monte_carlo_spread() {
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let waves = probes(&p);
    let options = FitOptions::default();
    let runs = 20;
    let mut b1 = Vec::new();
    let mut reported = Vec::new();
    // Start at the truth: the spread is the estimator's, not the path's.
    for seed in 0..runs {
        let data: Vec<Measurement> = waves
            .iter()
            .enumerate()
            .map(|(i, w)| {
                measure(
                    &mut cal,
                    &truth(),
                    w,
                    2.0 * SIGMA,
                    1000 + 2 * seed + i as u64,
                )
            })
            .collect();
        let start = HardwareModel {
            phase1_s: truth().phase1_s,
            ..HardwareModel::NOMINAL
        };
        let fit = cal.fit(&data, &start, &options).expect("fit");
        assert!(fit.converged);
        b1.push(fit.model.b1_scale);
        reported.push(fit.std_errors.b1_scale.expect("b1"));
    }
    let mean = b1.iter().sum::<f64>() / runs as f64;
    let sd = (b1.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (runs - 1) as f64).sqrt();
    let rep = reported.iter().sum::<f64>() / runs as f64;
    assert!(
        sd / rep < 1.5 && rep / sd < 1.5,
        "empirical σ(b1) {sd:e} vs reported {rep:e}"
    );
    assert!((mean - 0.85).abs() < 4.0 * rep / (runs as f64).sqrt());
}

#[test]
fn probes_make_b1_identifiable() {
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let options = FitOptions::default();
    let hidden = HardwareModel {
        phase1_s: 0.0,
        ..truth()
    };
    // One 90° acquisition: B1 trades off with the amplitude.
    let single = vec![measure(&mut cal, &hidden, &p.reference, SIGMA, 7)];
    let one = cal
        .fit(&single, &HardwareModel::NOMINAL, &options)
        .expect("fit");
    // The same pulse at 45° and 135°: the same number of acquisitions per probe.
    let data: Vec<Measurement> = probes(&p)
        .iter()
        .enumerate()
        .map(|(i, w)| measure(&mut cal, &hidden, w, SIGMA, 8 + i as u64))
        .collect();
    let two = cal
        .fit(&data, &HardwareModel::NOMINAL, &options)
        .expect("fit");
    let (s1, s2) = (
        one.std_errors.b1_scale.expect("b1"),
        two.std_errors.b1_scale.expect("b1"),
    );
    assert!(s1 > 10.0 * s2, "single 90°: σ(b1) {s1:e}; probes: {s2:e}");
    // The correlation of b1 with the amplitude is what makes the single acquisition poor.
    let n = one.free.len();
    let (ib, ia) = (
        one.free.iter().position(|n| n == "b1_scale").expect("b1"),
        one.free.iter().position(|n| n == "amplitude").expect("amp"),
    );
    assert!(
        one.correlation[ib * n + ia].abs() > 0.9,
        "{:?}",
        one.correlation
    );
    // The session can predict this before playing anything.
    let probe = |w: &(Vec<f64>, Vec<f64>)| Probe {
        ux: w.0.clone(),
        uy: w.1.clone(),
        averages: 1,
    };
    let e1 = cal
        .expected_std_errors(&hidden, &[probe(&p.reference)], SIGMA, &options)
        .expect("expected");
    let e2 = cal
        .expected_std_errors(
            &hidden,
            &probes(&p).iter().map(probe).collect::<Vec<_>>(),
            SIGMA,
            &options,
        )
        .expect("expected");
    let (x1, x2) = (e1.b1_scale.expect("b1"), e2.b1_scale.expect("b1"));
    // Four averages halve every standard error.
    let four = cal
        .expected_std_errors(
            &hidden,
            &[Probe {
                averages: 4,
                ..probe(&p.reference)
            }],
            SIGMA,
            &options,
        )
        .expect("expected");
    for (a, b) in four.to_array().iter().zip(e1.to_array()) {
        if let (Some(a), Some(b)) = (a, b) {
            assert!(rel(2.0 * a, b) < 1e-9, "{a} vs {b}");
        }
    }
    assert!(x1 > 10.0 * x2);
    assert!(rel(x2, s2) < 0.2, "expected {x2:e}, fitted {s2:e}");
}

#[test]
fn unidentifiable_parameter_has_infinite_std_error() {
    // No RF at all: no signal, so B1 has a zero column; the B0 column is central differences
    // of rounding (the simulated FID is ~1e-13, not exactly zero).
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let zero = (vec![0.0; cal.segments()], vec![0.0; cal.segments()]);
    let data = vec![measure(&mut cal, &truth(), &zero, SIGMA, 3)];
    let fit = cal
        .fit(&data, &HardwareModel::NOMINAL, &FitOptions::default())
        .expect("fit");
    assert_eq!(fit.std_errors.b1_scale, Some(f64::INFINITY));
    let b0 = fit.std_errors.b0_offset_hz.expect("free");
    assert!(b0 > 1e6, "σ(b0) {b0}");
}

#[test]
fn recovers_amplifier_compression() {
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let peak = peak_of(&p);
    let hidden = HardwareModel {
        b1_scale: 0.9,
        b0_offset_hz: -2.0,
        phase0_rad: -0.3,
        phase1_s: 0.0,
        linewidth_hz: 1.0,
        amplitude: 1.2,
        compression: Some(1.2 * peak),
    };
    // Three scales spread the amplitudes so compression and B1 separate.
    let waves: Vec<(Vec<f64>, Vec<f64>)> = [0.5, 1.0, 1.5]
        .iter()
        .map(|&s| probe_waveform(&p.reference.0, &p.reference.1, s).expect("probe"))
        .collect();
    let options = FitOptions {
        free: FreeParameters {
            compression: true,
            ..FreeParameters::default()
        },
        max_iterations: 100,
        ..FitOptions::default()
    };
    let clean: Vec<Measurement> = waves
        .iter()
        .map(|w| measure(&mut cal, &hidden, w, 0.0, 0))
        .collect();
    let fit = cal
        .fit(&clean, &HardwareModel::NOMINAL, &options)
        .expect("fit");
    assert!(fit.converged, "{fit:?}");
    let got = fit.model.compression.expect("compression");
    assert!(rel(got, 1.2 * peak) < 1e-6, "a_sat {got} vs {}", 1.2 * peak);
    assert!(rel(fit.model.b1_scale, 0.9) < 1e-6);
    let noisy: Vec<Measurement> = waves
        .iter()
        .enumerate()
        .map(|(i, w)| measure(&mut cal, &hidden, w, SIGMA, 50 + i as u64))
        .collect();
    let fit = cal
        .fit(&noisy, &HardwareModel::NOMINAL, &options)
        .expect("fit");
    assert!(fit.converged, "{fit:?}");
    let sd = fit.std_errors.compression_sat_hz.expect("free");
    let got = fit.model.compression.expect("compression");
    assert!(sd.is_finite() && sd < 0.2 * peak, "σ(a_sat) {sd}");
    assert!((got - 1.2 * peak).abs() <= 4.0 * sd, "a_sat {got} ± {sd}");
    assert!(
        fit.parameters()
            .iter()
            .any(|p| p.name == "compression_sat_hz" && p.unit == "Hz")
    );
}

#[test]
fn bad_input_is_an_error() {
    let p = problem(PULSE_ACQUIRE);
    let mut cal = Calibrator::new(&p).expect("calibrator");
    let good = measure(&mut cal, &truth(), &p.reference, SIGMA, 1);
    let opts = FitOptions::default();
    let start = HardwareModel::NOMINAL;
    let fit_err = |cal: &mut Calibrator, m: Measurement| {
        cal.fit(&[m], &start, &opts)
            .expect_err("must fail")
            .to_string()
    };
    assert!(matches!(
        cal.fit(&[], &start, &opts),
        Err(CalibrateError::EmptyData)
    ));
    let mut m = good.clone();
    m.fid[17] = C64::new(f64::NAN, 0.0);
    assert!(fit_err(&mut cal, m).contains("data[0].fid[17]"));
    let mut m = good.clone();
    m.ux[3] = f64::NAN;
    assert!(fit_err(&mut cal, m).contains("data[0].ux[3]"));
    let mut m = good.clone();
    m.fid.pop();
    assert!(fit_err(&mut cal, m).contains("data[0].fid has length 1023"));
    let mut m = good.clone();
    m.uy.pop();
    assert!(fit_err(&mut cal, m).contains("data[0].uy"));
    let mut m = good.clone();
    m.ux.push(0.0);
    m.uy.push(0.0);
    assert!(fit_err(&mut cal, m).contains("data[0].ux has length 51"));
    let mut m = good.clone();
    m.dwell_s *= 2.0;
    assert!(fit_err(&mut cal, m).contains("data[0].dwell_s"));
    let mut m = good.clone();
    m.dt = 1e-6;
    assert!(fit_err(&mut cal, m).contains("data[0].dt"));
    let mut m = good.clone();
    m.averages = 0;
    assert!(fit_err(&mut cal, m).contains("data[0].averages"));
    let bad_start = HardwareModel {
        b1_scale: 0.0,
        ..start
    };
    assert!(
        cal.fit(std::slice::from_ref(&good), &bad_start, &opts)
            .expect_err("b1 0")
            .to_string()
            .contains("start.b1_scale")
    );
    let bad_opts = FitOptions {
        max_iterations: 0,
        ..FitOptions::default()
    };
    assert!(
        cal.fit(std::slice::from_ref(&good), &start, &bad_opts)
            .is_err()
    );
    let bad_window = FitOptions {
        window_ppm: Some((50.0, 60.0)),
        ..FitOptions::default()
    };
    assert!(
        cal.fit(std::slice::from_ref(&good), &start, &bad_window)
            .expect_err("window")
            .to_string()
            .contains("window_ppm")
    );
    let nan_model = HardwareModel {
        phase0_rad: f64::NAN,
        ..start
    };
    assert!(
        cal.predict(&nan_model, &good.ux, &good.uy)
            .expect_err("nan")
            .to_string()
            .contains("model.phase0_rad")
    );
    assert!(cal.predict(&start, &good.ux[1..], &good.uy[1..]).is_err());
    assert!(probe_waveform(&good.ux, &good.uy, f64::NAN).is_err());
    // Compression free without a start value is handled; a non-positive one is refused.
    let comp = HardwareModel {
        compression: Some(-1.0),
        ..start
    };
    assert!(cal.predict(&comp, &good.ux, &good.uy).is_err());
}
