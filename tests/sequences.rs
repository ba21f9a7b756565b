//! Sequence builders with ideal pulses: echo amplitudes and phases of singlets, crusher
//! (coherence-filter) pathway amplitudes under B1 errors against their closed forms, J
//! modulation of lactate (validation case 4, ideal pulses) and citrate in PRESS (case 5), and
//! timing errors.

use num_complex::Complex64 as C64;
use spinloop::physics::{
    Field, Member, Molecule, Nucleus, SimOptions, Simulator, SingletGroup, library,
};
use spinloop::sequence::builders::{
    PulseSpec, acquisition, press, pulse_acquire, spin_echo, steam,
};

fn singlet(ppm: f64) -> Molecule {
    Molecule {
        name: "S".into(),
        description: String::new(),
        fragments: vec![],
        singlets: vec![SingletGroup {
            label: "s".into(),
            shift_ppm: ppm,
            protons: 1,
            nucleus: Nucleus::H1,
        }],
    }
}

fn first_point(mol: Molecule, member: Member, exp: &spinloop::physics::Experiment) -> C64 {
    let mut sim = Simulator::new(
        vec![mol],
        Field::THREE_T,
        3.0,
        vec![member],
        SimOptions::default(),
    )
    .unwrap();
    sim.simulate(exp).unwrap().fid(0, 0)[0]
}

fn acq() -> spinloop::physics::Acquisition {
    acquisition(64, 5e-4, 0.0).unwrap()
}

#[test]
fn echoes_of_a_singlet_refocus_to_a_positive_absorption_line() {
    let ex = PulseSpec::ideal_excitation();
    let rf = PulseSpec::ideal_refocusing();
    for ppm in [3.0, 2.1, 3.9] {
        let fid = first_point(
            singlet(ppm),
            Member::NOMINAL,
            &pulse_acquire(&ex, acq()).experiment,
        );
        assert!(
            (fid - C64::new(1.0, 0.0)).norm() < 1e-12,
            "pulse-acquire {fid}"
        );
        for te in [0.01, 0.03, 0.144] {
            let se = spin_echo(te, &ex, &rf, acq()).unwrap();
            let fid = first_point(singlet(ppm), Member::NOMINAL, &se.experiment);
            assert!((fid - C64::new(1.0, 0.0)).norm() < 1e-12, "spin echo {fid}");
            let pr = press(te * 0.4, te * 0.6, &ex, &rf, &rf, acq()).unwrap();
            let fid = first_point(singlet(ppm), Member::NOMINAL, &pr.experiment);
            assert!((fid - C64::new(1.0, 0.0)).norm() < 1e-12, "PRESS {fid}");
            let st = steam(
                te,
                0.02,
                [&ex, &PulseSpec::ideal_90x(), &PulseSpec::ideal_90x()],
                acq(),
            )
            .unwrap();
            let fid = first_point(singlet(ppm), Member::NOMINAL, &st.experiment);
            assert!(
                (fid.norm() - 0.5).abs() < 1e-12,
                "STEAM stimulated echo is half: {fid}"
            );
        }
    }
}

/// With ideal crushers, each pulse of flip β contributes its pathway coefficient: excitation
/// sin β, refocusing (p → −p) sin²(β/2), STEAM (±1 → 0 → −1) sin β / 2 each — so a B1 scale b
/// gives the closed forms below exactly.
#[test]
fn crusher_pathway_amplitudes_under_b1_errors() {
    let ex = PulseSpec::ideal_excitation();
    let rf = PulseSpec::ideal_refocusing();
    let x90 = PulseSpec::ideal_90x();
    for b in [0.7, 0.9, 1.1, 1.25] {
        let member = Member { b1: b, b0_hz: 2.0 };
        let a = b * std::f64::consts::FRAC_PI_2;
        let r = (b * std::f64::consts::PI / 2.0).sin().powi(2);
        let pr = press(0.012, 0.018, &ex, &rf, &rf, acq()).unwrap();
        let got = first_point(singlet(2.4), member, &pr.experiment).norm();
        let want = a.sin() * r * r;
        assert!((got - want).abs() < 1e-12, "PRESS b1 {b}: {got} vs {want}");
        let se = spin_echo(0.02, &ex, &rf, acq()).unwrap();
        let got = first_point(singlet(2.4), member, &se.experiment).norm();
        assert!((got - a.sin() * r).abs() < 1e-12, "spin echo b1 {b}");
        let st = steam(0.01, 0.03, [&ex, &x90, &x90], acq()).unwrap();
        let got = first_point(singlet(2.4), member, &st.experiment).norm();
        assert!((got - a.sin().powi(3) / 2.0).abs() < 1e-12, "STEAM b1 {b}");
    }
}

