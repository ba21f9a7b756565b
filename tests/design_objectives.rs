//! Design objectives against independent expectations: the quantification objective's CRLB and
//! correlation equal what the linear-combination fit reports for the same spectrum; every
//! objective's gradient with respect to the FIDs equals central finite differences; the
//! composite is the weighted sum of its parts.

use num_complex::Complex64 as C64;
use spinloop::design::objectives::{Composite, Enhancement, Fidelity, Part, Suppression};
use spinloop::design::quantification::{FitModel, Measure, Quantification};
use spinloop::physics::{Field, Member, SignalLoss, Signals, SimOptions, Simulator, library};
use spinloop::sequence::builders::{PulseSpec, acquisition, press};
use spinloop::spectrum::fit::{Basis, FitOptions, fit};

const POINTS: usize = 1024;
const DWELL: f64 = 2.5e-4;
const NAMES: [&str; 4] = ["Glu", "Gln", "NAA", "GSH"];
const CONC: [f64; 4] = [11.6, 3.5, 12.0, 2.0];

/// PRESS TE 30 (ideal pulses) FIDs of Glu, Gln, NAA, GSH for the given members.
fn signals(members: Vec<Member>, linewidth: f64) -> Signals {
    let molecules = NAMES.iter().map(|n| library::by_name(n).unwrap()).collect();
    let mut sim = Simulator::new(
        molecules,
        Field::THREE_T,
        3.0,
        members,
        SimOptions::default(),
    )
    .unwrap();
    let ex = PulseSpec::ideal_excitation();
    let rf = PulseSpec::ideal_refocusing();
    let seq = press(
        0.012,
        0.018,
        &ex,
        &rf,
        &rf,
        acquisition(POINTS, DWELL, linewidth).unwrap(),
    )
    .unwrap();
    sim.simulate(&seq.experiment).unwrap()
}

fn model(noise_sd: f64, signal_scale: f64) -> FitModel {
    FitModel {
        points: POINTS,
        dwell: DWELL,
        carrier_ppm: 3.0,
        f0_mhz: 123.2,
        window_ppm: (1.8, 4.2),
        baseline_terms: 3,
        pivot_ppm: 3.0,
        concentrations: CONC.to_vec(),
        noise_sd,
        signal_scale,
    }
}

#[test]
fn crlb_and_correlation_equal_the_fit_at_the_truth() {
    // Basis at 2 Hz, mixture at 6 Hz (the fit finds 4 Hz extra): the fit's Jacobian at its
    // optimum is the objective's Jacobian built from the 6 Hz FIDs.
    let basis_signals = signals(vec![Member::NOMINAL], 2.0);
    let signals6 = signals(vec![Member::NOMINAL], 6.0);
    let scale = 2.5;
    let noise_sd = 0.004;
    let basis = Basis {
        names: NAMES.iter().map(|s| s.to_string()).collect(),
        fids: (0..4)
            .map(|m| basis_signals.fid(0, m).iter().map(|z| z * scale).collect())
            .collect(),
        dwell: DWELL,
        f0_mhz: 123.2,
        carrier_ppm: 3.0,
    };
    let mut mix = vec![C64::new(0.0, 0.0); POINTS];
    for (m, c) in CONC.iter().enumerate() {
        for (o, s) in mix.iter_mut().zip(signals6.fid(0, m)) {
            *o += s * (c * scale);
        }
    }
    let result = fit(
        &mix,
        &basis,
        &FitOptions {
            window_ppm: (1.8, 4.2),
            baseline_terms: 3,
            pivot_ppm: 3.0,
            noise_sd: Some(noise_sd),
            ..FitOptions::default()
        },
    )
    .unwrap();
    // The fit converged to the truth (noise-free data).
    for (m, c) in CONC.iter().enumerate() {
        assert!(
            (result.concentrations[m] - c).abs() < 1e-7 * c,
            "{} fitted {} vs {c}",
            NAMES[m],
            result.concentrations[m]
        );
    }
    assert!((result.linewidth_hz - 4.0).abs() < 1e-7);
    for m in 0..4 {
        let q = Quantification::new(
            model(noise_sd, scale),
            Measure::CrlbPercent { metabolite: m },
        )
        .unwrap();
        let v = q.evaluate(&signals6, None).unwrap();
        let expected = 100.0 * result.crlb[m] / CONC[m];
        println!("{}: CRLB objective {v:.9} %, fit {expected:.9} %", NAMES[m]);
        // The fit stops at its convergence tolerance; its Jacobian there differs from the one
        // at the exact truth by that much.
        assert!(
            (v - expected).abs() < 1e-6 * expected,
            "{}: {v} vs {expected}",
            NAMES[m]
        );
    }
    let q = Quantification::new(
        model(noise_sd, scale),
        Measure::CorrelationSquared { a: 0, b: 1 },
    )
    .unwrap();
    let r2 = q.evaluate(&signals6, None).unwrap();
    let r = result.correlation(0, 1);
    println!("corr(Glu, Gln): objective² {r2:.9}, fit {r:.9}");
    assert!((r2 - r * r).abs() < 1e-6 * r * r);
}

