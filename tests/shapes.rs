//! Pulse shapes (`spinloop::sequence::shapes`) and Bruker shape files
//! (`spinloop::formats::bruker`):
//!
//! - family constructors: symmetry, normalisation, zero crossings, integrals against closed
//!   forms (hard: T; Gaussian: the erf formula; sinc–Hanning: converging high-resolution
//!   quadrature of the continuous function), bandwidths against the numerical small-tip profile,
//!   the hyperbolic-secant amplitude, phase and frequency sweep, parameter validation;
//! - `peak_for_flip` against the simulator (one spin): exact on resonance for amplitude-modulated
//!   shapes, offset-shifted sinc selects the right side of the spectrum, adiabatic inversion
//!   over a band of offsets insensitive to the B1 scale;
//! - `with_offset`, `with_phase`, `resampled`, controls and blocks;
//! - Bruker shape files: a hand-written interop.md §2a example, every bad-input case (the error
//!   names the file and the line or field; arbitrary or mangled text never panics), write → read
//!   and Shape → file → Shape round trips.

use std::f64::consts::{FRAC_PI_2, PI};

use num_complex::Complex64 as C64;
use spinloop::formats::bruker::{BrukerShape, ExMode, read_shape, read_shape_file, write_shape};
use spinloop::physics::{
    Acquisition, Block, Experiment, Field, Member, Molecule, Nucleus, PhysicsError, SimOptions,
    Simulator, SingletGroup,
};
use spinloop::sequence::shapes::{Shape, ShapeKind};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One proton at 3.0 ppm (the carrier).
fn one_spin() -> Molecule {
    Molecule {
        name: "S".to_string(),
        description: "one uncoupled proton".to_string(),
        fragments: vec![],
        singlets: vec![SingletGroup {
            label: "H".to_string(),
            shift_ppm: 3.0,
            protons: 1,
            nucleus: Nucleus::H1,
        }],
    }
}

/// Final (Mx, My, Mz) = Tr[ρ F_a]/Tr[F_a²] of the one spin for each member, after `blocks`.
fn magnetisation(blocks: Vec<Block>, members: &[Member]) -> Vec<[f64; 3]> {
    let mut sim = Simulator::new(
        vec![one_spin()],
        Field::THREE_T,
        3.0,
        members.to_vec(),
        SimOptions::default(),
    )
    .expect("simulator");
    let exp = Experiment {
        blocks,
        acquisition: Acquisition {
            points: 16,
            dwell: 1e-3,
            linewidth_hz: 0.0,
        },
    };
    sim.simulate(&exp).expect("simulate");
    (0..members.len())
        .map(|m| {
            let rho = sim.final_state(m, 0).expect("state");
            // Fz = diag(½, −½), Fx = ½σx, Fy = ½σy; Tr[F²] = ½.
            [
                2.0 * rho[(0, 1)].re,
                -2.0 * rho[(0, 1)].im,
                (rho[(0, 0)] - rho[(1, 1)]).re,
            ]
        })
        .collect()
}

fn member(b1: f64, b0_hz: f64) -> Member {
    Member { b1, b0_hz }
}

/// Small-tip profile |Σ s_k e^{−i2πf t_k}|·dt.
fn profile(shape: &Shape, f: f64) -> f64 {
    let sum: C64 = shape
        .samples
        .iter()
        .zip(shape.times())
        .map(|(s, t)| s * C64::from_polar(1.0, -2.0 * PI * f * t))
        .sum();
    sum.norm() * shape.dt
}

