//! Waveform parameterizations and hardware constraints (src/design/parameterization.rs,
//! src/design/constraints.rs), against independent expectations:
//!
//! - every θ (magnitudes up to 1e6) gives a finite waveform with |u_k| < P and exactly zero
//!   fixed edges, which the hardware interlock accepts (proptest, every kind);
//! - the pullback equals central finite differences of a random linear + quadratic loss;
//! - warm starts: exact inverse (Cartesian, AmplitudePhase), projection (SineBasis);
//! - penalties: closed forms and finite-difference gradients;
//! - hardware limits: each error case, the peak boundary;
//! - reproducible random starts; TOML problem-file fragments.

use std::f64::consts::PI;

use proptest::prelude::*;
use spinloop::design::constraints::{HardwareLimits, Penalties, energy, peak};
use spinloop::design::parameterization::{PEAK_MARGIN, ParamKind, Parameterization};
use spinloop::physics::PhysicsError;

const P: f64 = 250.0;
const DT: f64 = 1e-5;

/// Test-local SplitMix64 (independent of the crate's private one).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform on (−s, s).
    fn sym(&mut self, s: f64) -> f64 {
        s * (2.0 * self.next() - 1.0)
    }

    fn vec(&mut self, n: usize, s: f64) -> Vec<f64> {
        (0..n).map(|_| self.sym(s)).collect()
    }
}

/// A random valid parameterization of the given kind index (0, 1, 2).
fn param_strategy() -> impl Strategy<Value = Parameterization> {
    (0usize..3, 1usize..40, 0usize..6, 1usize..40).prop_map(|(kind, segments, edges, terms)| {
        let fixed_edges = edges.min((segments - 1) / 2);
        let free = segments - 2 * fixed_edges;
        let kind = match kind {
            0 => ParamKind::Cartesian,
            1 => ParamKind::AmplitudePhase,
            _ => ParamKind::SineBasis {
                terms: 1 + (terms - 1) % free,
            },
        };
        Parameterization::new(segments, DT, P, kind, fixed_edges).unwrap()
    })
}

fn limits() -> HardwareLimits {
    HardwareLimits {
        peak_b1_hz: P,
        max_energy_hz2s: None,
        max_duration_s: 0.02,
        raster_s: 1e-6,
        max_duty_cycle: None,
    }
}

fn all_kinds(terms: usize) -> [ParamKind; 3] {
    [
        ParamKind::Cartesian,
        ParamKind::AmplitudePhase,
        ParamKind::SineBasis { terms },
    ]
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m: f64, x| m.max(x.abs()))
}