/// Validation case 4 (ideal pulses): the lactate CH3 in-phase integral follows cos(πJ·TE) —
/// inverted at 1/J, upright at 2/J, zero at 1/(2J) — and PRESS depends only on the total TE.
/// The in-phase integral is Σ Re(amplitude) of the CH3 lines. Those statements are exact in the
/// weak-coupling limit; lactate at 3 T has J/Δν = 0.020, and the strong-coupling correction to
/// a multiplet's intensity is first order in J/Δν (the roof effect): bounded here by
/// 3 protons × 1.5·J/Δν — and the same bound holds at 10, 100 and 1000 times the field, where
/// it is 10, 100 and 1000 times smaller: the residual is the strong-coupling correction.
#[test]
fn lactate_j_modulation_follows_cos_pi_j_te() {
    let j = 6.933;
    let ex = PulseSpec::ideal_excitation();
    let rf = PulseSpec::ideal_refocusing();
    let ch3 = |f0: f64, exp: &spinloop::physics::Experiment| -> f64 {
        let mut sim = Simulator::new(
            vec![library::lactate()],
            Field::from_mhz(f0).unwrap(),
            3.0,
            vec![Member::NOMINAL],
            SimOptions::default(),
        )
        .unwrap();
        sim.simulate(exp).unwrap();
        sim.lines(0, 0)
            .unwrap()
            .iter()
            .filter(|l| (3.0 + l.freq_hz / f0 - 1.3142).abs() < 0.1)
            .map(|l| l.amplitude.re)
            .sum()
    };
    let f0 = 123.2;
    let ratio = j / ((4.0974 - 1.3142) * f0);
    let bound = 3.0 * 1.5 * ratio;
    for te in [0.02, 1.0 / (2.0 * j), 1.0 / j, 2.0 / j, 0.03, 0.08] {
        let want = 3.0 * (std::f64::consts::PI * j * te).cos();
        let sym = press(te / 2.0, te / 2.0, &ex, &rf, &rf, acq()).unwrap();
        let got = ch3(f0, &sym.experiment);
        assert!(
            (got - want).abs() < bound,
            "TE {te}: {got} vs {want} (bound {bound})"
        );
        let asym = press(te * 0.2, te * 0.8, &ex, &rf, &rf, acq()).unwrap();
        let got2 = ch3(f0, &asym.experiment);
        assert!(
            (got2 - want).abs() < bound,
            "TE {te}: split gives {got2} vs {want}"
        );
        let se = spin_echo(te, &ex, &rf, acq()).unwrap();
        let got3 = ch3(f0, &se.experiment);
        assert!(
            (got3 - want).abs() < bound,
            "spin echo TE {te}: {got3} vs {want}"
        );
        // At 10, 100 and 1000 times the field the residual stays inside the same first-order
        // bound, which shrinks as 1/B0: the simulation converges to the weak-coupling result.
        for factor in [10.0, 100.0, 1000.0] {
            let r = (ch3(factor * f0, &sym.experiment) - want).abs();
            assert!(
                r < bound / factor,
                "TE {te}, {factor}x field: residual {r} > {}",
                bound / factor
            );
        }
    }
}

