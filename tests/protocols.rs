//! Vendor-like protocols: the Cayley–Klein profile of a pulse against the closed-form
//! off-resonance rotation of a hard pulse; the slice calibration (large-tip FWHM); the
//! per-voxel normalisation of grid-simulated basis sets against an independent 1-D profile
//! integral; timing errors that name the interval.

use std::f64::consts::{FRAC_PI_2, PI};

use spinloop::physics::{Field, Fragment, Molecule, PhysicsError, SingletGroup};
use spinloop::sequence::builders::acquisition;
use spinloop::sequence::protocols::{Protocol, PulseStyle, SequenceKind, VendorPulses};
use spinloop::sequence::shapes::Shape;
use spinloop::spectrum::basis::protocol_basis;

/// |Mxy| and spin-echo weight |β|² of a hard pulse of amplitude ν1 (Hz), duration τ, at offset
/// Δ: rotation by α = 2π·νeff·τ about (ν1, 0, Δ)/νeff (validation case 1).
fn hard_closed_form(nu1: f64, tau: f64, delta: f64) -> (f64, f64) {
    let nueff = (nu1 * nu1 + delta * delta).sqrt();
    let alpha = 2.0 * PI * nueff * tau;
    let s2 = (nu1 / nueff).powi(2) * (alpha / 2.0).sin().powi(2);
    let mz = 1.0 - 2.0 * s2;
    ((1.0 - mz * mz).max(0.0).sqrt(), s2)
}

#[test]
fn cayley_klein_matches_the_closed_form_hard_pulse() {
    let shape = Shape::hard(1e-3, 50).unwrap();
    for flip in [FRAC_PI_2, PI] {
        let peak = shape.peak_for_flip(flip).unwrap();
        for delta in [0.0, 50.0, 333.3, -720.0, 2500.0] {
            let (a, b) = shape.cayley_klein(peak, delta);
            let (mxy, echo) = hard_closed_form(peak, 1e-3, delta);
            assert!((a.norm_sqr() + b.norm_sqr() - 1.0).abs() < 1e-13);
            assert!(
                ((a.conj() * b).norm() * 2.0 - mxy).abs() < 1e-12,
                "Mxy at {delta}"
            );
            assert!((b.norm_sqr() - echo).abs() < 1e-12, "|b|^2 at {delta}");
        }
    }
}