/// Central differences of `loss` along random directions of every FID sample, compared with
/// the analytic gradient: Re⟨g, δ⟩.
fn check_gradient(loss: &dyn SignalLoss, s: &Signals, label: &str) {
    let mut grad = Signals::zeros(s.members(), s.molecules(), s.points());
    let v0 = loss.evaluate(s, Some(&mut grad)).unwrap();
    assert!(v0.is_finite());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    for trial in 0..3 {
        let mut dir = Signals::zeros(s.members(), s.molecules(), s.points());
        let mut norm = 0.0;
        for member in 0..s.members() {
            for mol in 0..s.molecules() {
                let scale = s
                    .fid(member, mol)
                    .iter()
                    .map(|z| z.norm())
                    .fold(0.0, f64::max);
                for d in dir.fid_mut(member, mol) {
                    *d = C64::new(rnd(), rnd()) * scale;
                    norm += d.norm_sqr();
                }
            }
        }
        let norm = norm.sqrt();
        let analytic: f64 = (0..s.members())
            .flat_map(|m| (0..s.molecules()).map(move |k| (m, k)))
            .map(|(m, k)| {
                grad.fid(m, k)
                    .iter()
                    .zip(dir.fid(m, k))
                    .map(|(g, d)| (g.conj() * d).re)
                    .sum::<f64>()
            })
            .sum();
        // The step: perturbs the signals by ~1e-4 of their size (the losses are smooth; the
        // central difference is exact for the linear and quadratic ones, and rounding in the
        // FFT sums limits a smaller step).
        let h = 1e-2 / norm.max(1e-300);
        let shifted = |sign: f64| {
            let mut t = s.clone();
            for m in 0..s.members() {
                for k in 0..s.molecules() {
                    for (o, d) in t.fid_mut(m, k).iter_mut().zip(dir.fid(m, k)) {
                        *o += d * (sign * h);
                    }
                }
            }
            loss.evaluate(&t, None).unwrap()
        };
        let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
        let rel = (fd - analytic).abs() / analytic.abs().max(1e-12 * v0.abs());
        println!("{label} trial {trial}: analytic {analytic:.9e}, FD {fd:.9e}, rel {rel:.2e}");
        assert!(rel < 1e-6, "{label}: analytic {analytic} vs FD {fd}");
    }
}

#[test]
fn quantification_gradients_match_finite_differences() {
    let s = signals(
        vec![
            Member::NOMINAL,
            Member {
                b1: 0.8,
                b0_hz: 3.0,
            },
        ],
        6.0,
    );
    for m in [0, 1] {
        let q =
            Quantification::new(model(0.004, 2.5), Measure::CrlbPercent { metabolite: m }).unwrap();
        check_gradient(&q, &s, &format!("CRLB {}", NAMES[m]));
    }
    let q = Quantification::new(
        model(0.004, 2.5),
        Measure::CorrelationSquared { a: 0, b: 1 },
    )
    .unwrap();
    check_gradient(&q, &s, "corr²(Glu, Gln)");
}

