//! Exact gradients against central finite differences (validation case 9): controls of
//! several shaped pulses inside a sequence with delays and ideal pulses, every member's B1
//! scale and B0 offset, and the full golden gradient along random directions.

use num_complex::Complex64 as C64;
use spinloop::design::golden::{self, Variant};
use spinloop::physics::{
    Acquisition, Block, Experiment, Field, GradientRequest, Member, PhysicsError, SignalLoss,
    Signals, SimOptions, Simulator, library,
};

/// Deterministic pseudo-random numbers in [−1, 1) (64-bit LCG).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// L = Σ Re(c_m s_m) + Σ |s_m|²/N over every member and molecule, with fixed pseudo-random c:
/// smooth, never trivially zero, sensitive to phase and amplitude.
struct ProbeLoss {
    c: Vec<C64>,
}

impl ProbeLoss {
    fn new(points: usize) -> ProbeLoss {
        let mut r = Lcg(7);
        ProbeLoss {
            c: (0..points).map(|_| C64::new(r.next(), r.next())).collect(),
        }
    }
}

impl SignalLoss for ProbeLoss {
    fn evaluate(&self, s: &Signals, mut grad: Option<&mut Signals>) -> Result<f64, PhysicsError> {
        let n = s.points() as f64;
        let mut l = 0.0;
        for m in 0..s.members() {
            for mol in 0..s.molecules() {
                let fid = s.fid(m, mol);
                for (k, z) in fid.iter().enumerate() {
                    l += (self.c[k] * z).re + z.norm_sqr() / n;
                }
                if let Some(g) = grad.as_deref_mut() {
                    for (k, (gz, z)) in g.fid_mut(m, mol).iter_mut().zip(fid).enumerate() {
                        // ∂/∂Re + i∂/∂Im of Re(c z) is conj(c); of |z|²/n is 2z/n.
                        *gz = self.c[k].conj() + z * (2.0 / n);
                    }
                }
            }
        }
        Ok(l)
    }
}

fn sequence(p1: (&[f64], &[f64]), p2: (&[f64], &[f64])) -> Experiment {
    Experiment {
        blocks: vec![
            Block::Pulse {
                dt: 25e-6,
                ux: p1.0.to_vec(),
                uy: p1.1.to_vec(),
            },
            Block::Delay { duration: 4.3e-3 },
            Block::Hard {
                flip: 2.6,
                phase: 0.4,
            },
            Block::Delay { duration: 2.1e-3 },
            Block::Pulse {
                dt: 40e-6,
                ux: p2.0.to_vec(),
                uy: p2.1.to_vec(),
            },
        ],
        acquisition: Acquisition {
            points: 256,
            dwell: 4e-4,
            linewidth_hz: 3.0,
        },
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-11
}

fn sim(members: Vec<Member>) -> Simulator {
    Simulator::new(
        vec![library::lactate(), library::citrate(), library::naa()],
        Field::THREE_T,
        2.5,
        members,
        SimOptions::default(),
    )
    .unwrap()
}

#[test]
fn sequence_gradients_match_central_differences() {
    let mut r = Lcg(42);
    let n1 = 24;
    let n2 = 16;
    let mut p1x: Vec<f64> = (0..n1).map(|_| 400.0 * r.next()).collect();
    let p1y: Vec<f64> = (0..n1).map(|_| 400.0 * r.next()).collect();
    let p2x: Vec<f64> = (0..n2).map(|_| 300.0 * r.next()).collect();
    let mut p2y: Vec<f64> = (0..n2).map(|_| 300.0 * r.next()).collect();
    // one exactly-zero segment exercises the a = 0 branch of the polar parameterization
    p1x[5] = 0.0;
    let p1y5 = 0.0;
    let mut p1y = p1y;
    p1y[5] = p1y5;
    p2y[3] = 0.0;

    let members = vec![
        Member {
            b1: 1.07,
            b0_hz: 3.5,
        },
        Member {
            b1: 0.91,
            b0_hz: -6.0,
        },
    ];
    let loss = ProbeLoss::new(256);
    let mut s = sim(members.clone());
    let exp = sequence((&p1x, &p1y), (&p2x, &p2y));
    let (l0, g) = s
        .loss_and_gradient(&exp, &loss, GradientRequest { b0: true })
        .unwrap();
    assert!(close(s.loss(&exp, &loss).unwrap(), l0, 1e-14));

    let h = 1e-3;
    let eval = |s: &mut Simulator, e: &Experiment| s.loss(e, &loss).unwrap();
    let mut worst: f64 = 0.0;
    // Controls: every entry of both pulses.
    for (pulse, k, axis) in (0..n1)
        .flat_map(|k| [(0, k, 0), (0, k, 1)])
        .chain((0..n2).flat_map(|k| [(1, k, 0), (1, k, 1)]))
    {
        let (mut a1x, mut a1y, mut a2x, mut a2y) =
            (p1x.clone(), p1y.clone(), p2x.clone(), p2y.clone());
        let target = match (pulse, axis) {
            (0, 0) => &mut a1x,
            (0, _) => &mut a1y,
            (_, 0) => &mut a2x,
            _ => &mut a2y,
        };
        target[k] += h;
        let lp = eval(&mut s, &sequence((&a1x, &a1y), (&a2x, &a2y)));
        let target = match (pulse, axis) {
            (0, 0) => &mut a1x,
            (0, _) => &mut a1y,
            (_, 0) => &mut a2x,
            _ => &mut a2y,
        };
        target[k] -= 2.0 * h;
        let lm = eval(&mut s, &sequence((&a1x, &a1y), (&a2x, &a2y)));
        let fd = (lp - lm) / (2.0 * h);
        let exact = if axis == 0 {
            g.ux[pulse][k]
        } else {
            g.uy[pulse][k]
        };
        let rel = (fd - exact).abs() / exact.abs().max(1e-12);
        worst = worst.max(rel);
        assert!(
            close(exact, fd, 1e-6),
            "pulse {pulse} seg {k} axis {axis}: {exact} vs fd {fd}"
        );
    }
    println!("controls: worst relative FD deviation {worst:e}");

    // B1 and B0 of each member.
    for (mi, _) in members.iter().enumerate() {
        for (what, step) in [("b1", 1e-6), ("b0", 1e-4)] {
            let shifted = |sign: f64| {
                let mut ms = members.clone();
                if what == "b1" {
                    ms[mi].b1 += sign * step;
                } else {
                    ms[mi].b0_hz += sign * step;
                }
                let mut s2 = sim(ms);
                s2.loss(&exp, &loss).unwrap()
            };
            let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * step);
            let exact = if what == "b1" { g.b1[mi] } else { g.b0[mi] };
            println!("member {mi} {what}: exact {exact:.12e} fd {fd:.12e}");
            assert!(
                close(exact, fd, 1e-6),
                "member {mi} {what}: {exact} vs fd {fd}"
            );
        }
    }
}