/// Full width (Hz) at half maximum of the small-tip profile, by bisection on [0, f_max]
/// (the profile must decrease monotonically there).
fn numeric_fwhm(shape: &Shape, f_max: f64) -> f64 {
    let half = 0.5 * profile(shape, 0.0);
    let (mut lo, mut hi) = (0.0, f_max);
    assert!(profile(shape, hi) < half);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if profile(shape, mid) > half {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo + hi
}

/// erf by the Kummer series erf x = (2x/√π)·e^{−x²}·Σ (2x²)^n/(1·3·…·(2n+1)) (positive terms).
fn erf(x: f64) -> f64 {
    let (mut term, mut sum, mut n) = (1.0, 1.0, 0.0);
    while term > 1e-18 * sum {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 * x / PI.sqrt() * (-x * x).exp() * sum
}

/// Composite Simpson on [a, b] with `m` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, m: usize) -> f64 {
    let h = (b - a) / m as f64;
    let mut s = f(a) + f(b);
    for i in 1..m {
        s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

/// The `field` of an InvalidParameter error.
fn invalid_field(e: &PhysicsError) -> &str {
    match e {
        PhysicsError::InvalidParameter { field, .. } => field,
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

fn is_symmetric(s: &Shape, tol: f64) -> bool {
    let n = s.len();
    (0..n).all(|k| (s.samples[k] - s.samples[n - 1 - k]).norm() <= tol)
}

// ---------------------------------------------------------------------------------------------
// Families
// ---------------------------------------------------------------------------------------------

#[test]
fn hard_pulse_closed_forms() {
    let t = 1e-3;
    let s = Shape::hard(t, 200).unwrap();
    assert_eq!(s.len(), 200);
    assert!(!s.is_empty());
    assert_eq!(s.kind, ShapeKind::Hard);
    assert!((s.duration() - t).abs() < 1e-18);
    assert!(s.samples.iter().all(|&x| x == C64::new(1.0, 0.0)));
    let i = s.integral();
    assert!((i.re - t).abs() < 1e-15 && i.im == 0.0);
    // 2π·peak·T = π/2 → peak = 1/(4T) = 250 Hz.
    assert!((s.peak_for_flip(FRAC_PI_2).unwrap() - 250.0).abs() < 1e-9);
    // FWHM of T·|sinc(πfT)|: 1.2067/T, and the numerical profile of the sampled pulse agrees.
    let bw = s.bandwidth_hz().unwrap();
    assert!((bw * t - 1.206_709_128_8).abs() < 1e-9, "BW·T = {}", bw * t);
    let fwhm = numeric_fwhm(&s, 1.0 / t);
    assert!((fwhm / bw - 1.0).abs() < 1e-4, "numeric {fwhm} vs {bw}");
    // x½ really is the half point of sin x / x.
    let x = PI * bw * t / 2.0;
    assert!((x.sin() / x - 0.5).abs() < 1e-12);
}

#[test]
fn constructors_reject_bad_parameters_naming_them() {
    let cases: Vec<(Result<Shape, PhysicsError>, &str)> = vec![
        (Shape::hard(f64::NAN, 10), "duration"),
        (Shape::hard(0.0, 10), "duration"),
        (Shape::hard(-1e-3, 10), "duration"),
        (Shape::hard(f64::INFINITY, 10), "duration"),
        (Shape::hard(1e-3, 0), "n"),
        (Shape::hard(1e-3, usize::MAX), "n"),
        (Shape::sinc_hanning(1e-3, 100, 0), "lobes"),
        (Shape::sinc_hanning(1e-3, 0, 2), "n"),
        (Shape::gaussian(1e-3, 100, 0.0), "truncation"),
        (Shape::gaussian(1e-3, 100, 1.0), "truncation"),
        (Shape::gaussian(1e-3, 100, f64::NAN), "truncation"),
        (Shape::gaussian(-1.0, 100, 0.01), "duration"),
        (Shape::hyperbolic_secant(1e-3, 100, -1.0, 5.3), "mu"),
        (Shape::hyperbolic_secant(1e-3, 100, f64::NAN, 5.3), "mu"),
        (Shape::hyperbolic_secant(1e-3, 100, 5.0, 0.0), "beta"),
        (
            Shape::hyperbolic_secant(1e-3, 100, 5.0, f64::INFINITY),
            "beta",
        ),
        (
            Shape::from_samples("x", 0.0, vec![C64::new(1.0, 0.0)]),
            "dt",
        ),
        (Shape::from_samples("x", 1e-6, vec![]), "samples.len()"),
        (
            Shape::from_samples("x", 1e-6, vec![C64::new(f64::NAN, 0.0)]),
            "samples[0]",
        ),
        (
            Shape::from_samples("x", 1e-6, vec![C64::new(0.5, 0.0), C64::new(0.0, 1.5)]),
            "samples[1]",
        ),
    ];
    for (i, (r, name)) in cases.into_iter().enumerate() {
        let e = r.expect_err(&format!("case {i} must fail"));
        assert_eq!(invalid_field(&e), name, "case {i}: {e}");
    }
    let e = Shape::from_controls("x", 1e-6, &[1.0, 2.0], &[0.0]).unwrap_err();
    assert!(matches!(
        e,
        PhysicsError::SizeMismatch {
            expected: 2,
            got: 1,
            ..
        }
    ));
    let e = Shape::from_controls("x", 1e-6, &[0.0, 0.0], &[0.0, 0.0]).unwrap_err();
    assert!(e.to_string().contains("peak"), "{e}");
    let e = Shape::from_controls("x", 1e-6, &[1.0, f64::NAN], &[0.0, 0.0]).unwrap_err();
    assert_eq!(invalid_field(&e), "ux[1]");
}

#[test]
fn sinc_hanning_symmetry_normalisation_zero_crossings() {
    for lobes in 1..=5u32 {
        for n in [64usize, 65, 400, 401] {
            let s = Shape::sinc_hanning(4e-3, n, lobes).unwrap();
            assert_eq!(s.kind, ShapeKind::SincHanning { lobes });
            assert!(s.samples.iter().all(|x| x.im == 0.0), "real shape");
            assert!(is_symmetric(&s, 1e-13), "L={lobes} n={n}");
            assert!((s.max_abs() - 1.0).abs() < 1e-15);
            // Zero crossings at t = m·T/(2L), m = ±1…±(L−1) inside, ±L at the edges.
            let changes = s
                .samples
                .windows(2)
                .filter(|w| w[0].re * w[1].re < 0.0)
                .count();
            assert_eq!(changes, 2 * (lobes as usize - 1), "L={lobes} n={n}");
            // The edge samples are small (window and sinc both vanish at ±T/2).
            assert!(s.samples[0].norm() < 1e-2, "edge {}", s.samples[0]);
        }
    }
}

#[test]
fn sinc_hanning_integral_converges_to_quadrature() {
    let (t, lobes) = (4e-3, 3u32);
    let l = f64::from(lobes);
    let f = |x: f64| {
        let a = 2.0 * PI * l * x / t;
        let sinc = if a == 0.0 { 1.0 } else { a.sin() / a };
        sinc * (0.5 + 0.5 * (2.0 * PI * x / t).cos())
    };
    let exact = simpson(f, -t / 2.0, t / 2.0, 2_000_000);
    // Odd n: the centre sample is the unnormalised peak 1, so Σ s·dt is the midpoint rule.
    let mut errors = Vec::new();
    for n in [101usize, 201, 401, 801, 1601] {
        let s = Shape::sinc_hanning(t, n, lobes).unwrap();
        let i = s.integral();
        assert_eq!(i.im, 0.0);
        errors.push(((i.re - exact) / exact).abs());
    }
    // Midpoint rule: the O(dt²) Euler–Maclaurin term is ∝ f'(T/2) − f'(−T/2) = 0 (the window
    // and the sinc both vanish at the edges), so the error is O(dt⁴): each doubling divides it
    // by ~16 (measured 15.7, 15.9, 16.2) down to the quadrature's own floor.
    for w in errors[..4].windows(2) {
        let ratio = w[0] / w[1];
        assert!(
            (14.0..18.0).contains(&ratio),
            "convergence ratio {ratio}: {errors:?}"
        );
    }
    assert!(errors[3] < 1e-11, "{errors:?}");
    assert!(errors[4] < 1e-12, "{errors:?}");
}

#[test]
fn sinc_hanning_bandwidth_is_half_point_of_profile() {
    for lobes in 2..=8u32 {
        let t = 5e-3;
        let s = Shape::sinc_hanning(t, 1001, lobes).unwrap();
        let bw = s.bandwidth_hz().unwrap();
        assert!((bw - 2.0 * f64::from(lobes) / t).abs() < 1e-9);
        let p0 = profile(&s, 0.0);
        for edge in [-bw / 2.0, bw / 2.0] {
            let ratio = profile(&s, edge) / p0;
            // Measured: 0.500 ± 0.006 for L = 2…8 (the window smooths the edges symmetrically).
            assert!(
                (ratio - 0.5).abs() < 0.01,
                "L={lobes}: |FT(±BW/2)|/|FT(0)| = {ratio}"
            );
        }
        // Inside the band the profile stays high, outside it is small (measured for L = 2:
        // 0.838 at 0.6·BW/2 and 0.049 at 1.6·BW/2; for L ≥ 3 above 0.95 and below 0.005).
        let (inside, outside) = (
            profile(&s, 0.6 * bw / 2.0) / p0,
            profile(&s, 1.6 * bw / 2.0) / p0,
        );
        let (min_in, max_out) = if lobes == 2 {
            (0.8, 0.06)
        } else {
            (0.95, 0.005)
        };
        assert!(
            inside > min_in && outside < max_out,
            "L={lobes}: {inside} {outside}"
        );
    }
    // L = 1 (a windowed main lobe only) is not rectangle-like: the window's own transition
    // (~2/T) is as wide as the band, and the profile at ±BW/2 is 0.62 of its centre value.
    let s = Shape::sinc_hanning(5e-3, 1001, 1).unwrap();
    let ratio = profile(&s, s.bandwidth_hz().unwrap() / 2.0) / profile(&s, 0.0);
    assert!((ratio - 0.621).abs() < 0.01, "L=1: {ratio}");
}

#[test]
fn gaussian_closed_forms() {
    let (t, trunc) = (2e-3, 0.01);
    let sigma = 0.5 * t / (-2.0 * f64::ln(trunc)).sqrt();
    let exact = sigma * (2.0 * PI).sqrt() * erf(t / (2.0 * 2f64.sqrt() * sigma));
    let mut last_err = f64::INFINITY;
    for n in [101usize, 1001, 10001] {
        let s = Shape::gaussian(t, n, trunc).unwrap();
        assert!(is_symmetric(&s, 1e-14));
        assert!((s.max_abs() - 1.0).abs() < 1e-15);
        // The first sample is the Gaussian at the first segment centre.
        let t0 = -t / 2.0 + s.dt / 2.0;
        assert!((s.samples[0].re - (-t0 * t0 / (2.0 * sigma * sigma)).exp()).abs() < 1e-13);
        let err = ((s.integral().re - exact) / exact).abs();
        assert!(err < last_err / 50.0 || err < 1e-11, "n={n}: {err}");
        last_err = err;
    }
    assert!(last_err < 1e-8, "midpoint vs erf formula: {last_err}");
    // Edge value: the continuous function at ±T/2 is the truncation level.
    let edge = (-(t / 2.0).powi(2) / (2.0 * sigma * sigma)).exp();
    assert!((edge - trunc).abs() < 1e-14);
    // Even n: normalised by its own maximum.
    let s = Shape::gaussian(t, 100, trunc).unwrap();
    assert_eq!(s.max_abs(), 1.0);
    // Bandwidth: FWHM of the untruncated Gaussian's profile; truncation at 1 % widens it a
    // little (measured 0.3 %).
    let s = Shape::gaussian(t, 1001, trunc).unwrap();
    let bw = s.bandwidth_hz().unwrap();
    assert!((bw - (2.0 * 2f64.ln()).sqrt() / (PI * sigma)).abs() < 1e-9);
    let fwhm = numeric_fwhm(&s, 3.0 * bw);
    assert!((fwhm / bw - 1.0).abs() < 0.01, "numeric {fwhm} vs {bw}");
    // With a low truncation (5e-5) the truncated profile is the Gaussian one.
    let s = Shape::gaussian(t, 1001, 5e-5).unwrap();
    let fwhm = numeric_fwhm(&s, 3.0 * s.bandwidth_hz().unwrap());
    assert!((fwhm / s.bandwidth_hz().unwrap() - 1.0).abs() < 1e-3);
}

#[test]
fn hyperbolic_secant_amplitude_phase_and_sweep() {
    let (t, n, mu, beta) = (10e-3, 1000usize, 5.0, 5.3);
    let s = Shape::hyperbolic_secant(t, n, mu, beta).unwrap();
    assert_eq!(s.kind, ShapeKind::HyperbolicSecant { mu, beta });
    assert!((s.max_abs() - 1.0).abs() < 1e-15);
    // Even n: the peak sample is at τ = ±1/n.
    let a_max = 1.0 / (beta / n as f64).cosh();
    for (k, (x, time)) in s.samples.iter().zip(s.times()).enumerate() {
        let tau = 2.0 * time / t;
        let amp = 1.0 / (beta * tau).cosh() / a_max;
        let phase = -mu * (beta * tau).cosh().ln();
        assert!((x.norm() - amp).abs() < 1e-13, "k={k}");
        let d = (*x - C64::from_polar(amp, phase)).norm();
        assert!(d < 1e-12, "k={k}: {x} vs amplitude {amp}, phase {phase}");
    }
    // Amplitude and phase are even in time (phase zero at the centre by construction).
    assert!(is_symmetric(&s, 1e-12));
    // Edge amplitude ≈ sech β ≈ 0.01.
    assert!((s.samples[0].norm() - 1.0 / beta.cosh()).abs() < 2e-4);

    // Instantaneous frequency from the phase increments: odd, sweeping from +μβ/(πT) down.
    let f: Vec<f64> = s
        .samples
        .windows(2)
        .map(|w| (w[1] / w[0]).arg() / (2.0 * PI * s.dt))
        .collect();
    let m = f.len();
    for k in 0..m {
        assert!((f[k] + f[m - 1 - k]).abs() < 1e-6 * f[0].abs(), "odd sweep");
    }
    assert!(
        f[0] > 0.0 && f[m - 1] < 0.0,
        "the sweep runs from high to low"
    );
    assert!(f.windows(2).all(|w| w[1] < w[0]), "monotonic sweep");
    let range = f[0] - f[m - 1];
    // Difference quotients sit at the boundaries between centres, τ = ±(1 − 2/n).
    let expected = 2.0 * mu * beta * (beta * (1.0 - 2.0 / n as f64)).tanh() / (PI * t);
    assert!(
        (range / expected - 1.0).abs() < 1e-4,
        "{range} vs {expected}"
    );
    let bw = s.adiabatic_bandwidth_hz().unwrap();
    assert!((bw - 2.0 * mu * beta / (PI * t)).abs() < 1e-9);
    assert_eq!(s.bandwidth_hz(), Some(bw));
    assert!((range / bw - 1.0).abs() < 0.01, "sweep {range} vs BW {bw}");
    // Other kinds have no adiabatic bandwidth; custom shapes no bandwidth at all.
    assert_eq!(
        Shape::hard(1e-3, 10).unwrap().adiabatic_bandwidth_hz(),
        None
    );
    let c = Shape::from_samples("c", 1e-5, vec![C64::new(1.0, 0.0); 4]).unwrap();
    assert_eq!(c.bandwidth_hz(), None);
    // μ = 0: a plain sech, real.
    let plain = Shape::hyperbolic_secant(t, 101, 0.0, beta).unwrap();
    assert!(plain.samples.iter().all(|x| x.im == 0.0));
}

#[test]
fn peak_for_flip_refuses_what_it_cannot_define() {
    let hs = Shape::hyperbolic_secant(10e-3, 100, 5.0, 5.3).unwrap();
    let e = hs.peak_for_flip(PI).unwrap_err();
    assert!(e.to_string().contains("adiabatic"), "{e}");
    // Antisymmetric: +1 for the first half, −1 for the second.
    let samples = (0..100)
        .map(|k| C64::new(if k < 50 { 1.0 } else { -1.0 }, 0.0))
        .collect();
    let anti = Shape::from_samples("anti", 1e-5, samples).unwrap();
    let e = anti.peak_for_flip(FRAC_PI_2).unwrap_err();
    assert_eq!(invalid_field(&e), "anti.integral");
    let hard = Shape::hard(1e-3, 10).unwrap();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = hard.peak_for_flip(bad).unwrap_err();
        assert_eq!(invalid_field(&e), "flip_rad");
    }
    // Linear in the flip, inverse in the duration.
    let p1 = hard.peak_for_flip(FRAC_PI_2).unwrap();
    assert!((hard.peak_for_flip(PI).unwrap() / p1 - 2.0).abs() < 1e-14);
    let long = Shape::hard(2e-3, 10).unwrap();
    assert!((long.peak_for_flip(FRAC_PI_2).unwrap() / p1 - 0.5).abs() < 1e-14);
}

#[test]
fn offset_phase_controls_and_blocks() {
    let s = Shape::sinc_hanning(4e-3, 401, 3).unwrap();
    let f = 250.0;
    let o = s.with_offset(f).unwrap();
    assert_eq!(o.kind, s.kind);
    assert_eq!(o.dt, s.dt);
    // Phase zero at the centre, |s| unchanged, phase ramp 2π·f·t_k.
    assert!((o.samples[200] - s.samples[200]).norm() < 1e-15);
    for ((a, b), t) in o.samples.iter().zip(&s.samples).zip(s.times()) {
        assert!((a.norm() - b.norm()).abs() < 1e-15);
        let expected = b * C64::from_polar(1.0, 2.0 * PI * f * t);
        assert!((a - expected).norm() < 1e-14);
    }
    // The shift moves the small-tip profile: |FT_o(f + x)| = |FT_s(x)|.
    for x in [0.0, 300.0, -500.0] {
        assert!((profile(&o, f + x) - profile(&s, x)).abs() < 1e-12 * profile(&s, 0.0));
    }
    let p = s.with_phase(FRAC_PI_2).unwrap();
    for (a, b) in p.samples.iter().zip(&s.samples) {
        assert!((a - b * C64::new(0.0, 1.0)).norm() < 1e-15);
    }
    assert_eq!(
        invalid_field(&s.with_offset(f64::NAN).unwrap_err()),
        "offset_hz"
    );
    assert_eq!(
        invalid_field(&s.with_phase(f64::INFINITY).unwrap_err()),
        "phase_rad"
    );

    // Controls: ux = peak·Re, uy = peak·Im; the block carries them with dt.
    let (ux, uy) = p.to_controls(100.0);
    assert_eq!(ux.len(), 401);
    for k in 0..401 {
        assert_eq!(ux[k], 100.0 * p.samples[k].re);
        assert_eq!(uy[k], 100.0 * p.samples[k].im);
    }
    match p.to_block(100.0) {
        Block::Pulse { dt, ux: bx, uy: by } => {
            assert_eq!(dt, p.dt);
            assert_eq!((bx, by), (ux.clone(), uy.clone()));
        }
        other => panic!("expected a pulse, got {other:?}"),
    }
    // from_controls inverts to_controls.
    let (back, peak) = Shape::from_controls("opt", p.dt, &ux, &uy).unwrap();
    assert!((peak - 100.0).abs() < 1e-12);
    for (a, b) in back.samples.iter().zip(&p.samples) {
        assert!((a - b).norm() < 1e-15);
    }
    assert_eq!(back.kind, ShapeKind::Custom);
}

#[test]
fn resampling() {
    let s = Shape::sinc_hanning(4e-3, 400, 3).unwrap();
    // Same raster: identical samples; same count on another raster: the samples are kept.
    assert_eq!(s.resampled(s.dt).unwrap(), s);
    let stretched = s.resampled(1.001e-5).unwrap();
    assert_eq!((stretched.len(), stretched.dt), (400, 1.001e-5));
    assert!(stretched.samples == s.samples);
    // A linear ramp (in normalised time) is reproduced exactly between the old centres and
    // held at the edges.
    let n = 10usize;
    let ramp: Vec<C64> = (0..n)
        .map(|k| {
            C64::new(
                (k as f64 + 0.5) / n as f64,
                -0.25 * (k as f64 + 0.5) / n as f64,
            )
        })
        .collect();
    let r = Shape::from_samples("ramp", 1e-5, ramp.clone()).unwrap();
    let fine = r.resampled(1e-5 / 4.0).unwrap();
    assert_eq!(fine.len(), 40);
    assert!((fine.duration() - r.duration()).abs() < 1e-18);
    for (j, x) in fine.samples.iter().enumerate() {
        let u = ((j as f64 + 0.5) / 40.0).clamp(0.5 / n as f64, 1.0 - 0.5 / n as f64);
        assert!((x - C64::new(u, -0.25 * u)).norm() < 1e-14, "j={j}: {x}");
    }
    // Off-grid raster: n' = round(T/dt), duration within dt/2, kind kept, |s| ≤ 1.
    let dt = 7.3e-6;
    let g = s.resampled(dt).unwrap();
    assert_eq!(g.len(), (s.duration() / dt).round() as usize);
    assert!((g.duration() - s.duration()).abs() <= dt / 2.0);
    assert_eq!(g.kind, s.kind);
    assert!(g.max_abs() <= 1.0);
    // The resampled sinc is the same function of normalised time (to interpolation error).
    let direct = Shape::sinc_hanning(g.duration(), g.len(), 3).unwrap();
    let worst = g
        .samples
        .iter()
        .zip(&direct.samples)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0, f64::max);
    assert!(worst < 2e-4, "interpolation error {worst}");
    // Coarsening to a raster longer than the pulse gives one sample.
    assert_eq!(s.resampled(1.0).unwrap().len(), 1);
    for bad in [0.0, -1e-6, f64::NAN] {
        assert_eq!(invalid_field(&s.resampled(bad).unwrap_err()), "dt");
    }
    assert_eq!(invalid_field(&s.resampled(1e-30).unwrap_err()), "dt");
}

// ---------------------------------------------------------------------------------------------
// Against the simulator
// ---------------------------------------------------------------------------------------------

#[test]
fn peak_for_flip_is_exact_on_resonance_for_amplitude_modulated_shapes() {
    let nominal = [Member::NOMINAL];
    // Hard 90° about x: Fz → −Fy; about y (with_phase π/2): Fz → +Fx.
    let hard = Shape::hard(0.5e-3, 50).unwrap();
    let p = hard.peak_for_flip(FRAC_PI_2).unwrap();
    let [mx, my, mz] = magnetisation(vec![hard.to_block(p)], &nominal)[0];
    assert!(mz.abs() < 1e-10 && (my + 1.0).abs() < 1e-10 && mx.abs() < 1e-10);
    let y = hard.with_phase(FRAC_PI_2).unwrap();
    let [mx, my, mz] = magnetisation(vec![y.to_block(p)], &nominal)[0];
    assert!(mz.abs() < 1e-10 && (mx - 1.0).abs() < 1e-10 && my.abs() < 1e-10);

    // Sinc–Hanning (with negative lobes) and Gaussian: all segments rotate about ±x, so the
    // linear definition is exact on resonance: cos(flip) to 1e-10.
    let shapes = [
        Shape::sinc_hanning(4e-3, 400, 3).unwrap(),
        Shape::sinc_hanning(2e-3, 255, 1).unwrap(),
        Shape::gaussian(2e-3, 256, 0.01).unwrap(),
    ];
    for s in &shapes {
        for flip in [FRAC_PI_2, PI, PI / 6.0] {
            let peak = s.peak_for_flip(flip).unwrap();
            let [_, my, mz] = magnetisation(vec![s.to_block(peak)], &nominal)[0];
            assert!(
                (mz - flip.cos()).abs() < 1e-10,
                "{}: flip {flip}: Mz {mz}",
                s.name
            );
            assert!(
                (my + flip.sin()).abs() < 1e-10,
                "{}: flip {flip}: My {my}",
                s.name
            );
        }
    }
}

#[test]
fn offset_sinc_selects_positive_frequencies() {
    // BW = 2L/T = 1500 Hz; shift the band to +1000 Hz.
    let s = Shape::sinc_hanning(4e-3, 400, 3).unwrap();
    let peak = s.peak_for_flip(FRAC_PI_2).unwrap();
    let shifted = s.with_offset(1000.0).unwrap();
    let members = [member(1.0, 1000.0), member(1.0, -1000.0), member(1.0, 0.0)];
    let m = magnetisation(vec![shifted.to_block(peak)], &members);
    // At the band centre the spin sees the original pulse on resonance, up to the sampling of
    // the phase ramp (2π·f·dt = 0.063 rad per segment): measured |Mz| ≈ 3e-4.
    assert!(m[0][2].abs() < 2e-3, "Mz at +1000 Hz: {}", m[0][2]);
    // The mirror offset is far outside the band and the carrier at the band's lower edge
    // region stays mostly untouched.
    assert!(m[1][2] > 0.99, "Mz at −1000 Hz: {}", m[1][2]);
    assert!(m[2][2] > 0.9, "Mz at 0 Hz: {}", m[2][2]);
}

#[test]
fn hyperbolic_secant_inverts_a_band_insensitive_to_b1() {
    let (t, mu, beta) = (10e-3, 5.0, 5.3);
    let s = Shape::hyperbolic_secant(t, 1000, mu, beta).unwrap();
    let bw = s.adiabatic_bandwidth_hz().unwrap(); // 1687 Hz
    // Adiabatic condition at the centre: (2π·peak)² ≫ μ·β_t², β_t = 2β/T.
    let peak = 1000.0;
    let mut members = Vec::new();
    let offsets = [-0.25, -0.125, 0.0, 0.1, 0.25].map(|x| x * bw);
    for &b1 in &[0.8, 0.9, 1.0, 1.1, 1.2] {
        for &off in &offsets {
            members.push(member(b1, off));
        }
    }
    let m = magnetisation(vec![s.to_block(peak)], &members);
    let mut worst = f64::NEG_INFINITY;
    for (mem, v) in members.iter().zip(&m) {
        assert!(
            v[2] < -0.99,
            "b1 {} offset {} Hz: Mz {}",
            mem.b1,
            mem.b0_hz,
            v[2]
        );
        worst = worst.max(v[2]);
    }
    // Far outside the sweep the spins are left alone.
    let out = magnetisation(
        vec![s.to_block(peak)],
        &[member(1.0, 2.0 * bw), member(1.2, -2.0 * bw)],
    );
    for v in &out {
        assert!(v[2] > 0.95, "outside the band: Mz {}", v[2]);
    }
    // A non-adiabatic scaling of the same pulse (peak/5) fails: the property is the peak.
    let weak = magnetisation(vec![s.to_block(peak / 5.0)], &[Member::NOMINAL]);
    assert!(weak[0][2] > -0.9, "weak HS Mz {}", weak[0][2]);
    eprintln!("HS worst Mz over band × B1 0.8–1.2: {worst}");
}

// ---------------------------------------------------------------------------------------------
// Bruker shape files
// ---------------------------------------------------------------------------------------------

/// A hand-written file in the interop.md §2a layout (CRLF line ends, a `$$` comment line).
const EXAMPLE: &str = "##TITLE= /opt/topspin/exp/stan/nmr/lists/wave/user/test4\r
##JCAMP-DX= 5.00 $$ Bruker JCAMP library\r
##DATA TYPE= Shape Data\r
##ORIGIN= Bruker BioSpin GmbH\r
##OWNER= <nmrsu>\r
##DATE= 2024/05/01\r
##TIME= 12:34:56\r
##$SHAPE_PARAMETERS= Type: hand-made\r
##MINX= 5.000000e+01\r
##MAXX= 1.000000e+02\r
##MINY= 0.000000e+00\r
##MAXY= 1.800000e+02\r
##$SHAPE_EXMODE= Excitation\r
##$SHAPE_TOTROT= 9.000000e+01\r
##$SHAPE_TYPE= conventional\r
##$SHAPE_BWFAC= 1.000000e+00\r
##$SHAPE_INTEGFAC= 3.750000e-01\r
##$SHAPE_REPHFAC= 5.000000e+01\r
##$SHAPE_MODE= 0\r
##NPOINTS= 4\r
##XYPOINTS= (XY..XY)\r
$$ amplitude %, phase deg\r
5.000000e+01, 0.000000e+00\r
1.000000e+02, 0.000000e+00\r
1.000000e+02, 1.800000e+02\r
50, 0\r
##END=\r
";

#[test]
fn bruker_reads_the_reference_layout() {
    let b = read_shape(EXAMPLE, "test4").unwrap();
    assert_eq!(b.title, "/opt/topspin/exp/stan/nmr/lists/wave/user/test4");
    let keys: Vec<&str> = b.header.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "TITLE",
            "JCAMP-DX",
            "DATA TYPE",
            "ORIGIN",
            "OWNER",
            "DATE",
            "TIME",
            "$SHAPE_PARAMETERS",
            "MINX",
            "MAXX",
            "MINY",
            "MAXY",
            "$SHAPE_EXMODE",
            "$SHAPE_TOTROT",
            "$SHAPE_TYPE",
            "$SHAPE_BWFAC",
            "$SHAPE_INTEGFAC",
            "$SHAPE_REPHFAC",
            "$SHAPE_MODE",
            "NPOINTS",
            "XYPOINTS"
        ]
    );
    assert_eq!(b.get("JCAMP-DX"), Some("5.00 $$ Bruker JCAMP library"));
    assert_eq!(b.get("datatype"), Some("Shape Data"));
    assert_eq!(b.get("##$SHAPE_EXMODE="), Some("Excitation"));
    assert_eq!(b.exmode(), Some("Excitation"));
    assert_eq!(b.totrot_deg().unwrap(), Some(90.0));
    assert_eq!(b.get_f64("$SHAPE_MODE").unwrap(), Some(0.0));
    assert_eq!(b.get_f64("$SHAPE_MISSING").unwrap(), None);
    assert!(b.get_f64("ORIGIN").is_err());
    assert_eq!(
        b.points,
        vec![(50.0, 0.0), (100.0, 0.0), (100.0, 180.0), (50.0, 0.0)]
    );
    // |50 + 100 − 100 + 50| / (4·100) = 0.25 ≠ the written 0.375: INTEGFAC is kept as written
    // and recomputed on demand.
    assert!((b.integration_factor() - 0.25).abs() < 1e-15);
    assert_eq!(b.get_f64("$SHAPE_INTEGFAC").unwrap(), Some(0.375));
    // Its Shape over 2 ms: 4 samples of 0.5 ms, amplitude/100, phase in degrees.
    let s = b.to_shape(2e-3).unwrap();
    assert_eq!(s.len(), 4);
    assert!((s.dt - 0.5e-3).abs() < 1e-18);
    assert!((s.samples[2] - C64::new(-1.0, 0.0)).norm() < 1e-15);
    assert!((s.samples[0] - C64::new(0.5, 0.0)).norm() < 1e-15);
    assert_eq!(s.name, b.title);
    assert_eq!(invalid_field(&b.to_shape(0.0).unwrap_err()), "duration");
    // LF files and `##END` without `=` are read alike.
    let lf = EXAMPLE.replace("\r\n", "\n").replace("##END=", "##END");
    assert_eq!(read_shape(&lf, "lf").unwrap(), b);
}

/// `EXAMPLE` (LF) with one substitution applied.
fn variant(from: &str, to: &str) -> String {
    let text = EXAMPLE.replace("\r\n", "\n");
    assert!(text.contains(from), "{from:?}");
    text.replacen(from, to, 1)
}

/// The line number (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn bruker_bad_inputs_name_file_and_line() {
    // Wrong NPOINTS: both numbers and the file.
    let text = variant("##NPOINTS= 4", "##NPOINTS= 5");
    match read_shape(&text, "bad_np.shp").unwrap_err() {
        PhysicsError::SizeMismatch {
            what,
            expected,
            got,
        } => {
            assert_eq!((expected, got), (5, 4));
            assert!(
                what.contains("bad_np.shp") && what.contains("line 20"),
                "{what}"
            );
        }
        e => panic!("{e:?}"),
    }

    // Parse errors: (text, needle expected in the message).
    let lf = EXAMPLE.replace("\r\n", "\n");
    let truncated = lf.replace("##END=\n", "");
    let cut_mid = lf.lines().take(23).collect::<Vec<_>>().join("\n");
    let garbage = variant("1.000000e+02, 1.800000e+02", "1.000000e+02, abc");
    let garbage_amp = variant("1.000000e+02, 1.800000e+02", "x1.0, 180");
    let one_field = variant("1.000000e+02, 1.800000e+02", "1.000000e+02");
    let three = variant("1.000000e+02, 1.800000e+02", "1.0e+02, 180, 3");
    let header_garbage = variant("##ORIGIN=", "ORIGIN no hashes\n##ORIGIN=");
    let first_not_title = variant("##TITLE= /opt", "##OWNER= x\n##TITLE= /opt");
    let duplicate = variant("##MINX=", "##MIN_X= 1\n##MINX=");
    let label_in_data = variant("50, 0\n", "50, 0\n##$SHAPE_MODE= 1\n");
    let no_eq = variant("##DATE= 2024/05/01", "##DATE 2024/05/01");
    let wrong_type = variant("Shape Data", "Parameter Values");
    let gradient = variant("##$SHAPE_EXMODE= Excitation", "##$SHAPE_EXMODE= Gradient");
    let xydata = variant("##XYPOINTS= (XY..XY)", "##XYDATA= (X++(Y..Y))");
    let wrong_xy = variant("##XYPOINTS= (XY..XY)", "##XYPOINTS= (XYZ..XYZ)");
    let np_text = variant("##NPOINTS= 4", "##NPOINTS= four");
    let no_np = variant("##NPOINTS= 4\n", "");
    let no_table = lf
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()) && !l.contains("XYPOINTS"))
        .collect::<Vec<_>>()
        .join("\n");
    let cases: Vec<(String, String, Vec<String>)> = vec![
        (truncated, "no ##END=".into(), vec![]),
        (cut_mid, "no ##END=".into(), vec!["line 23".into()]),
        (
            garbage.clone(),
            "phase \"abc\" is not a number".into(),
            vec![format!("line {}", line_of(&garbage, "abc"))],
        ),
        (
            garbage_amp.clone(),
            "amplitude \"x1.0\" is not a number".into(),
            vec![format!("line {}", line_of(&garbage_amp, "x1.0"))],
        ),
        (
            one_field,
            "expected `amplitude, phase`".into(),
            vec!["line 25".into()],
        ),
        (
            three,
            "expected `amplitude, phase`".into(),
            vec!["line 25".into()],
        ),
        (
            header_garbage,
            "before ##XYPOINTS=".into(),
            vec!["line 4".into()],
        ),
        (
            first_not_title,
            "first label must be ##TITLE=".into(),
            vec!["line 1".into()],
        ),
        (
            duplicate,
            "duplicate label ##MINX=".into(),
            vec!["first on line 9".into()],
        ),
        (
            label_in_data,
            "inside the data table".into(),
            vec!["line 27".into()],
        ),
        (
            no_eq,
            "expected `##LABEL= value`".into(),
            vec!["line 6".into()],
        ),
        (wrong_type, "not a shape file".into(), vec!["line 3".into()]),
        (gradient, "Gradient".into(), vec!["line 13".into()]),
        (xydata, "gradient shape".into(), vec!["line 21".into()]),
        (wrong_xy, "expected (XY..XY)".into(), vec!["line 21".into()]),
        (
            np_text,
            "##NPOINTS= \"four\"".into(),
            vec!["line 20".into()],
        ),
        (no_np, "missing ##NPOINTS=".into(), vec![]),
        (no_table, "before any ##XYPOINTS=".into(), vec![]),
        (String::new(), "the file is empty".into(), vec![]),
        (
            "\n\n".to_string(),
            "no ##END=".into(),
            vec!["line 2".into()],
        ),
    ];
    for (text, needle, more) in cases {
        let e = read_shape(&text, "bad.shp").unwrap_err();
        let PhysicsError::Parse(msg) = &e else {
            panic!("expected Parse for {needle:?}, got {e:?}");
        };
        assert!(msg.contains("bad.shp"), "{msg}");
        assert!(msg.contains(&needle), "{needle:?} not in {msg}");
        for m in more {
            assert!(msg.contains(&m), "{m:?} not in {msg}");
        }
    }

    // Out-of-domain values: InvalidParameter whose field names the file, line and column.
    let data_line = 25; // "1.000000e+02, 1.800000e+02"
    let value_cases = [
        ("1.200000e+02, 1.800000e+02", "amplitude", "120"),
        ("-1.0e+00, 1.800000e+02", "amplitude", "-1"),
        ("NaN, 1.800000e+02", "amplitude", "NaN"),
        ("inf, 1.800000e+02", "amplitude", "inf"),
        ("1.000000e+02, nan", "phase", "NaN"),
        ("1.000000e+02, -inf", "phase", "-inf"),
    ];
    for (line, what, value) in value_cases {
        let text = variant("1.000000e+02, 1.800000e+02", line);
        let e = read_shape(&text, "bad.shp").unwrap_err();
        match &e {
            PhysicsError::InvalidParameter {
                field, value: v, ..
            } => {
                assert_eq!(field, &format!("bad.shp line {data_line} {what}"), "{e}");
                assert_eq!(v, value);
            }
            _ => panic!("{line}: {e:?}"),
        }
    }
    // Header extrema inconsistent with the data (beyond the printed precision).
    for (from, to, label, line) in [
        ("##MAXX= 1.000000e+02", "##MAXX= 9.900000e+01", "MAXX", 10),
        ("##MINX= 5.000000e+01", "##MINX= 5.100000e+01", "MINX", 9),
        ("##MAXY= 1.800000e+02", "##MAXY= 3.600000e+02", "MAXY", 12),
        ("##MINY= 0.000000e+00", "##MINY= -2", "MINY", 11),
        ("##MAXY= 1.800000e+02", "##MAXY= one-eighty", "MAXY", 12),
    ] {
        let e = read_shape(&variant(from, to), "bad.shp").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("bad.shp") && s.contains(&format!("line {line}")),
            "{s}"
        );
        assert!(s.contains(label), "{s}");
    }
    // ... but within it they pass: "1.8e+02" is 180 ± 5, and data "50" is 50 ± 0.5.
    assert!(read_shape(&variant("##MAXY= 1.800000e+02", "##MAXY= 1.8e+02"), "ok").is_ok());
    assert!(read_shape(&variant("##MINX= 5.000000e+01", "##MINX= 5.04e+01"), "ok").is_ok());
    assert!(read_shape(&variant("##MINX= 5.000000e+01", "##MINX= 5.06e+01"), "x").is_err());
    // Zero points.
    let empty = lf
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("##NPOINTS= 4", "##NPOINTS= 0")
        .replace("##MINX= 5.000000e+01\n##MAXX= 1.000000e+02\n", "")
        .replace("##MINY= 0.000000e+00\n##MAXY= 1.800000e+02\n", "");
    let e = read_shape(&empty, "empty.shp").unwrap_err();
    assert_eq!(invalid_field(&e), "empty.shp line 16 ##NPOINTS");
    // Files.
    let e = read_shape_file("/nonexistent/dir/shape").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dir/shape"), "{e}");
}