#[test]
fn spectral_objectives_gradients_and_composite() {
    let s = signals(
        vec![
            Member::NOMINAL,
            Member {
                b1: 1.1,
                b0_hz: -2.0,
            },
        ],
        4.0,
    );
    let enh = Enhancement::new(POINTS, DWELL, 3.0, 123.2, (2.2, 2.5), 0, 3.0).unwrap();
    let sup = Suppression::new(POINTS, DWELL, 3.0, 123.2, (2.35, 2.5), 1, 5.0).unwrap();
    // Target: NAA's own spectrum with opposite sign; compared with the whole mixture.
    let target: Vec<C64> = s.fid(0, 2).iter().map(|z| -z).collect();
    let fid = Fidelity::new(DWELL, 3.0, 123.2, (1.8, 4.2), CONC.to_vec(), &target).unwrap();
    check_gradient(&enh, &s, "enhancement");
    check_gradient(&sup, &s, "suppression");
    check_gradient(&fid, &s, "fidelity");
    let parts = [
        (0.7, enh.evaluate(&s, None).unwrap()),
        (2.0, sup.evaluate(&s, None).unwrap()),
    ];
    let composite = Composite {
        parts: vec![
            Part {
                name: "enhancement".into(),
                weight: 0.7,
                loss: Box::new(enh.clone()),
            },
            Part {
                name: "suppression".into(),
                weight: 2.0,
                loss: Box::new(sup.clone()),
            },
            Part {
                name: "fidelity".into(),
                weight: 0.3,
                loss: Box::new(fid.clone()),
            },
        ],
    };
    let total = composite.evaluate(&s, None).unwrap();
    let expected =
        parts[0].0 * parts[0].1 + parts[1].0 * parts[1].1 + 0.3 * fid.evaluate(&s, None).unwrap();
    assert!((total - expected).abs() <= 1e-12 * expected.abs());
    check_gradient(&composite, &s, "composite");
    // The enhancement of the reference itself is −1 by construction.
    let plan = spinloop::spectrum::SpectrumPlan::new(POINTS).unwrap();
    let spec = plan.spectrum(s.fid(0, 0)).unwrap();
    let ppm = spinloop::spectrum::ppm_axis(POINTS, DWELL, 3.0, 123.2);
    let reference: f64 = spinloop::spectrum::window_indices(&ppm, 2.2, 2.5)
        .iter()
        .map(|&j| spec[j].re)
        .sum();
    let one = Signals::zeros(1, 4, POINTS);
    let mut nominal = one.clone();
    for m in 0..4 {
        nominal.fid_mut(0, m).copy_from_slice(s.fid(0, m));
    }
    let e = Enhancement::new(POINTS, DWELL, 3.0, 123.2, (2.2, 2.5), 0, reference).unwrap();
    assert!((e.evaluate(&nominal, None).unwrap() + 1.0).abs() < 1e-12);
}

#[test]
fn bad_objective_input_is_a_clear_error() {
    let window_outside = Quantification::new(
        FitModel {
            window_ppm: (40.0, 50.0),
            ..model(0.01, 1.0)
        },
        Measure::CrlbPercent { metabolite: 0 },
    )
    .unwrap_err()
    .to_string();
    assert!(window_outside.contains("window_ppm"), "{window_outside}");
    let bad_index = Quantification::new(model(0.01, 1.0), Measure::CrlbPercent { metabolite: 9 })
        .unwrap_err()
        .to_string();
    assert!(bad_index.contains("only 4 metabolites"), "{bad_index}");
    let same = Quantification::new(model(0.01, 1.0), Measure::CorrelationSquared { a: 1, b: 1 })
        .unwrap_err()
        .to_string();
    assert!(same.contains("two different"), "{same}");
    let zero_noise = Quantification::new(model(0.0, 1.0), Measure::CrlbPercent { metabolite: 0 })
        .unwrap_err()
        .to_string();
    assert!(zero_noise.contains("noise_sd"), "{zero_noise}");
    let outside = Enhancement::new(POINTS, DWELL, 3.0, 123.2, (30.0, 31.0), 0, 1.0)
        .unwrap_err()
        .to_string();
    assert!(outside.contains("spectral width"), "{outside}");
    let no_reference = Enhancement::new(POINTS, DWELL, 3.0, 123.2, (2.0, 2.5), 0, 0.0)
        .unwrap_err()
        .to_string();
    assert!(no_reference.contains("reference"), "{no_reference}");
    let zero_target = vec![C64::new(0.0, 0.0); POINTS];
    let e = Fidelity::new(DWELL, 3.0, 123.2, (1.8, 4.2), vec![1.0; 4], &zero_target)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zero"), "{e}");
}

