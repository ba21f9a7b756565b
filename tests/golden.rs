//! The golden problem glu_gln_3t reproduced to 1e-9 relative: loss, full gradients, FID
//! samples, spectrum maxima, H0 eigenvalues and Tr(U_0) (numbers from
//! shared/reference/golden_glu_gln_3t.json, vendored in tests/data).

use num_complex::Complex64 as C64;
use serde_json::Value;
use spinloop::design::golden::{self, Variant};
use spinloop::physics::hamiltonian::free_hamiltonian;
use spinloop::physics::linalg::HermitianEigen;
use spinloop::physics::operators::SpinOperators;
use spinloop::physics::{Field, GradientRequest, SignalLoss, SimOptions, library};
use spinloop::spectrum::SpectrumPlan;

fn golden() -> Value {
    let text = include_str!("data/golden_glu_gln_3t.json");
    serde_json::from_str(text).expect("golden json")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn check_variant(variant: Variant, key: &str) {
    let g = golden();
    let res = &g["results"][key];
    let mut sim = golden::simulator(variant, SimOptions::default()).unwrap();
    let (ux, uy) = golden::test_pulse();
    let exp = golden::experiment(ux, uy);
    let loss = golden::loss().unwrap();
    let (value, grad) = sim
        .loss_and_gradient(&exp, &loss, GradientRequest::default())
        .unwrap();
    let want = res["loss"].as_f64().unwrap();
    println!(
        "{key}: loss {value:.16} golden {want:.16} rel {:e}",
        rel(value, want)
    );
    assert!(rel(value, want) < 1e-9, "loss {value} vs {want}");

    // Loss split into its terms.
    let signals = sim.simulate(&exp).unwrap();
    let members = signals.members();
    let (mut glu, mut gln) = (0.0, 0.0);
    for m in 0..members {
        let t = loss.term_values(&signals, m).unwrap();
        glu += -t[0];
        gln += t[1] / 1000.0;
    }
    glu /= members as f64;
    gln /= members as f64;
    assert!(rel(glu, res["loss_glu_term"].as_f64().unwrap()) < 1e-9);
    assert!(rel(gln, res["loss_gln_term"].as_f64().unwrap()) < 1e-9);
    assert!(rel(loss.evaluate(&signals, None).unwrap(), want) < 1e-9);

    let gx = floats(&res["grad_ux_full"]);
    let gy = floats(&res["grad_uy_full"]);
    let gmax = gx.iter().chain(&gy).fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst_rel: f64 = 0.0;
    let mut worst_abs: f64 = 0.0;
    for (ours, theirs) in [(&grad.ux[0], &gx), (&grad.uy[0], &gy)] {
        assert_eq!(ours.len(), 512);
        for (a, b) in ours.iter().zip(theirs.iter()) {
            worst_abs = worst_abs.max((a - b).abs());
            worst_rel = worst_rel.max(rel(*a, *b));
        }
    }
    println!("{key}: gradient worst rel {worst_rel:e}, worst abs {worst_abs:e} (max |g| {gmax:e})");
    assert!(
        worst_rel < 1e-9,
        "gradient entry off by {worst_rel:e} relative"
    );
    let norm = gx.iter().chain(&gy).map(|v| v * v).sum::<f64>().sqrt();
    let our_norm = grad.ux[0]
        .iter()
        .chain(&grad.uy[0])
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    assert!(rel(our_norm, res["grad_norm"].as_f64().unwrap()) < 1e-9);
    assert!(rel(norm, res["grad_norm"].as_f64().unwrap()) < 1e-12);
}

#[test]
fn golden_single_loss_and_gradient() {
    check_variant(Variant::Single, "single");
}

#[test]
fn golden_b1_loss_and_gradient() {
    check_variant(Variant::B1, "b1");
}

#[test]
fn golden_fid_and_spectrum() {
    let g = golden();
    let mut sim = golden::simulator(Variant::Single, SimOptions::default()).unwrap();
    let (ux, uy) = golden::test_pulse();
    let exp = golden::experiment(ux, uy);
    let signals = sim.simulate(&exp).unwrap();
    let plan = SpectrumPlan::new(1024).unwrap();
    for (mol, key) in [(0, "glu"), (1, "gln")] {
        let fid = signals.fid(0, mol);
        let want = g["results"]["fid_first4_b1eq1"][key].as_array().unwrap();
        for (m, w) in want.iter().enumerate() {
            let w = floats(w);
            let z = C64::new(w[0], w[1]);
            let e = (fid[m] - z).norm() / z.norm();
            assert!(e < 1e-9, "{key} FID[{m}] {} vs {z}: {e:e}", fid[m]);
        }
        let spec = plan.spectrum(fid).unwrap();
        let (imax, smax) = spec
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.norm()))
            .fold((0, 0.0), |acc, x| if x.1 > acc.1 { x } else { acc });
        let want_max = g["results"]["max_abs_S_b1eq1"][key].as_f64().unwrap();
        assert!(
            rel(smax, want_max) < 1e-9,
            "{key} max|S| {smax} vs {want_max}"
        );
        assert_eq!(
            imax as u64,
            g["results"]["argmax_abs_S_index_after_fftshift"][key]
                .as_u64()
                .unwrap()
        );
    }
}

#[test]
fn golden_h0_eigenvalues_and_first_propagator() {
    let g = golden();
    for (mol, key) in [(library::glutamate(), "glu"), (library::glutamine(), "gln")] {
        let frag = &mol.fragments[0];
        let h0 = free_hamiltonian(frag, Field::THREE_T, golden::CARRIER_PPM);
        let e = HermitianEigen::new(&h0).unwrap();
        let want = floats(&g["results"]["H0_eigenvalues_Hz_sorted"][key]);
        for (a, b) in e.values.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{key} eigenvalue {a} vs {b}"
            );
        }
        // Tr(U_0) for the first segment of the test pulse, b = 1.
        let ops = SpinOperators::new(5);
        let (ux, uy) = golden::test_pulse();
        let mut h = h0.clone();
        h.axpy(C64::new(ux[0], 0.0), &ops.fx());
        h.axpy(C64::new(uy[0], 0.0), &ops.fy());
        let u0 = HermitianEigen::new(&h).unwrap().propagator(golden::DT);
        let tr = u0.trace();
        let w = floats(&g["results"]["trace_U0_segment0"][key]);
        assert!(
            (tr.re - w[0]).abs() < 1e-9 * w[0].abs(),
            "{key} Tr U0 re {} vs {}",
            tr.re,
            w[0]
        );
        assert!(
            (tr.im - w[1]).abs() < 1e-9 * w[1].abs().max(1e-6),
            "{key} Tr U0 im {} vs {}",
            tr.im,
            w[1]
        );
    }
}
