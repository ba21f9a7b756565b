//! Product-operator analysis (`spinloop::design::product_operators`), each case against an
//! independent expectation: exact round trips through operators built here from
//! `SpinOperators`, the analytic one-spin 90° and two-spin J-evolution results, exact
//! formatting, and rejected input.

use std::f64::consts::PI;

use num_complex::Complex64 as C64;
use spinloop::design::product_operators::{
    Axis, Basis, Term, decompose, format_terms, fragment_states, largest, operator_label,
    reconstruct, spin_names, state_after, state_report, without_identity,
};
use spinloop::physics::linalg::CMat;
use spinloop::physics::operators::SpinOperators;
use spinloop::physics::{
    Acquisition, Block, Experiment, Field, Fragment, Member, Molecule, PhysicsError, SimOptions,
    Simulator, SingletGroup,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Tiny LCG (Knuth's MMIX constants) giving uniform numbers in [−1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn matrix(&mut self, d: usize, hermitian: bool) -> CMat {
        let mut m = CMat::zeros(d);
        for c in 0..d {
            for r in 0..d {
                m[(r, c)] = C64::new(self.next(), self.next());
            }
        }
        if hermitian {
            let mut h = m.adjoint();
            h.axpy(C64::new(1.0, 0.0), &m);
            h.scale(C64::new(0.5, 0.0));
            h
        } else {
            m
        }
    }
}

/// The product operator 2^(k−1) Π I_{spin,axis}, built independently of the module: dense
/// products of `SpinOperators` matrices (I± from Ix ± iIy).
fn operator(ops: &SpinOperators, factors: &[(usize, Axis)]) -> CMat {
    let mut m = CMat::identity(ops.dim());
    m.scale(C64::new(0.5, 0.0));
    for &(s, a) in factors {
        let f = match a {
            Axis::X => ops.ix(s),
            Axis::Y => ops.iy(s),
            Axis::Z => ops.iz(s),
            Axis::Plus | Axis::Minus => {
                let mut f = ops.ix(s);
                let sign = if a == Axis::Plus { 1.0 } else { -1.0 };
                f.axpy(C64::new(0.0, sign), &ops.iy(s));
                f
            }
        };
        m = m.mul(&f);
        m.scale(C64::new(2.0, 0.0));
    }
    m
}

fn max_diff(a: &CMat, b: &CMat) -> f64 {
    let mut d = a.clone();
    d.axpy(C64::new(-1.0, 0.0), b);
    d.max_abs()
}

fn molecule(name: &str, spins: &[(&str, f64)], j: &[(usize, usize, f64)]) -> Molecule {
    Molecule {
        name: name.to_string(),
        description: String::new(),
        fragments: vec![Fragment::new(name, 1.0, spins, j).unwrap()],
        singlets: vec![],
    }
}

fn experiment(blocks: Vec<Block>) -> Experiment {
    Experiment {
        blocks,
        acquisition: Acquisition {
            points: 4,
            dwell: 1e-3,
            linewidth_hz: 0.0,
        },
    }
}

fn term(c: f64, factors: &[(usize, Axis)]) -> Term {
    Term {
        coefficient: C64::new(c, 0.0),
        factors: factors.to_vec(),
    }
}