/// The design gradient path (`loss_and_pulse_gradient`: shared propagators, chains skipped,
/// costates summed over the grid) equals the full gradient for the designed pulses: the
/// excitation (a chain before any slice-selective pulse) and a slice-selective refocusing pulse.
#[test]
fn design_gradient_path_equals_the_full_gradient() {
    use spinloop::physics::{Block, GradientRequest};
    use spinloop::sequence::protocols::{Protocol, PulseStyle};
    let molecules = ["Glu", "NAA"]
        .iter()
        .map(|n| library::by_name(n).unwrap())
        .collect();
    let members = vec![
        Member::NOMINAL,
        Member {
            b1: 0.85,
            b0_hz: 4.0,
        },
    ];
    let mut sim = Simulator::new(
        molecules,
        Field::THREE_T,
        3.0,
        members,
        SimOptions::default(),
    )
    .unwrap();
    let p = Protocol::press_te30(PulseStyle::Vendor).with_grid(3, 1.2);
    let c = p
        .compile(Field::THREE_T, 3.0, acquisition(512, 5e-4, 4.0).unwrap())
        .unwrap();
    sim.set_spatial_grid(c.grid.as_ref().unwrap()).unwrap();
    let mut exp = c.sequence.experiment.clone();
    let n = 120;
    exp.blocks[0] = Block::Pulse {
        dt: 2e-5,
        ux: (0..n).map(|k| 150.0 * (k as f64 * 0.05).sin()).collect(),
        uy: (0..n).map(|k| 90.0 * (k as f64 * 0.03).cos()).collect(),
    };
    let loss = Quantification::new(
        FitModel {
            points: 512,
            dwell: 5e-4,
            concentrations: vec![11.6, 12.0],
            ..model(0.004, 5.76)
        },
        Measure::CrlbPercent { metabolite: 0 },
    )
    .unwrap();
    let (v_full, g_full) = sim
        .loss_and_gradient(&exp, &loss, GradientRequest::default())
        .unwrap();
    for designed in [vec![0], vec![1], vec![0, 2]] {
        // Twice: the second call reuses the cached fixed-pulse propagators.
        for _ in 0..2 {
            let (v, g) = sim.loss_and_pulse_gradient(&exp, &loss, &designed).unwrap();
            assert!((v - v_full).abs() <= 1e-12 * v_full.abs());
            for p in 0..g.ux.len() {
                let scale = g_full.ux[p]
                    .iter()
                    .chain(&g_full.uy[p])
                    .fold(0.0f64, |m, x| m.max(x.abs()));
                let pairs = g.ux[p]
                    .iter()
                    .zip(&g_full.ux[p])
                    .chain(g.uy[p].iter().zip(&g_full.uy[p]));
                for (a, b) in pairs {
                    if designed.contains(&p) {
                        assert!(
                            (a - b).abs() <= 1e-12 * scale,
                            "pulse {p} (designed {designed:?}): {a} vs {b}"
                        );
                    } else {
                        assert_eq!(*a, 0.0, "pulse {p} is not designed");
                    }
                }
            }
        }
    }
    assert!(
        sim.loss_and_pulse_gradient(&exp, &loss, &[7])
            .unwrap_err()
            .to_string()
            .contains("shaped pulses")
    );
}