#[test]
fn bruker_from_shape_write_read_round_trip() {
    let s = Shape::sinc_hanning(4e-3, 400, 3).unwrap();
    let b = BrukerShape::from_shape(&s, "spinloop_sinc3", ExMode::Excitation, 90.0).unwrap();
    let text = write_shape(&b);
    // Layout: header in interop.md order, `amp, phase` lines, LF, ##END= last.
    assert!(!text.contains('\r'));
    assert!(text.ends_with("##END=\n"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "##TITLE= spinloop_sinc3");
    assert_eq!(lines[1], "##JCAMP-DX= 5.00 Bruker JCAMP library");
    assert_eq!(lines[2], "##DATA TYPE= Shape Data");
    assert!(lines.contains(&"##$SHAPE_EXMODE= Excitation"));
    assert!(lines.contains(&"##$SHAPE_TOTROT= 9.000000000e+01"));
    assert!(lines.contains(&"##$SHAPE_MODE= 0"));
    assert!(lines.contains(&"##NPOINTS= 400"));
    let xy = lines
        .iter()
        .position(|l| *l == "##XYPOINTS= (XY..XY)")
        .unwrap();
    assert_eq!(lines.len(), xy + 1 + 400 + 1);
    let order: Vec<&str> = lines[..xy]
        .iter()
        .map(|l| l.trim_start_matches("##").split('=').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "TITLE",
            "JCAMP-DX",
            "DATA TYPE",
            "ORIGIN",
            "OWNER",
            "MINX",
            "MAXX",
            "MINY",
            "MAXY",
            "$SHAPE_EXMODE",
            "$SHAPE_TOTROT",
            "$SHAPE_BWFAC",
            "$SHAPE_INTEGFAC",
            "$SHAPE_MODE",
            "NPOINTS"
        ]
    );
    // Negative sinc lobes become phase 180°, amplitudes non-negative, phases in [0, 360).
    assert!(
        lines[xy + 1..xy + 401]
            .iter()
            .any(|l| l.ends_with(", 1.800000000e+02"))
    );
    assert_eq!(b.get_f64("MAXX").unwrap(), Some(100.0));
    assert_eq!(b.get_f64("MINY").unwrap(), Some(0.0));
    assert_eq!(b.get_f64("MAXY").unwrap(), Some(180.0));
    // BWFAC = BW·T = 2L; INTEGFAC = |Σ s|/N = |∫s dt|/T (max |s| = 1).
    assert!((b.get_f64("$SHAPE_BWFAC").unwrap().unwrap() - 6.0).abs() < 1e-9);
    let integfac = b.get_f64("$SHAPE_INTEGFAC").unwrap().unwrap();
    assert!((integfac - s.integral().norm() / s.duration()).abs() < 1e-9);
    assert!((b.integration_factor() - integfac).abs() < 1e-9);

    // write → read: the same points to the printed precision, the same header.
    let r = read_shape(&text, "rt").unwrap();
    assert_eq!(r.header, b.header);
    assert_eq!(r.title, b.title);
    assert_eq!(r.points.len(), 400);
    for (p, q) in r.points.iter().zip(&b.points) {
        assert!((p.0 - q.0).abs() <= 5.1e-10 * q.0, "{p:?} {q:?}");
        assert!(
            (p.1 - q.1).abs() <= 5.1e-10 * q.1.abs().max(1.0),
            "{p:?} {q:?}"
        );
    }
    // Writing what was read gives the same text (stable).
    assert_eq!(write_shape(&r), text);
    // Shape → file → Shape reproduces the samples.
    let back = r.to_shape(s.duration()).unwrap();
    assert_eq!(back.len(), s.len());
    assert!((back.dt - s.dt).abs() < 1e-18);
    let worst = back
        .samples
        .iter()
        .zip(&s.samples)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0, f64::max);
    assert!(worst < 1e-8, "round trip error {worst}");
    // The recovered shape calibrates the same.
    let (p0, p1) = (
        s.peak_for_flip(FRAC_PI_2).unwrap(),
        back.peak_for_flip(FRAC_PI_2).unwrap(),
    );
    assert!((p1 / p0 - 1.0).abs() < 1e-8);

    // Through a file on disk.
    let dir = std::env::temp_dir().join(format!("spinloop_shapes_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sinc3");
    std::fs::write(&path, &text).unwrap();
    let f = read_shape_file(&path).unwrap();
    assert_eq!(f, r);
    std::fs::write(&path, text.replace("##END=\n", "")).unwrap();
    let e = read_shape_file(&path).unwrap_err();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bruker_phase_modulated_and_hard_shapes() {
    // Hard pulse: INTEGFAC 1; BWFAC the rectangle's FWHM·T.
    let h = BrukerShape::from_shape(
        &Shape::hard(1e-3, 16).unwrap(),
        "rect",
        ExMode::Universal,
        90.0,
    )
    .unwrap();
    assert!((h.get_f64("$SHAPE_INTEGFAC").unwrap().unwrap() - 1.0).abs() < 1e-12);
    assert!((h.get_f64("$SHAPE_BWFAC").unwrap().unwrap() - 1.2067091288).abs() < 1e-9);
    assert!(h.points.iter().all(|&p| p == (100.0, 0.0)));

    // HS: phases wrapped to [0, 360), the complex shape survives the round trip, INTEGFAC is
    // the coherent mean.
    let hs = Shape::hyperbolic_secant(10e-3, 500, 5.0, 5.3).unwrap();
    let b = BrukerShape::from_shape(&hs, "hs", ExMode::Inversion, 180.0).unwrap();
    assert!(
        b.points
            .iter()
            .all(|&(a, p)| (0.0..=100.0).contains(&a) && (0.0..360.0).contains(&p))
    );
    assert!((b.integration_factor() - hs.integral().norm() / hs.duration()).abs() < 1e-12);
    let back = read_shape(&write_shape(&b), "hs")
        .unwrap()
        .to_shape(10e-3)
        .unwrap();
    let worst = back
        .samples
        .iter()
        .zip(&hs.samples)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0, f64::max);
    assert!(worst < 1e-8, "{worst}");
    assert_eq!(b.get("$SHAPE_EXMODE"), Some("Inversion"));
    assert_eq!(b.totrot_deg().unwrap(), Some(180.0));

    // Custom shape with negative phases and a maximum below 100 %: kept, not renormalised.
    let samples = vec![
        C64::from_polar(0.5, -FRAC_PI_2),
        C64::from_polar(0.25, -PI / 4.0),
    ];
    let c = Shape::from_samples("c", 1e-5, samples.clone()).unwrap();
    let b = BrukerShape::from_shape(&c, "c", ExMode::None, 0.0).unwrap();
    assert!((b.points[0].0 - 50.0).abs() < 1e-12 && (b.points[0].1 - 270.0).abs() < 1e-12);
    assert!((b.points[1].1 - 315.0).abs() < 1e-12);
    assert_eq!(b.get_f64("$SHAPE_BWFAC").unwrap(), Some(0.0));
    let back = read_shape(&write_shape(&b), "c")
        .unwrap()
        .to_shape(2e-5)
        .unwrap();
    for (a, s) in back.samples.iter().zip(&samples) {
        assert!((a - s).norm() < 1e-9);
    }
    // Points given with phases outside [0, 360) are written wrapped.
    let mut w = b.clone();
    w.points = vec![(100.0, -90.0), (100.0, 720.0)];
    let r = read_shape(&write_shape(&w), "w").unwrap();
    assert_eq!(r.points, vec![(100.0, 270.0), (100.0, 0.0)]);

    // from_shape validation.
    let e = BrukerShape::from_shape(&c, "two\nlines", ExMode::None, 0.0).unwrap_err();
    assert_eq!(invalid_field(&e), "title");
    let e = BrukerShape::from_shape(&c, "c", ExMode::None, f64::NAN).unwrap_err();
    assert_eq!(invalid_field(&e), "totrot_deg");
    let mut big = c.clone();
    big.samples[1] = C64::new(2.0, 0.0);
    let e = BrukerShape::from_shape(&big, "c", ExMode::None, 0.0).unwrap_err();
    assert_eq!(invalid_field(&e), "c.samples[1]");
    // to_shape validates hand-built points.
    let mut bad = b.clone();
    bad.points[0].0 = 101.0;
    assert_eq!(
        invalid_field(&bad.to_shape(1e-3).unwrap_err()),
        "c.points[0].amplitude"
    );
    bad.points.clear();
    assert!(bad.to_shape(1e-3).is_err());
}