/// Coefficient of the term with exactly these factors.
fn coefficient(terms: &[Term], factors: &[(usize, Axis)]) -> C64 {
    terms
        .iter()
        .find(|t| t.factors == factors)
        .map(|t| t.coefficient)
        .unwrap_or_else(|| panic!("no term {factors:?}"))
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trip_random_matrices_both_bases() {
    let mut rng = Lcg(0x5eed);
    for n in 1..=4 {
        let ops = SpinOperators::new(n);
        for hermitian in [true, false] {
            let rho = rng.matrix(1 << n, hermitian);
            for basis in [Basis::Cartesian, Basis::Shift] {
                let terms = decompose(&rho, n, basis).unwrap();
                assert_eq!(terms.len(), 1 << (2 * n));
                assert!(terms[0].is_identity());
                // Independent reconstruction Σ c_a B_a.
                let mut sum = CMat::zeros(1 << n);
                for t in &terms {
                    sum.axpy(t.coefficient, &operator(&ops, &t.factors));
                }
                let err = max_diff(&sum, &rho);
                assert!(err < 1e-12, "n={n} herm={hermitian} {basis:?}: {err:e}");
                // The module's own inverse and dense operator agree.
                let err = max_diff(&reconstruct(&terms, n).unwrap(), &rho);
                assert!(err < 1e-12, "reconstruct n={n}: {err:e}");
                let t = &terms[terms.len() / 3];
                let err = max_diff(&t.operator(n).unwrap(), &operator(&ops, &t.factors));
                assert!(err < 1e-15);
                // Hermitian ρ has real Cartesian coefficients.
                if hermitian && basis == Basis::Cartesian {
                    for t in &terms {
                        assert!(t.coefficient.im.abs() < 1e-14, "{t:?}");
                    }
                }
                // Identity coefficient is Tr ρ / 2^(n−1).
                let id = rho.trace() / 2f64.powi(n as i32 - 1);
                assert!((terms[0].coefficient - id).norm() < 1e-12);
            }
        }
    }
}

#[test]
fn equilibrium_has_unit_iz_per_spin_and_n8_is_handled() {
    for n in [1, 3, 8] {
        let ops = SpinOperators::new(n);
        let terms = without_identity(decompose(&ops.fz(), n, Basis::Cartesian).unwrap());
        let top = largest(&terms, 100);
        assert_eq!(top.len(), n, "n={n}");
        for (i, t) in top.iter().enumerate() {
            assert_eq!(t.factors, vec![(i, Axis::Z)]);
            assert!((t.coefficient - 1.0).norm() < 1e-13);
        }
    }
    // A 3-spin term of an 8-spin system: 4·I1x I4y I8z.
    let ops = SpinOperators::new(8);
    let f = [(0, Axis::X), (3, Axis::Y), (7, Axis::Z)];
    let mut rho = operator(&ops, &f);
    rho.scale(C64::new(-0.25, 0.0));
    let top = largest(&decompose(&rho, 8, Basis::Cartesian).unwrap(), 5);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].factors, f.to_vec());
    assert!((top[0].coefficient + 0.25).norm() < 1e-14);
    // A full 8-spin round trip (65536 terms each way) through the module's inverse.
    let rho = Lcg(8).matrix(256, false);
    for basis in [Basis::Cartesian, Basis::Shift] {
        let terms = decompose(&rho, 8, basis).unwrap();
        let err = max_diff(&reconstruct(&terms, 8).unwrap(), &rho);
        assert!(err < 1e-12, "{basis:?}: {err:e}");
    }
}