/// Validation case 5: citrate in PRESS with ideal pulses. Its in-phase integral is a sum of
/// cosines at the AB transition frequencies, and at TE = n·2/D (D = √(Δν² + J²)) it equals
/// cos(π·J·TE) exactly, as if weakly coupled.
#[test]
fn citrate_press_at_multiples_of_two_over_d_behaves_as_weakly_coupled() {
    let cit = library::citrate();
    let f0 = 123.2;
    let (dnu, j) = ((2.65 - 2.54) * f0, -15.1f64);
    let d = (dnu * dnu + j * j).sqrt();
    let ex = PulseSpec::ideal_excitation();
    let rf = PulseSpec::ideal_refocusing();
    let mut sim = Simulator::new(
        vec![cit],
        Field::THREE_T,
        3.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .unwrap();
    let total = |sim: &mut Simulator, te: f64| {
        let pr = press(te / 2.0, te / 2.0, &ex, &rf, &rf, acq()).unwrap();
        sim.simulate(&pr.experiment).unwrap().fid(0, 0)[0].re
    };
    let full = total(&mut sim, 0.0);
    assert!((full - 4.0).abs() < 1e-12, "citrate has 4 protons: {full}");
    for n in 1..=3 {
        let te = n as f64 * 2.0 / d;
        let got = total(&mut sim, te) / full;
        let want = (std::f64::consts::PI * j * te).cos();
        println!(
            "n {n}: TE {:.2} ms, {got:.12} vs cos(πJTE) {want:.12}",
            te * 1e3
        );
        assert!((got - want).abs() < 1e-9, "n {n}: {got} vs {want}");
    }
}

#[test]
fn timings_that_do_not_fit_are_errors_naming_the_interval() {
    let ex = PulseSpec::Waveform {
        dt: 1e-4,
        ux: vec![100.0; 40],
        uy: vec![0.0; 40],
    }; // 4 ms
    let rf = PulseSpec::Waveform {
        dt: 1e-4,
        ux: vec![200.0; 60],
        uy: vec![0.0; 60],
    }; // 6 ms
    let e = press(0.006, 0.02, &ex, &rf, &rf, acq())
        .unwrap_err()
        .to_string();
    assert!(e.contains("TE1/2"), "{e}");
    let e = press(0.02, 0.004, &ex, &rf, &rf, acq())
        .unwrap_err()
        .to_string();
    assert!(e.contains("TE2/2") || e.contains("between"), "{e}");
    assert!(press(0.02, 0.02, &ex, &rf, &rf, acq()).is_ok());
    let e = spin_echo(-0.01, &ex, &rf, acq()).unwrap_err().to_string();
    assert!(e.contains("TE"), "{e}");
    let e = steam(0.02, f64::NAN, [&ex, &ex, &ex], acq())
        .unwrap_err()
        .to_string();
    assert!(e.contains("TM"), "{e}");
    assert!(acquisition(0, 1e-3, 1.0).is_err());
}

/// A shaped (sinc-Hanning) refocusing pair inside PRESS refocuses an on-resonance singlet like
/// ideal pulses do, up to the finite pulses' own rotation (here checked against the closed-form
/// pathway amplitude of their actual on-resonance flip, which the linear scaling makes exact).
#[test]
fn shaped_pulses_in_press_refocus_like_ideal_ones_on_resonance() {
    use spinloop::sequence::shapes::Shape;
    let sinc = Shape::sinc_hanning(2.6e-3, 130, 2).unwrap();
    let gauss = Shape::gaussian(2.0e-3, 100, 0.05).unwrap();
    let ex = PulseSpec::shaped(
        &gauss,
        std::f64::consts::FRAC_PI_2,
        std::f64::consts::FRAC_PI_2,
    )
    .unwrap();
    let rf = PulseSpec::shaped(&sinc, std::f64::consts::PI, 0.0).unwrap();
    let pr = press(0.012, 0.018, &ex, &rf, &rf, acq()).unwrap();
    let fid = first_point(singlet(3.0), Member::NOMINAL, &pr.experiment);
    assert!((fid - C64::new(1.0, 0.0)).norm() < 1e-9, "{fid}");
    // Under a B1 error the shaped pulses give the same pathway amplitude as ideal ones of the
    // scaled flip: on resonance an amplitude-modulated pulse is a rotation about one axis.
    let b = 0.85;
    let got = first_point(singlet(3.0), Member { b1: b, b0_hz: 0.0 }, &pr.experiment).norm();
    let want =
        (b * std::f64::consts::FRAC_PI_2).sin() * (b * std::f64::consts::PI / 2.0).sin().powi(4);
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}