#[test]
fn bruker_set_header_keeps_canonical_order() {
    let s = Shape::gaussian(1e-3, 32, 0.01).unwrap();
    let mut b = BrukerShape::from_shape(&s, "g", ExMode::Excitation, 90.0).unwrap();
    b.set_header("TIME", "12:00:00");
    b.set_header("##DATE=", "2026/01/02");
    b.set_header("$SHAPE_REPHFAC", "5.000000e+01");
    b.set_header("$MY_NOTE", "optimised by spinloop");
    b.set_header("$SHAPE_TOTROT", "1.800000e+02");
    let keys: Vec<&str> = b.header.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "TITLE",
            "JCAMP-DX",
            "DATA TYPE",
            "ORIGIN",
            "OWNER",
            "DATE",
            "TIME",
            "MINX",
            "MAXX",
            "MINY",
            "MAXY",
            "$SHAPE_EXMODE",
            "$SHAPE_TOTROT",
            "$SHAPE_BWFAC",
            "$SHAPE_INTEGFAC",
            "$SHAPE_REPHFAC",
            "$SHAPE_MODE",
            "$MY_NOTE",
            "NPOINTS",
            "XYPOINTS"
        ]
    );
    assert_eq!(b.totrot_deg().unwrap(), Some(180.0));
    b.set_header("TITLE", "renamed");
    assert_eq!(b.title, "renamed");
    let r = read_shape(&write_shape(&b), "set").unwrap();
    assert_eq!(r.header, b.header);
    assert_eq!(r.get("DATE"), Some("2026/01/02"));
    // Stale derived values are refreshed on write.
    let mut stale = r.clone();
    stale.points.truncate(10);
    stale.set_header("NPOINTS", "999");
    let again = read_shape(&write_shape(&stale), "stale").unwrap();
    assert_eq!(again.points.len(), 10);
    assert_eq!(again.get("NPOINTS"), Some("10"));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Arbitrary text, and the example cut anywhere or with one line replaced by arbitrary
    /// text, never panics: it parses or gives an error naming the source.
    #[test]
    fn bruker_reader_never_panics(
        junk in "\\PC{0,200}",
        cut in 0usize..2000,
        line in 0usize..30,
    ) {
        let check = |text: &str| match read_shape(text, "fuzz.shp") {
            Ok(b) => assert!(!b.points.is_empty()),
            Err(e) => assert!(e.to_string().contains("fuzz.shp"), "{e}"),
        };
        check(&junk);
        let lf = EXAMPLE.replace("\r\n", "\n");
        let cut_at = lf.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(lf.len());
        check(&lf[..cut_at]);
        let replaced: Vec<&str> = lf
            .lines()
            .enumerate()
            .map(|(i, l)| if i == line { junk.as_str() } else { l })
            .collect();
        check(&replaced.join("\n"));
    }
}