/// Magnitudes spread over many decades, up to 1e6, with random sign.
fn wild_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e6..1e6f64,
        -3.0..3.0f64,
        (-12.0..6.0f64, any::<bool>()).prop_map(|(e, s)| if s {
            10f64.powf(e)
        } else {
            -10f64.powf(e)
        }),
        Just(0.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_theta_is_within_the_peak(
        p in param_strategy(),
        raw in prop::collection::vec(wild_value(), 80),
    ) {
        let theta: Vec<f64> = raw.iter().cycle().take(p.len()).copied().collect();
        let (ux, uy) = p.waveform(&theta).unwrap();
        prop_assert_eq!(ux.len(), p.segments);
        for k in 0..p.segments {
            prop_assert!(ux[k].is_finite() && uy[k].is_finite());
            let m = ux[k].hypot(uy[k]);
            prop_assert!(m < P, "segment {}: |u| = {} ≥ P", k, m);
            prop_assert!((ux[k] * ux[k] + uy[k] * uy[k]).sqrt() < P);
            if !p.free_range().contains(&k) {
                prop_assert!(ux[k] == 0.0 && uy[k] == 0.0, "edge {} not zero", k);
            }
        }
        prop_assert!(peak(&ux, &uy) < P);
        prop_assert!(limits().check_waveform(&ux, &uy, p.dt, None).is_ok());
        // The warm start accepts every waveform the parameterization produces and reproduces
        // it (exactly up to rounding for the invertible kinds).
        let back = p.from_waveform(&ux, &uy).unwrap();
        if !matches!(p.kind, ParamKind::SineBasis { .. }) {
            let (vx, vy) = p.waveform(&back).unwrap();
            for k in 0..p.segments {
                prop_assert!((vx[k] - ux[k]).abs() <= 1e-12 * P);
                prop_assert!((vy[k] - uy[k]).abs() <= 1e-12 * P);
            }
        }
    }

    #[test]
    fn pullback_matches_finite_differences(p in param_strategy(), seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let theta = rng.vec(p.len(), 2.0);
        let n = p.segments;
        // L = Σ a·ux + b·uy + ½ q·(ux² + uy²) + r·ux·uy, all per segment.
        let a = rng.vec(n, 1.0 / P);
        let b = rng.vec(n, 1.0 / P);
        let q = rng.vec(n, 1.0 / (P * P));
        let r = rng.vec(n, 1.0 / (P * P));
        let loss = |th: &[f64]| {
            let (ux, uy) = p.waveform(th).unwrap();
            (0..n)
                .map(|k| {
                    a[k] * ux[k] + b[k] * uy[k]
                        + 0.5 * q[k] * (ux[k] * ux[k] + uy[k] * uy[k])
                        + r[k] * ux[k] * uy[k]
                })
                .sum::<f64>()
        };
        let (ux, uy) = p.waveform(&theta).unwrap();
        let gx: Vec<f64> = (0..n).map(|k| a[k] + q[k] * ux[k] + r[k] * uy[k]).collect();
        let gy: Vec<f64> = (0..n).map(|k| b[k] + q[k] * uy[k] + r[k] * ux[k]).collect();
        let grad = p.pullback(&theta, &gx, &gy).unwrap();
        prop_assert_eq!(grad.len(), p.len());
        let h = 1e-5;
        let fd: Vec<f64> = (0..p.len())
            .map(|i| {
                let mut tp = theta.clone();
                let mut tm = theta.clone();
                tp[i] += h;
                tm[i] -= h;
                (loss(&tp) - loss(&tm)) / (2.0 * h)
            })
            .collect();
        let scale = max_abs(&fd).max(1e-3);
        for i in 0..p.len() {
            prop_assert!(
                (grad[i] - fd[i]).abs() <= 1e-6 * scale,
                "{:?} θ[{}]: adjoint {} vs FD {}", p.kind, i, grad[i], fd[i]
            );
        }
        // The in-place form agrees and overwrites.
        let mut out = vec![f64::NAN; p.len()];
        p.pullback_into(&theta, &gx, &gy, &mut out).unwrap();
        prop_assert_eq!(out, grad);
    }
}