#[test]
fn golden_gradient_along_random_directions() {
    for variant in [Variant::Single, Variant::B1] {
        let mut s = golden::simulator(variant, SimOptions::default()).unwrap();
        let loss = golden::loss().unwrap();
        let (ux, uy) = golden::test_pulse();
        let exp = golden::experiment(ux.clone(), uy.clone());
        let (_, g) = s
            .loss_and_gradient(&exp, &loss, GradientRequest::default())
            .unwrap();
        let mut r = Lcg(3);
        for _ in 0..2 {
            let v: Vec<f64> = (0..1024).map(|_| r.next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let v: Vec<f64> = v.iter().map(|x| x / norm).collect();
            let exact: f64 = g.ux[0]
                .iter()
                .chain(&g.uy[0])
                .zip(&v)
                .map(|(a, b)| a * b)
                .sum();
            let h = 1e-2;
            let mut at = |sign: f64| {
                let x: Vec<f64> = ux
                    .iter()
                    .zip(&v[..512])
                    .map(|(a, d)| a + sign * h * d)
                    .collect();
                let y: Vec<f64> = uy
                    .iter()
                    .zip(&v[512..])
                    .map(|(a, d)| a + sign * h * d)
                    .collect();
                s.loss(&golden::experiment(x, y), &loss).unwrap()
            };
            let fd = (at(1.0) - at(-1.0)) / (2.0 * h);
            println!("{variant:?}: directional derivative exact {exact:.12e} fd {fd:.12e}");
            assert!(close(exact, fd, 1e-6), "{exact} vs {fd}");
        }
    }
}

/// The largest supported fragment (8 coupled spins, dimension 256) simulates, conserves the
/// invariants and differentiates correctly; 9 spins is a typed error.
#[test]
fn eight_spins_is_the_supported_maximum() {
    use spinloop::physics::{Fragment, Molecule};
    let spins: Vec<(String, f64)> = (0..8)
        .map(|i| (format!("H{i}"), 1.5 + 0.31 * i as f64))
        .collect();
    let spin_refs: Vec<(&str, f64)> = spins.iter().map(|(l, s)| (l.as_str(), *s)).collect();
    let couplings: Vec<(usize, usize, f64)> =
        (1..8).map(|i| (i, i + 1, 7.0 - 0.5 * i as f64)).collect();
    let frag = Fragment::new("chain", 1.0, &spin_refs, &couplings).unwrap();
    let mol = Molecule {
        name: "chain8".into(),
        description: String::new(),
        fragments: vec![frag.clone()],
        singlets: vec![],
    };
    let mut s = Simulator::new(
        vec![mol],
        Field::THREE_T,
        2.6,
        vec![Member {
            b1: 1.02,
            b0_hz: 1.5,
        }],
        SimOptions::default(),
    )
    .unwrap();
    let ux = vec![55.0, -20.0, 31.0];
    let uy = vec![10.0, 42.0, -5.0];
    let exp = |ux: &[f64], uy: &[f64]| Experiment {
        blocks: vec![Block::Pulse {
            dt: 20e-6,
            ux: ux.to_vec(),
            uy: uy.to_vec(),
        }],
        acquisition: Acquisition {
            points: 64,
            dwell: 5e-4,
            linewidth_hz: 2.0,
        },
    };
    let loss = ProbeLoss::new(64);
    let (_, g) = s
        .loss_and_gradient(&exp(&ux, &uy), &loss, GradientRequest::default())
        .unwrap();
    let rho = s.final_state(0, 0).unwrap();
    assert_eq!(rho.dim(), 256);
    assert!(rho.hermiticity_error() < 1e-12);
    assert!(rho.trace().norm() < 1e-10);
    let h = 1e-3;
    let mut up = ux.clone();
    up[1] += h;
    let mut dn = ux.clone();
    dn[1] -= h;
    let fd = (s.loss(&exp(&up, &uy), &loss).unwrap() - s.loss(&exp(&dn, &uy), &loss).unwrap())
        / (2.0 * h);
    assert!(close(g.ux[0][1], fd, 1e-6), "{} vs {fd}", g.ux[0][1]);

    let mut nine = frag;
    nine.spins.push(nine.spins[0].clone());
    let err = Molecule {
        name: "chain9".into(),
        description: String::new(),
        fragments: vec![nine],
        singlets: vec![],
    }
    .validate()
    .unwrap_err();
    assert!(
        matches!(
            err,
            PhysicsError::TooManySpins {
                spins: 9,
                max: 8,
                ..
            }
        ),
        "{err}"
    );
}