/// Half-maximum crossing of f(Δ) for Δ ≥ 0 by bisection (f decreasing from f(0) there).
fn half_point(f: impl Fn(f64) -> f64, hi: f64) -> f64 {
    let half = f(0.0) / 2.0;
    let (mut lo, mut hi) = (0.0, hi);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > half { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

#[test]
fn profile_fwhm_of_a_hard_pulse_matches_bisection_on_the_closed_form() {
    let tau = 1e-3;
    let shape = Shape::hard(tau, 50).unwrap();
    for (flip, refocusing) in [(FRAC_PI_2, false), (PI, true)] {
        let peak = flip / (2.0 * PI * tau);
        let exact = 2.0
            * half_point(
                |d| {
                    let (mxy, echo) = hard_closed_form(peak, tau, d);
                    if refocusing { echo } else { mxy }
                },
                // inside the main lobe: the first zeros are at νeff = 1/τ (Δ = 968 Hz for
                // the 90°, 866 Hz for the 180°)
                0.85 / tau,
            );
        let got = shape.profile_fwhm_hz(flip, refocusing).unwrap();
        // The scan step is 20/T/2000 = 10 Hz with linear interpolation between samples.
        println!("hard {flip:.3} rad: FWHM {got:.3} Hz, closed form {exact:.3} Hz");
        assert!((got - exact).abs() < 0.5, "{got} vs {exact}");
    }
}

/// A single-singlet molecule of 3 protons at `ppm`.
fn singlet(ppm: f64) -> Molecule {
    Molecule {
        name: "S".into(),
        description: String::new(),
        fragments: Vec::<Fragment>::new(),
        singlets: vec![SingletGroup {
            label: "CH3".into(),
            shift_ppm: ppm,
            protons: 3,
            nucleus: Default::default(),
        }],
    }
}

#[test]
fn vendor_press_singlet_per_voxel_equals_the_product_of_refocusing_profile_integrals() {
    // On resonance: the shaped 90° excites exactly (real AM shape), each refocusing pulse weights
    // the spin-echo pathway by |β(x)|² (the grid offset is x·FWHM), and the basis is the grid
    // sum times the cell area over the voxel area. Independent expectation: 3 protons times
    // the midpoint-rule integral of |β|² over the same grid coordinates, squared (two axes).
    let n = 15;
    let hw = 1.2;
    let protocol = Protocol::press_te30(PulseStyle::Vendor).with_grid(n, hw);
    let (_, basis) = protocol_basis(
        vec![singlet(3.0)],
        Field::THREE_T,
        3.0,
        &protocol,
        acquisition(8, 2.5e-4, 0.0).unwrap(),
    )
    .unwrap();
    let got = basis.fids[0][0];
    let refoc = VendorPulses::clinical_3t().unwrap().refocusing;
    let peak = refoc.peak_for_flip(PI).unwrap();
    let fwhm = refoc.profile_fwhm_hz(PI, true).unwrap();
    let cell = 2.0 * hw / n as f64;
    let line: f64 = (0..n)
        .map(|i| {
            let x = -hw + (i as f64 + 0.5) * cell;
            refoc.cayley_klein(peak, x * fwhm).1.norm_sqr() * cell
        })
        .sum();
    let expected = 3.0 * line * line;
    println!("vendor PRESS singlet per voxel {got:.12}, expected {expected:.12} (ideal 3)");
    assert!(
        (got.re - expected).abs() < 1e-9 * expected,
        "{got} vs {expected}"
    );
    assert!(got.im.abs() < 1e-9 * expected, "{got}");
}

#[test]
fn vendor_steam_keeps_half_of_press_per_voxel() {
    // The stimulated echo keeps half the magnetization; with slice-selective 90°s calibrated to
    // their FWHM and their gradients rephased, STEAM per voxel is about half of PRESS.
    let acq = acquisition(8, 2.5e-4, 0.0).unwrap();
    let get = |p: Protocol| {
        protocol_basis(
            vec![singlet(3.0)],
            Field::THREE_T,
            3.0,
            &p.with_grid(15, 1.2),
            acq,
        )
        .unwrap()
        .1
        .fids[0][0]
    };
    let press = get(Protocol::press_te30(PulseStyle::Vendor));
    let steam = get(Protocol::steam_te10(PulseStyle::Vendor));
    let ratio = steam.norm() / press.norm();
    println!("STEAM/PRESS per voxel {ratio:.4}");
    assert!((0.4..0.6).contains(&ratio), "{ratio}");
    // Without the rephasing lobes the slice-selective 90°s leave a phase ramp across the
    // slice and the signal would cancel to a few per cent; the lobes bring it back.
    assert!(steam.re > 0.9 * steam.norm(), "{steam}");
}

#[test]
fn timings_that_do_not_fit_the_vendor_pulses_name_the_interval() {
    let acq = acquisition(8, 2.5e-4, 0.0).unwrap();
    let too_short = Protocol::new(
        SequenceKind::Press {
            te1: 0.005,
            te2: 0.010,
        },
        PulseStyle::Vendor,
    );
    let e = too_short.compile(Field::THREE_T, 3.0, acq).unwrap_err();
    match e {
        PhysicsError::InvalidParameter { field, .. } => assert!(field.contains("TE1"), "{field}"),
        other => panic!("{other}"),
    }
    // The same timing is fine with ideal pulses.
    let ideal = Protocol::new(too_short.kind, PulseStyle::Ideal);
    assert!(ideal.compile(Field::THREE_T, 3.0, acq).is_ok());
    let steam = Protocol::new(
        SequenceKind::Steam {
            te: 0.004,
            tm: 0.01,
        },
        PulseStyle::Vendor,
    );
    assert!(steam.compile(Field::THREE_T, 3.0, acq).is_err());
    let zero_grid = Protocol::press_te30(PulseStyle::Vendor).with_grid(0, 1.2);
    assert!(zero_grid.compile(Field::THREE_T, 3.0, acq).is_err());
    let negative = Protocol::new(SequenceKind::SpinEcho { te: -0.01 }, PulseStyle::Ideal);
    assert!(negative.compile(Field::THREE_T, 3.0, acq).is_err());
}