#[test]
fn shift_basis_of_x_magnetisation_and_filtered_state() {
    // Ix = ½ I+ + ½ I−.
    let ops = SpinOperators::new(1);
    let top = largest(&decompose(&ops.ix(0), 1, Basis::Shift).unwrap(), 4);
    assert_eq!(top.len(), 2);
    assert_eq!(top[0].factors, vec![(0, Axis::Plus)]);
    assert_eq!(top[1].factors, vec![(0, Axis::Minus)]);
    for t in &top {
        assert!((t.coefficient - 0.5).norm() < 1e-15);
    }
    assert_eq!(format_terms(&top, None), "0.5 I1+ + 0.5 I1−");
    // After a 90° and a filter keeping order −1, ρ = ½ I− (one shift-basis term of coherence
    // order −1), i.e. ½ Ix − ½ i Iy in the Cartesian basis.
    let mol = molecule("A", &[("H", 2.0)], &[]);
    let mut sim = Simulator::new(
        vec![mol],
        Field::THREE_T,
        2.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .unwrap();
    let exp = experiment(vec![
        Block::Hard {
            flip: PI / 2.0,
            phase: PI / 2.0,
        },
        Block::Filter { orders: vec![-1] },
    ]);
    sim.simulate(&exp).unwrap();
    let rho = sim.final_state(0, 0).unwrap();
    let shift = largest(&decompose(&rho, 1, Basis::Shift).unwrap(), 4);
    assert_eq!(shift.len(), 1);
    assert_eq!(shift[0].factors, vec![(0, Axis::Minus)]);
    assert_eq!(shift[0].coherence_order(), -1);
    assert!((shift[0].coefficient - 0.5).norm() < 1e-12);
    let cart = largest(&decompose(&rho, 1, Basis::Cartesian).unwrap(), 4);
    assert_eq!(format_terms(&cart, None), "0.5 I1x − 0.5i I1y");
}

// ---------------------------------------------------------------------------------------------
// Analytic states from the simulator
// ---------------------------------------------------------------------------------------------

#[test]
fn one_spin_90y_gives_unit_i1x() {
    let mol = molecule("A", &[("Ha", 3.0)], &[]);
    let mut sim = Simulator::new(
        vec![mol],
        Field::THREE_T,
        3.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .unwrap();
    let exp = experiment(vec![Block::Hard {
        flip: PI / 2.0,
        phase: PI / 2.0,
    }]);
    // Before the pulse: Iz.
    let states = state_after(&mut sim, &exp, 0, 0).unwrap();
    let terms = without_identity(decompose(&states[0].rho, 1, Basis::Cartesian).unwrap());
    assert_eq!(format_terms(&largest(&terms, 3), None), "1 I1z");
    // After it: Ix, everything else below 1e-12.
    sim.simulate(&exp).unwrap();
    let rho = sim.final_state(0, 0).unwrap();
    let terms = decompose(&rho, 1, Basis::Cartesian).unwrap();
    let top = largest(&terms, 1);
    assert_eq!(top[0].factors, vec![(0, Axis::X)]);
    assert!((top[0].coefficient - 1.0).norm() < 1e-12);
    for t in terms.iter().filter(|t| t.factors != [(0, Axis::X)]) {
        assert!(t.coefficient.norm() < 1e-12, "{t:?}");
    }
    let report = state_report(&sim, 0, 4).unwrap();
    assert_eq!(report, "A / A (fragment 1, 1 spin: I1 = Ha)\n  1 I1x\n");
}

#[test]
fn weakly_coupled_ax_echo_gives_antiphase_terms() {
    // AX: J = 7 Hz; shift difference 10 ppm at a (fictitious) 100 GHz, so Δν = 10⁶ Hz
    // ≈ 1.4·10⁵ J. The strong-coupling (flip-flop) term, off resonance by Δν, leaves residual
    // in-phase terms of first order, O(J/Δν) = 7·10⁻⁶, and changes the antiphase coefficients
    // only in second order, O((J/Δν)²) ≈ 5·10⁻¹¹: antiphase to 1e−6, the rest below 2J/Δν.
    let j = 7.0;
    let field = Field::from_mhz(1.0e5).unwrap();
    let mol = molecule("AX", &[("HA", 1.0), ("HX", 11.0)], &[(1, 2, j)]);
    let mut sim = Simulator::new(
        vec![mol],
        field,
        6.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .unwrap();
    let tau = 1.0 / (4.0 * j);
    let exp = experiment(vec![
        Block::Hard {
            flip: PI / 2.0,
            phase: PI / 2.0,
        },
        Block::Delay { duration: tau },
        Block::Hard {
            flip: PI,
            phase: 0.0,
        },
        Block::Delay { duration: tau },
    ]);
    // Weak coupling, shifts refocused: Ix1 → Ix1 cos(πJt) + 2 I1y I2z sin(πJt) with t = 2τ =
    // 1/(2J); the 180°x leaves Ix and 2 Iy Iz unchanged. Same for spin 2.
    let states = state_after(&mut sim, &exp, 4, 0).unwrap();
    let s = &states[0];
    assert_eq!(s.spin_names, vec!["HA".to_string(), "HX".to_string()]);
    let terms = without_identity(decompose(&s.rho, 2, Basis::Cartesian).unwrap());
    let top = largest(&terms, 4);
    let t = PI * j * 2.0 * tau;
    let expected = [
        (vec![(0, Axis::Y), (1, Axis::Z)], t.sin()),
        (vec![(0, Axis::Z), (1, Axis::Y)], t.sin()),
    ];
    for (f, c) in &expected {
        let got = coefficient(&terms, f);
        assert!((got - c).norm() < 1e-6, "{f:?}: {got} vs {c}");
    }
    let rest = terms
        .iter()
        .filter(|t| !expected.iter().any(|(f, _)| *f == t.factors))
        .map(|t| t.coefficient.norm())
        .fold(0.0, f64::max);
    let dnu = field.offset_hz(11.0, 1.0);
    assert!(rest < 2.0 * j / dnu, "largest other term {rest:e}");
    // Exactly two antiphase terms at the printed precision.
    let text = format_terms(&top[..2], None);
    assert_eq!(text, "1 I1y I2z + 1 I1z I2y");
    let names = s.spin_names.clone();
    assert_eq!(
        format_terms(&top[..2], Some(&names)),
        "1 Iy(HA) Iz(HX) + 1 Iz(HA) Iy(HX)"
    );
    let report = state_report(&sim, 0, 2).unwrap();
    println!("{report}");
    println!("all terms: {}", format_terms(&largest(&terms, 16), None));
    assert_eq!(
        report,
        "AX / AX (fragment 1, 2 spins: I1 = HA, I2 = HX)\n  1 I1y I2z + 1 I1z I2y\n"
    );
    // Halfway through the echo (after the first delay, t = 1/(4J)): cos and sin of π/4
    // with the shift phase still present — the in-phase and antiphase parts have equal weight
    // (to first order in J/Δν).
    let states = state_after(&mut sim, &exp, 2, 0).unwrap();
    let terms = without_identity(decompose(&states[0].rho, 2, Basis::Cartesian).unwrap());
    let c = (PI / 4.0).cos();
    let inphase = coefficient(&terms, &[(0, Axis::X)]).norm_sqr()
        + coefficient(&terms, &[(0, Axis::Y)]).norm_sqr();
    let anti = coefficient(&terms, &[(0, Axis::X), (1, Axis::Z)]).norm_sqr()
        + coefficient(&terms, &[(0, Axis::Y), (1, Axis::Z)]).norm_sqr();
    assert!((inphase - c * c).abs() < 4.0 * j / dnu, "{inphase}");
    assert!((anti - c * c).abs() < 4.0 * j / dnu, "{anti}");
}

#[test]
fn fragment_states_name_molecules_fragments_and_duplicate_labels() {
    let lac = Molecule {
        name: "Lac".to_string(),
        description: String::new(),
        fragments: vec![
            Fragment::new(
                "lactate",
                1.0,
                &[
                    ("CH", 4.0974),
                    ("CH3", 1.3142),
                    ("CH3", 1.3142),
                    ("CH3", 1.3142),
                ],
                &[(1, 2, 6.933), (1, 3, 6.933), (1, 4, 6.933)],
            )
            .unwrap(),
        ],
        singlets: vec![],
    };
    let naa = Molecule {
        name: "NAA".to_string(),
        description: String::new(),
        fragments: vec![],
        singlets: vec![SingletGroup {
            label: "CH3".to_string(),
            shift_ppm: 2.008,
            protons: 3,
            nucleus: Default::default(),
        }],
    };
    assert_eq!(
        spin_names(&lac.fragments[0]),
        vec!["CH", "CH3#2", "CH3#3", "CH3#4"]
    );
    let mut sim = Simulator::new(
        vec![lac, naa],
        Field::THREE_T,
        2.0,
        vec![
            Member::NOMINAL,
            Member {
                b1: 0.5,
                b0_hz: 0.0,
            },
        ],
        SimOptions::default(),
    )
    .unwrap();
    let exp = experiment(vec![Block::Hard {
        flip: PI / 2.0,
        phase: PI / 2.0,
    }]);
    // Before any simulation: an error, not a panic.
    assert!(fragment_states(&sim, 0).is_err());
    sim.simulate(&exp).unwrap();
    let states = fragment_states(&sim, 1).unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(
        (states[0].molecule.as_str(), states[0].name.as_str()),
        ("Lac", "lactate")
    );
    assert_eq!(
        (states[1].molecule.as_str(), states[1].name.as_str()),
        ("NAA", "CH3")
    );
    // Member 1 has B1 = 0.5: a 45° pulse, Iz cos 45° + Ix sin 45° per spin.
    let terms = largest(&decompose(&states[1].rho, 1, Basis::Cartesian).unwrap(), 3);
    assert_eq!(format_terms(&terms, None), "0.7071 I1x + 0.7071 I1z");
    let report = state_report(&sim, 0, 4).unwrap();
    assert!(report.starts_with(
        "Lac / lactate (fragment 1, 4 spins: I1 = CH, I2 = CH3#2, I3 = CH3#3, I4 = CH3#4)\n  1 I1x + 1 I2x + 1 I3x + 1 I4x\n"
    ), "{report}");
    assert!(report.ends_with("NAA / CH3 (fragment 2, 1 spin: I1 = CH3)\n  1 I1x\n"));
    assert!(fragment_states(&sim, 2).is_err());
    assert!(state_after(&mut sim, &exp, 2, 0).is_err());
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

#[test]
fn formatting_is_exact() {
    let terms = vec![
        term(0.38, &[(4, Axis::X)]),
        term(-1.32, &[(0, Axis::Y), (1, Axis::Y), (4, Axis::X)]),
        term(1.0 / 3.0, &[(2, Axis::Z)]),
        term(2.5e-5, &[(1, Axis::Plus), (2, Axis::Minus)]),
        term(-1234.5678, &[]),
    ];
    assert_eq!(
        format_terms(&terms, None),
        "0.38 I5x − 1.32 I1y I2y I5x + 0.3333 I3z + 2.500e-5 I2+ I3− − 1235 E"
    );
    let names: Vec<String> = ["H2", "H3a", "H3b", "H4a", "H4b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        format_terms(&terms[..2], Some(&names)),
        "0.38 Ix(H4b) − 1.32 Iy(H2) Iy(H3a) Ix(H4b)"
    );
    // Names shorter than the spin list fall back to numbers.
    assert_eq!(
        operator_label(&terms[1], Some(&names[..1])),
        "Iy(H2) I2y I5x"
    );
    // Leading negative, complex and imaginary coefficients; negligible parts dropped.
    let mixed = vec![
        term(-2.0, &[(0, Axis::X)]),
        Term {
            coefficient: C64::new(0.5, -0.25),
            factors: vec![(1, Axis::Z)],
        },
        Term {
            coefficient: C64::new(1e-14, -0.125),
            factors: vec![(0, Axis::Y)],
        },
        Term {
            coefficient: C64::new(-0.75, 1e-13),
            factors: vec![(0, Axis::Z), (1, Axis::Z)],
        },
    ];
    assert_eq!(
        format_terms(&mixed, None),
        "−2 I1x + (0.5−0.25i) I2z − 0.125i I1y − 0.75 I1z I2z"
    );
    assert_eq!(format_terms(&[], None), "0");
}

#[test]
fn largest_orders_by_magnitude_with_deterministic_ties() {
    let terms = vec![
        term(0.5, &[(1, Axis::X), (2, Axis::Z)]),
        term(-0.5, &[(1, Axis::X)]),
        term(0.5, &[(0, Axis::Z)]),
        term(2.0, &[(3, Axis::Y)]),
        term(1e-15, &[(3, Axis::X)]),
        term(0.0, &[(2, Axis::X)]),
    ];
    let top = largest(&terms, 10);
    let labels: Vec<String> = top.iter().map(|t| operator_label(t, None)).collect();
    assert_eq!(labels, vec!["I4y", "I1z", "I2x", "I2x I3z"]);
    let mut reversed = terms.clone();
    reversed.reverse();
    assert_eq!(largest(&reversed, 10), top);
    assert_eq!(largest(&terms, 2).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_input_is_rejected() {
    let rho = CMat::identity(4);
    assert!(matches!(
        decompose(&rho, 3, Basis::Cartesian),
        Err(PhysicsError::SizeMismatch {
            expected: 8,
            got: 4,
            ..
        })
    ));
    assert!(decompose(&CMat::identity(3), 2, Basis::Cartesian).is_err());
    assert!(decompose(&CMat::identity(1), 0, Basis::Cartesian).is_err());
    assert!(decompose(&CMat::identity(512), 9, Basis::Cartesian).is_err());
    let mut nan = CMat::identity(4);
    nan[(1, 2)] = C64::new(0.0, f64::NAN);
    match decompose(&nan, 2, Basis::Shift) {
        Err(PhysicsError::InvalidParameter { field, .. }) => assert_eq!(field, "rho[(1, 2)]"),
        other => panic!("{other:?}"),
    }
    let mut inf = CMat::identity(2);
    inf[(0, 0)] = C64::new(f64::INFINITY, 0.0);
    assert!(decompose(&inf, 1, Basis::Cartesian).is_err());
    // Terms naming spins outside the system or out of order.
    assert!(term(1.0, &[(2, Axis::X)]).operator(2).is_err());
    assert!(reconstruct(&[term(1.0, &[(1, Axis::X), (0, Axis::Z)])], 2).is_err());
}