/// The pullback near the origin (where the squash switches to its Taylor series) and at
/// saturation.
#[test]
fn pullback_near_zero_and_saturation() {
    for kind in all_kinds(3) {
        let p = Parameterization::new(6, DT, P, kind, 1).unwrap();
        for mag in [0.0, 1e-9, 3e-4, 9.99e-4, 1.001e-3, 0.3, 30.0] {
            let theta: Vec<f64> = (0..p.len())
                .map(|i| mag * if i % 3 == 0 { -1.0 } else { 0.7 })
                .collect();
            let gx: Vec<f64> = (0..6).map(|k| 1.0 + k as f64).collect();
            let gy: Vec<f64> = (0..6).map(|k| 0.5 - k as f64).collect();
            let lin = |th: &[f64]| {
                let (ux, uy) = p.waveform(th).unwrap();
                (0..6).map(|k| gx[k] * ux[k] + gy[k] * uy[k]).sum::<f64>()
            };
            let grad = p.pullback(&theta, &gx, &gy).unwrap();
            let h = 1e-6;
            for i in 0..p.len() {
                let mut tp = theta.clone();
                let mut tm = theta.clone();
                tp[i] += h;
                tm[i] -= h;
                let fd = (lin(&tp) - lin(&tm)) / (2.0 * h);
                assert!(
                    (grad[i] - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                    "{kind:?} |θ| = {mag}, i = {i}: {} vs {fd}",
                    grad[i]
                );
            }
        }
    }
}

#[test]
fn squash_closed_forms() {
    // Cartesian: u = κP·tanh(|p|)/|p|·p.
    let p = Parameterization::new(3, DT, P, ParamKind::Cartesian, 0).unwrap();
    let (ux, uy) = p.waveform(&[0.0, 0.0, 3.0, 4.0, -1e-8, 0.0]).unwrap();
    assert_eq!((ux[0], uy[0]), (0.0, 0.0));
    let t = 5f64.tanh() / 5.0;
    assert!((ux[1] - PEAK_MARGIN * P * t * 3.0).abs() < 1e-12 * P);
    assert!((uy[1] - PEAK_MARGIN * P * t * 4.0).abs() < 1e-12 * P);
    assert!((ux[2] + PEAK_MARGIN * P * 1e-8).abs() < 1e-12 * P);
    // AmplitudePhase: signed amplitude.
    let p = Parameterization::new(2, DT, P, ParamKind::AmplitudePhase, 0).unwrap();
    let (ux, uy) = p.waveform(&[0.5, PI / 3.0, -0.5, 0.0]).unwrap();
    let a = PEAK_MARGIN * P * 0.5f64.tanh();
    assert!((ux[0] - a * 0.5).abs() < 1e-12 * P);
    assert!((uy[0] - a * (3f64.sqrt() / 2.0)).abs() < 1e-12 * P);
    assert!((ux[1] + a).abs() < 1e-12 * P && uy[1] == 0.0);
    // SineBasis: one term, small coefficient: u_k ≈ κP·c·sin(π(k+½)/F) on the free window.
    let p = Parameterization::new(8, DT, P, ParamKind::SineBasis { terms: 2 }, 2).unwrap();
    let (ux, uy) = p.waveform(&[0.0, 0.0, 1e-7, -2e-7]).unwrap();
    for k in 0..8 {
        let expect = if (2..6).contains(&k) {
            PEAK_MARGIN * P * (2.0 * PI * ((k - 2) as f64 + 0.5) / 4.0).sin()
        } else {
            0.0
        };
        assert!((ux[k] - 1e-7 * expect).abs() < 1e-18 * P, "k = {k}");
        assert!((uy[k] + 2e-7 * expect).abs() < 1e-18 * P, "k = {k}");
    }
    assert_eq!(p.duration(), 8.0 * DT);
    assert_eq!(p.free_range(), 2..6);
    assert_eq!(p.len(), 4);
    assert!(!p.is_empty());
}

#[test]
fn round_trips() {
    let mut rng = Rng(7);
    // Cartesian / AmplitudePhase: exact inverse of moderate parameters.
    for kind in [ParamKind::Cartesian, ParamKind::AmplitudePhase] {
        let p = Parameterization::new(50, DT, P, kind, 3).unwrap();
        let mut theta = rng.vec(p.len(), 2.0);
        if kind == ParamKind::AmplitudePhase {
            // The inverse returns a ≥ 0 and φ ∈ (−π, π]: choose canonical parameters.
            for pair in theta.chunks_exact_mut(2) {
                pair[0] = pair[0].abs() + 1e-3;
                pair[1] *= 1.5;
            }
        }
        let (ux, uy) = p.waveform(&theta).unwrap();
        let back = p.from_waveform(&ux, &uy).unwrap();
        for i in 0..p.len() {
            assert!(
                (back[i] - theta[i]).abs() <= 1e-12 * theta[i].abs().max(1.0),
                "{kind:?} θ[{i}]: {} vs {}",
                back[i],
                theta[i]
            );
        }
    }
    // SineBasis: projection; within the span it recovers the coefficients (the sampled basis
    // is orthogonal), including terms = F.
    for (segments, edges, terms) in [(40, 0, 5), (40, 4, 32), (17, 2, 13), (1, 0, 1), (64, 1, 20)] {
        let p =
            Parameterization::new(segments, DT, P, ParamKind::SineBasis { terms }, edges).unwrap();
        let theta = rng.vec(p.len(), 0.5);
        let (ux, uy) = p.waveform(&theta).unwrap();
        let back = p.from_waveform(&ux, &uy).unwrap();
        let (vx, vy) = p.waveform(&back).unwrap();
        for k in 0..segments {
            assert!((vx[k] - ux[k]).abs() <= 1e-9 * P);
            assert!((vy[k] - uy[k]).abs() <= 1e-9 * P);
        }
        for i in 0..p.len() {
            assert!((back[i] - theta[i]).abs() < 1e-10, "terms {terms}, θ[{i}]");
        }
    }
    // SineBasis projection of a waveform outside the span: the residual of the pre-squash
    // values is orthogonal to every basis vector (least squares), checked on a small case.
    let p = Parameterization::new(12, DT, P, ParamKind::SineBasis { terms: 3 }, 0).unwrap();
    let ux: Vec<f64> = (0..12).map(|k| 0.4 * P * (k as f64 * 0.37).cos()).collect();
    let uy: Vec<f64> = (0..12).map(|k| 0.1 * P * (k as f64 - 5.5)).collect();
    let c = p.from_waveform(&ux, &uy).unwrap();
    let pre = |u: f64, w: f64| {
        let m = u.hypot(w) / (PEAK_MARGIN * P);
        let s = if m == 0.0 { 0.0 } else { m.atanh() / m };
        (s * u / (PEAK_MARGIN * P), s * w / (PEAK_MARGIN * P))
    };
    for j in 1..=3 {
        let (mut rx, mut ry) = (0.0, 0.0);
        for k in 0..12 {
            let b = |jj: usize| (jj as f64 * PI * (k as f64 + 0.5) / 12.0).sin();
            let (vx, vy) = pre(ux[k], uy[k]);
            let fx: f64 = (1..=3).map(|jj| c[2 * (jj - 1)] * b(jj)).sum();
            let fy: f64 = (1..=3).map(|jj| c[2 * (jj - 1) + 1] * b(jj)).sum();
            rx += (vx - fx) * b(j);
            ry += (vy - fy) * b(j);
        }
        assert!(rx.abs() < 1e-12 && ry.abs() < 1e-12, "j = {j}: {rx}, {ry}");
    }
}

#[test]
fn from_waveform_errors() {
    let p = Parameterization::new(6, DT, P, ParamKind::Cartesian, 1).unwrap();
    let mut ux = vec![0.0, 10.0, -20.0, 30.0, 40.0, 0.0];
    let uy = vec![0.0; 6];
    assert!(p.from_waveform(&ux, &uy).is_ok());
    // At the peak on segment 3: rejected, naming the segment and the peak.
    ux[3] = P;
    let e = p.from_waveform(&ux, &uy).unwrap_err().to_string();
    assert!(e.contains("u[3]") && e.contains("250"), "{e}");
    // Just below the peak (in the saturated band above κP): accepted and reproduced.
    ux[3] = P * (1.0 - 2e-13);
    let back = p.from_waveform(&ux, &uy).unwrap();
    let (vx, _) = p.waveform(&back).unwrap();
    assert!((vx[3] - ux[3]).abs() <= 1e-12 * P);
    ux[3] = 30.0;
    // Edge not zero.
    ux[0] = 1e-6;
    let e = p.from_waveform(&ux, &uy).unwrap_err().to_string();
    assert!(e.contains("u[0]") && e.contains("fixed edge"), "{e}");
    ux[0] = 1e-13 * P;
    assert!(p.from_waveform(&ux, &uy).is_ok());
    ux[0] = 0.0;
    // NaN and size.
    ux[2] = f64::NAN;
    let e = p.from_waveform(&ux, &uy).unwrap_err().to_string();
    assert!(e.contains("ux[2]"), "{e}");
    assert!(matches!(
        p.from_waveform(&ux[..5], &uy),
        Err(PhysicsError::SizeMismatch {
            expected: 6,
            got: 5,
            ..
        })
    ));
}

#[test]
fn parameterization_validation_and_input_errors() {
    let bad = [
        Parameterization::new(0, DT, P, ParamKind::Cartesian, 0),
        Parameterization::new(4, 0.0, P, ParamKind::Cartesian, 0),
        Parameterization::new(4, f64::NAN, P, ParamKind::Cartesian, 0),
        Parameterization::new(4, DT, -1.0, ParamKind::Cartesian, 0),
        Parameterization::new(4, DT, f64::INFINITY, ParamKind::Cartesian, 0),
        Parameterization::new(4, DT, P, ParamKind::Cartesian, 2),
        Parameterization::new(4, DT, P, ParamKind::Cartesian, usize::MAX),
        Parameterization::new(4, DT, P, ParamKind::SineBasis { terms: 0 }, 0),
        Parameterization::new(4, DT, P, ParamKind::SineBasis { terms: 5 }, 0),
        Parameterization::new(6, DT, P, ParamKind::SineBasis { terms: 3 }, 2),
    ];
    for (i, b) in bad.iter().enumerate() {
        assert!(b.is_err(), "case {i} accepted");
    }
    assert!(Parameterization::new(5, DT, P, ParamKind::SineBasis { terms: 1 }, 2).is_ok());
    let p = Parameterization::new(4, DT, P, ParamKind::AmplitudePhase, 0).unwrap();
    let mut theta = vec![0.1; 8];
    assert!(matches!(
        p.waveform(&theta[..7]),
        Err(PhysicsError::SizeMismatch {
            expected: 8,
            got: 7,
            ..
        })
    ));
    theta[5] = f64::NAN;
    let e = p.waveform(&theta).unwrap_err().to_string();
    assert!(e.contains("theta[5]"), "{e}");
    theta[5] = f64::INFINITY;
    assert!(p.waveform(&theta).is_err());
    theta[5] = 0.1;
    assert!(p.pullback(&theta, &[0.0; 3], &[0.0; 4]).is_err());
    // A struct mutated into an invalid state is re-validated by every method.
    let mut q = p;
    q.fixed_edges = 2;
    assert!(q.waveform(&[]).is_err());
}

#[test]
fn random_starts_are_reproducible() {
    for kind in all_kinds(4) {
        let p = Parameterization::new(30, DT, P, kind, 2).unwrap();
        let a = p.random(42, 0.3);
        assert_eq!(a.len(), p.len());
        assert_eq!(a, p.random(42, 0.3));
        assert_ne!(a, p.random(43, 0.3));
        assert!(a.iter().all(|x| x.abs() < 0.3));
        assert!(p.waveform(&a).is_ok());
    }
    // Roughly uniform: mean ≈ 0, variance ≈ s²/3.
    let p = Parameterization::new(5001, DT, P, ParamKind::Cartesian, 0).unwrap();
    let v = p.random(1, 1.0);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    // Standard error of the mean: 1/√(3·10002) ≈ 0.0058; allow 5σ.
    assert!(
        mean.abs() < 0.03 && (var - 1.0 / 3.0).abs() < 0.02,
        "{mean} {var}"
    );
}

// ---------------------------------------------------------------------------------------------
// Penalties

fn only(energy_weight: f64, smoothness_weight: f64, energy_limit_weight: f64) -> Penalties {
    Penalties {
        energy_weight,
        smoothness_weight,
        energy_limit_weight,
    }
}

fn eval(p: &Penalties, ux: &[f64], uy: &[f64], emax: Option<f64>) -> (f64, Vec<f64>, Vec<f64>) {
    let mut gx = vec![0.0; ux.len()];
    let mut gy = vec![0.0; ux.len()];
    let l = p.evaluate(ux, uy, DT, P, emax, &mut gx, &mut gy).unwrap();
    (l, gx, gy)
}

#[test]
fn penalty_closed_forms() {
    let n = 200;
    let t = n as f64 * DT;
    // Constant waveform at full power, arbitrary phase.
    let ux = vec![P * 0.6; n];
    let uy = vec![P * 0.8; n];
    assert!((energy(&ux, &uy, DT) - P * P * t).abs() < 1e-12 * P * P * t);
    assert!((peak(&ux, &uy) - P).abs() < 1e-12 * P);
    let (l, _, _) = eval(&only(3.0, 0.0, 0.0), &ux, &uy, None);
    assert!((l - 3.0).abs() < 1e-12, "{l}");
    // Its smoothness penalty: the switch-on and switch-off steps, N·2P²/P² = 2N.
    let (l, _, _) = eval(&only(0.0, 1.0, 0.0), &ux, &uy, None);
    assert!((l - 2.0 * n as f64).abs() < 1e-9, "{l}");
    // Half-sine lobe sampled at midpoints, u_k = P·sin(π(k+½)/N): interior steps
    // 2P·sin(π/2N)·cos(πk/N) (k = 1..N−1), edge steps P·sin(π/2N), so
    // N·Σ|Δu|²/P² = N·sin²(π/2N)·(4·(N/2 − 1) + 2) = N·(2N − 2)·sin²(π/2N) → π²/2.
    let ux: Vec<f64> = (0..n)
        .map(|k| P * (PI * (k as f64 + 0.5) / n as f64).sin())
        .collect();
    let uy = vec![0.0; n];
    let nf = n as f64;
    let exact = nf * (2.0 * nf - 2.0) * (PI / (2.0 * nf)).sin().powi(2);
    let (l, _, _) = eval(&only(0.0, 2.0, 0.0), &ux, &uy, None);
    assert!(
        (l - 2.0 * exact).abs() < 1e-10 * exact,
        "{l} vs {}",
        2.0 * exact
    );
    assert!((exact - PI * PI / 2.0).abs() < 0.05);
    // Half-sine energy: mean power ½.
    let (l, _, _) = eval(&only(1.0, 0.0, 0.0), &ux, &uy, None);
    assert!((l - 0.5).abs() < 1e-12, "{l}");
    // Energy barrier: E = 1.5·Emax → w·0.25; below the limit or without one → 0.
    let e = energy(&ux, &uy, DT);
    let (l, _, _) = eval(&only(0.0, 0.0, 4.0), &ux, &uy, Some(e / 1.5));
    assert!((l - 1.0).abs() < 1e-12, "{l}");
    let (l, gx, _) = eval(&only(0.0, 0.0, 4.0), &ux, &uy, Some(e * 1.01));
    assert!(l == 0.0 && gx.iter().all(|g| *g == 0.0));
    let (l, _, _) = eval(&only(0.0, 0.0, 4.0), &ux, &uy, None);
    assert_eq!(l, 0.0);
    // Zero waveform: everything zero.
    let z = vec![0.0; 5];
    let (l, gx, gy) = eval(&only(1.0, 1.0, 1.0), &z, &z, Some(1.0));
    assert!(l == 0.0 && gx.iter().chain(&gy).all(|g| *g == 0.0));
    assert_eq!(peak(&[], &[]), 0.0);
    assert!(peak(&[1.0, f64::NAN, 3.0], &[0.0; 3]).is_nan());
}

#[test]
fn penalty_gradients_match_finite_differences() {
    let mut rng = Rng(99);
    for n in [1usize, 2, 7, 60] {
        let ux = rng.vec(n, P);
        let uy = rng.vec(n, P);
        let emax = 0.5 * energy(&ux, &uy, DT); // barrier active
        let pen = only(0.7, 0.3, 2.0);
        let mut gx = vec![1.0; n];
        let mut gy = vec![-2.0; n];
        pen.evaluate(&ux, &uy, DT, P, Some(emax), &mut gx, &mut gy)
            .unwrap();
        let f = |ux: &[f64], uy: &[f64]| eval(&pen, ux, uy, Some(emax)).0;
        let h = 1e-4 * P;
        for k in 0..n {
            for (ch, g) in [(0, gx[k] - 1.0), (1, gy[k] + 2.0)] {
                let (mut xp, mut yp, mut xm, mut ym) =
                    (ux.clone(), uy.clone(), ux.clone(), uy.clone());
                if ch == 0 {
                    xp[k] += h;
                    xm[k] -= h;
                } else {
                    yp[k] += h;
                    ym[k] -= h;
                }
                let fd = (f(&xp, &yp) - f(&xm, &ym)) / (2.0 * h);
                assert!(
                    (g - fd).abs() <= 1e-6 * fd.abs().max(1e-3 / P),
                    "n {n} k {k} ch {ch}: {g} vs {fd}"
                );
            }
        }
    }
}

#[test]
fn penalty_input_errors() {
    let u = vec![1.0; 4];
    let mut g = vec![0.0; 4];
    let mut h = vec![0.0; 4];
    let pen = only(1.0, 1.0, 1.0);
    assert!(
        only(-1.0, 0.0, 0.0)
            .evaluate(&u, &u, DT, P, None, &mut g, &mut h)
            .is_err()
    );
    assert!(
        only(0.0, f64::NAN, 0.0)
            .evaluate(&u, &u, DT, P, None, &mut g, &mut h)
            .is_err()
    );
    assert!(pen.evaluate(&u, &u, 0.0, P, None, &mut g, &mut h).is_err());
    assert!(pen.evaluate(&u, &u, DT, -P, None, &mut g, &mut h).is_err());
    assert!(
        pen.evaluate(&u, &u, DT, P, Some(-1.0), &mut g, &mut h)
            .is_err()
    );
    assert!(
        pen.evaluate(&u, &u[..3], DT, P, None, &mut g, &mut h)
            .is_err()
    );
    assert!(
        pen.evaluate(&u, &u, DT, P, None, &mut g[..3], &mut h)
            .is_err()
    );
    assert!(
        pen.evaluate(&[], &[], DT, P, None, &mut [], &mut [])
            .is_err()
    );
    let mut bad = u.clone();
    bad[2] = f64::INFINITY;
    let e = pen
        .evaluate(&u, &bad, DT, P, None, &mut g, &mut h)
        .unwrap_err()
        .to_string();
    assert!(e.contains("uy[2]"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Hardware limits

fn design(segments: usize, dt: f64, peak_hz: f64) -> Parameterization {
    Parameterization::new(segments, dt, peak_hz, ParamKind::Cartesian, 0).unwrap()
}

fn err_text<T: std::fmt::Debug>(r: Result<T, PhysicsError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn check_design_cases() {
    let lim = limits();
    assert!(lim.check_design(&design(500, 2e-5, P), None).is_ok()); // 10 ms, peak = limit
    // Peak above the hardware limit: both numbers named.
    let e = err_text(lim.check_design(&design(500, 2e-5, 300.0), None));
    assert!(e.contains("300") && e.contains("250"), "{e}");
    // Too long: 2001 × 1e-5 s = 20.01 ms > 20 ms.
    let e = err_text(lim.check_design(&design(2001, 1e-5, P), None));
    assert!(e.contains("0.02") && e.contains("2001"), "{e}");
    assert!(lim.check_design(&design(2000, 1e-5, P), None).is_ok());
    // dt not a raster multiple; below one raster step.
    let e = err_text(lim.check_design(&design(100, 1.5e-6, P), None));
    assert!(e.contains("0.0000015") && e.contains("0.000001"), "{e}");
    assert!(lim.check_design(&design(100, 0.4e-6, P), None).is_err());
    assert!(
        lim.check_design(&design(100, 3e-6 * (1.0 + 1e-12), P), None)
            .is_ok()
    );
    // TR: a pulse longer than TR; duty-cycle limit.
    assert!(
        lim.check_design(&design(500, 2e-5, P), Some(0.005))
            .is_err()
    );
    assert!(lim.check_design(&design(500, 2e-5, P), Some(0.0)).is_err());
    let duty = HardwareLimits {
        max_duty_cycle: Some(0.05),
        ..lim
    };
    assert!(duty.check_design(&design(500, 2e-5, P), Some(0.2)).is_ok()); // 0.05 exactly
    let e = err_text(duty.check_design(&design(500, 2e-5, P), Some(0.1)));
    assert!(e.contains("0.1") && e.contains("0.05"), "{e}");
    let e = err_text(duty.check_design(&design(500, 2e-5, P), None));
    assert!(e.contains("tr_s") && e.contains("0.05"), "{e}");
    // Invalid limits.
    for bad in [
        HardwareLimits {
            max_energy_hz2s: Some(-1.0),
            ..lim
        },
        HardwareLimits {
            max_energy_hz2s: Some(0.0),
            ..lim
        },
        HardwareLimits {
            max_duty_cycle: Some(1.5),
            ..lim
        },
        HardwareLimits {
            peak_b1_hz: f64::NAN,
            ..lim
        },
        HardwareLimits {
            raster_s: 0.0,
            ..lim
        },
        HardwareLimits {
            max_duration_s: -1.0,
            ..lim
        },
    ] {
        assert!(
            bad.check_design(&design(10, 1e-5, P), None).is_err(),
            "{bad:?}"
        );
    }
    // Fixed edges leaving no free segment (a struct built without `new`).
    let no_free = Parameterization {
        segments: 10,
        dt: 1e-5,
        peak_hz: P,
        kind: ParamKind::Cartesian,
        fixed_edges: 5,
    };
    let e = err_text(lim.check_design(&no_free, None));
    assert!(
        e.contains("fixed_edges") && e.contains('5') && e.contains("10"),
        "{e}"
    );
}

#[test]
fn check_waveform_cases() {
    let lim = limits();
    let n = 100;
    // Exactly at the peak, along x and diagonally: accepted.
    let mut ux = vec![0.0; n];
    let mut uy = vec![0.0; n];
    ux[10] = P;
    ux[20] = P * (0.3f64).cos();
    uy[20] = P * (0.3f64).sin();
    ux[30] = -P / 2f64.sqrt();
    uy[30] = P / 2f64.sqrt();
    assert!(lim.check_waveform(&ux, &uy, DT, None).is_ok());
    // Just over the peak: rejected, naming segment, value and limit.
    ux[40] = P * (1.0 + 1e-9);
    let e = err_text(lim.check_waveform(&ux, &uy, DT, None));
    assert!(e.contains("u[40]") && e.contains("250"), "{e}");
    ux[40] = 0.0;
    // Non-finite.
    uy[5] = f64::NAN;
    let e = err_text(lim.check_waveform(&ux, &uy, DT, None));
    assert!(e.contains("u[5]") && e.contains("finite"), "{e}");
    uy[5] = 0.0;
    // Energy: at the limit accepted, above rejected.
    let e_wave = energy(&ux, &uy, DT);
    let en = |max| HardwareLimits {
        max_energy_hz2s: Some(max),
        ..lim
    };
    assert!(en(e_wave).check_waveform(&ux, &uy, DT, None).is_ok());
    let e = err_text(en(e_wave * 0.99).check_waveform(&ux, &uy, DT, None));
    assert!(e.contains("energy"), "{e}");
    // Duration, raster, duty, TR.
    assert!(lim.check_waveform(&ux, &uy, 1e-3, None).is_err()); // 0.1 s > 0.02 s
    assert!(lim.check_waveform(&ux, &uy, 1.5e-6, None).is_err());
    assert!(lim.check_waveform(&ux, &uy, DT, Some(5e-4)).is_err()); // 1 ms > TR
    let duty = HardwareLimits {
        max_duty_cycle: Some(0.1),
        ..lim
    };
    assert!(duty.check_waveform(&ux, &uy, DT, Some(0.01)).is_ok());
    assert!(duty.check_waveform(&ux, &uy, DT, Some(0.009)).is_err());
    assert!(duty.check_waveform(&ux, &uy, DT, None).is_err());
    // Sizes and empty.
    assert!(matches!(
        lim.check_waveform(&ux, &uy[..99], DT, None),
        Err(PhysicsError::SizeMismatch { .. })
    ));
    assert!(lim.check_waveform(&[], &[], DT, None).is_err());
    // Several violations are all reported.
    ux[1] = 2.0 * P;
    let v = en(1e-9).waveform_violations(&ux, &uy, 1e-3, None);
    assert_eq!(v.len(), 3, "{v:?}");
    let e = err_text(en(1e-9).check_waveform(&ux, &uy, 1e-3, None));
    assert!(e.contains("3 violations") && e.contains("u[1]"), "{e}");
}

#[test]
fn problem_file_fragments() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Problem {
        limits: HardwareLimits,
        penalties: Penalties,
        pulse: Parameterization,
    }
    let text = r#"
        [limits]
        peak_b1_hz = 250.0
        max_duration_s = 0.02
        raster_s = 1e-6
        max_energy_hz2s = 400.0

        [penalties]
        smoothness_weight = 0.1

        [pulse]
        segments = 500
        dt = 2e-5
        peak_hz = 250.0
        fixed_edges = 2
        kind = { type = "sine_basis", terms = 12 }
    "#;
    let p: Problem = toml::from_str(text).unwrap();
    assert_eq!(p.limits.max_energy_hz2s, Some(400.0));
    assert_eq!(p.limits.max_duty_cycle, None);
    assert_eq!(p.penalties, only(0.0, 0.1, 0.0));
    assert_eq!(p.pulse.kind, ParamKind::SineBasis { terms: 12 });
    assert_eq!(p.pulse.len(), 24);
    assert!(p.limits.check_design(&p.pulse, Some(1.0)).is_ok());
    let cart: Parameterization = toml::from_str(
        "segments = 4\ndt = 1e-5\npeak_hz = 10.0\nkind = { type = \"amplitude_phase\" }",
    )
    .unwrap();
    assert_eq!(cart.kind, ParamKind::AmplitudePhase);
    assert_eq!(cart.fixed_edges, 0);
    assert!(
        toml::from_str::<Parameterization>(
            "segments = 4\ndt = 1e-5\npeak_hz = 10.0\nkind = { type = \"sine_basis\" }"
        )
        .is_err()
    );
    assert!(
        toml::from_str::<Parameterization>(
            "segments = 4\ndt = 1e-5\npeak_hz = 10.0\nkind = { type = \"polar\" }"
        )
        .is_err()
    );
    // Unknown fields are rejected everywhere.
    assert!(toml::from_str::<Penalties>("energy_weigth = 1.0").is_err());
    assert!(
        toml::from_str::<HardwareLimits>(
            "peak_b1_hz = 1.0\nmax_duration_s = 1.0\nraster_s = 1e-6\npeak = 2.0"
        )
        .is_err()
    );
    assert!(
        toml::from_str::<Parameterization>(
            "segments = 4\ndt = 1e-5\npeak_hz = 10.0\nkind = { type = \"cartesian\", terms = 3 }"
        )
        .is_err()
    );
}

/// Parameters at the top of the f64 range: sums that overflow (sine basis) or norms that
/// overflow (Cartesian) still give finite samples below the peak and a finite pullback.
#[test]
fn overflowing_parameters_stay_finite_and_below_the_peak() {
    use spinloop::design::parameterization::{ParamKind, Parameterization};
    let cases = [
        (
            ParamKind::SineBasis { terms: 4 },
            vec![f64::MAX, 0.0, f64::MAX, 0.0, 0.0, -f64::MAX, 1.0, 0.0],
        ),
        (
            ParamKind::SineBasis { terms: 4 },
            vec![
                f64::MAX,
                f64::MAX,
                -f64::MAX,
                f64::MAX,
                f64::MAX,
                0.0,
                0.0,
                0.0,
            ],
        ),
        (ParamKind::Cartesian, vec![f64::MAX; 32]),
        (ParamKind::Cartesian, [-f64::MAX, f64::MAX].repeat(16)),
    ];
    for (kind, theta) in cases {
        let p = Parameterization::new(16, 1e-5, 800.0, kind, 0).unwrap();
        let (ux, uy) = p.waveform(&theta).unwrap();
        for (x, y) in ux.iter().zip(&uy) {
            assert!(x.is_finite() && y.is_finite(), "{kind:?}: ({x}, {y})");
            assert!(x.hypot(*y) < 800.0, "{kind:?}: |u| = {}", x.hypot(*y));
        }
        assert!(ux.iter().zip(&uy).any(|(x, y)| x.hypot(*y) > 799.0));
        let g = p.pullback(&theta, &[1.0; 16], &[-0.5; 16]).unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{kind:?}: {g:?}");
    }
}
