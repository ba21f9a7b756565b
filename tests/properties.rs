//! Property tests (proptest) over random small spin systems (1–3 coupled spins, optionally a
//! singlet group), random ensemble members and random experiments (1–6 segment shaped pulses,
//! optional delay, ideal pulse and second shaped pulse):
//!
//! - the final state ρ_N is Hermitian and unitarily equivalent to ρ0 = Fz: Tr ρ_N = 0 and
//!   Tr ρ_N² = Tr Fz² (validation.md case 1, on random inputs);
//! - the exact adjoint gradient agrees with central finite differences (validation.md case 9)
//!   along a random direction in all controls, and for every member's B1 scale and B0 offset.

use std::f64::consts::PI;

use num_complex::Complex64 as C64;
use proptest::prelude::*;
use spinloop::physics::operators::SpinOperators;
use spinloop::physics::{
    Acquisition, Block, Experiment, Field, Fragment, GradientRequest, Member, Molecule, Nucleus,
    PhysicsError, SignalLoss, Signals, SimOptions, Simulator, SingletGroup,
};

const CARRIER: f64 = 3.0;
const POINTS: usize = 3;
const DWELL: f64 = 1e-3;
const LINEWIDTH: f64 = 2.0;

/// One random problem.
#[derive(Debug, Clone)]
struct Case {
    /// Shifts of the coupled spins (ppm, within ±3 ppm of the carrier).
    shifts: Vec<f64>,
    /// Couplings (1-based pairs, Hz, |J| ≤ 20).
    couplings: Vec<(usize, usize, f64)>,
    /// Fragment weight.
    weight: f64,
    /// Optional singlet group (shift, protons).
    singlet: Option<(f64, u32)>,
    /// Members (b1, b0 Hz).
    members: Vec<(f64, f64)>,
    /// Blocks of the experiment.
    blocks: Vec<Block>,
    /// Seed for the loss coefficients and the FD direction.
    seed: u64,
}

impl Case {
    fn molecule(&self) -> Molecule {
        let spins: Vec<(String, f64)> = self
            .shifts
            .iter()
            .enumerate()
            .map(|(i, &s)| (format!("H{}", i + 1), s))
            .collect();
        let spins: Vec<(&str, f64)> = spins.iter().map(|(l, s)| (l.as_str(), *s)).collect();
        Molecule {
            name: "random".into(),
            description: String::new(),
            fragments: vec![
                Fragment::new("coupled", self.weight, &spins, &self.couplings).unwrap(),
            ],
            singlets: self
                .singlet
                .iter()
                .map(|&(shift_ppm, protons)| SingletGroup {
                    label: "S".into(),
                    shift_ppm,
                    protons,
                    nucleus: Nucleus::H1,
                })
                .collect(),
        }
    }

    fn members(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|&(b1, b0_hz)| Member { b1, b0_hz })
            .collect()
    }

    fn simulator(&self, members: Vec<Member>) -> Simulator {
        Simulator::new(
            vec![self.molecule()],
            Field::THREE_T,
            CARRIER,
            members,
            SimOptions::default(),
        )
        .unwrap()
    }

    fn experiment(&self, blocks: Vec<Block>) -> Experiment {
        Experiment {
            blocks,
            acquisition: Acquisition {
                points: POINTS,
                dwell: DWELL,
                linewidth_hz: LINEWIDTH,
            },
        }
    }
}

fn pulse() -> impl Strategy<Value = Block> {
    (1usize..=6, 5e-6f64..50e-6).prop_flat_map(|(segments, dt)| {
        (
            prop::collection::vec(-1000.0f64..1000.0, segments),
            prop::collection::vec(-1000.0f64..1000.0, segments),
        )
            .prop_map(move |(ux, uy)| Block::Pulse { dt, ux, uy })
    })
}

fn case() -> impl Strategy<Value = Case> {
    let system = (1usize..=3).prop_flat_map(|n| {
        let pairs: Vec<(usize, usize)> = (1..=n)
            .flat_map(|i| (i + 1..=n).map(move |j| (i, j)))
            .collect();
        let np = pairs.len();
        (
            prop::collection::vec(-3.0f64..3.0, n),
            prop::collection::vec(prop::option::weighted(0.8, -20.0f64..20.0), np),
            Just(pairs),
        )
            .prop_map(|(offsets, js, pairs)| {
                let shifts = offsets.iter().map(|o| CARRIER + o).collect::<Vec<_>>();
                let couplings = pairs
                    .iter()
                    .zip(js)
                    .filter_map(|(&(i, j), jhz)| jhz.map(|jhz| (i, j, jhz)))
                    .collect::<Vec<_>>();
                (shifts, couplings)
            })
    });
    (
        system,
        0.5f64..3.0,
        prop::option::of((CARRIER - 3.0..CARRIER + 3.0, 1u32..=4)),
        prop::collection::vec((0.7f64..1.3, -30.0f64..30.0), 1..=3),
        pulse(),
        prop::option::of(0.0f64..5e-3),
        prop::option::of((-2.0 * PI..2.0 * PI, 0.0..2.0 * PI)),
        prop::option::of(pulse()),
        any::<u64>(),
    )
        .prop_map(
            |((shifts, couplings), weight, singlet, members, first, delay, hard, second, seed)| {
                let mut blocks = vec![first];
                if let Some(duration) = delay {
                    blocks.push(Block::Delay { duration });
                }
                if let Some((flip, phase)) = hard {
                    blocks.push(Block::Hard { flip, phase });
                }
                blocks.extend(second);
                Case {
                    shifts,
                    couplings,
                    weight,
                    singlet,
                    members,
                    blocks,
                    seed,
                }
            },
        )
}

/// Deterministic pseudo-random numbers (SplitMix64) derived from the case's seed.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }
}

/// L = Σ_{m,t} Re(c_{m,t}·s_{m,t}) + Σ_{m,t} |s_{m,t}|²/N for the single molecule, N the number
/// of samples: smooth, with a gradient g = conj(c) + 2s/N that is never trivially zero.
struct RandomLoss {
    c: Vec<C64>,
}

impl RandomLoss {
    fn new(rng: &mut SplitMix, members: usize) -> RandomLoss {
        RandomLoss {
            c: (0..members * POINTS)
                .map(|_| C64::new(rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)))
                .collect(),
        }
    }

    /// Σ |loss terms| for signals of the full size `full` (the proton count): the scale of the
    /// loss's round-off. Propagator errors are absolute (relative to the unit norm of U), so
    /// signal errors scale with the full signal, not with the signal actually produced.
    fn scale(&self, full: f64) -> f64 {
        let n = self.c.len() as f64;
        self.c.iter().map(|c| (c.norm() + full / n) * full).sum()
    }
}

impl SignalLoss for RandomLoss {
    fn evaluate(&self, signals: &Signals, grad: Option<&mut Signals>) -> Result<f64, PhysicsError> {
        let n = self.c.len() as f64;
        let mut value = 0.0;
        for m in 0..signals.members() {
            for (t, s) in signals.fid(m, 0).iter().enumerate() {
                value += (self.c[m * POINTS + t] * s).re + s.norm_sqr() / n;
            }
        }
        if let Some(g) = grad {
            for m in 0..signals.members() {
                let fid = signals.fid(m, 0).to_vec();
                for (t, (gt, s)) in g.fid_mut(m, 0).iter_mut().zip(fid).enumerate() {
                    *gt = self.c[m * POINTS + t].conj() + 2.0 * s / n;
                }
            }
        }
        Ok(value)
    }
}

/// Blocks with every control moved by `h·v` (v laid out pulse by pulse, ux then uy).
fn perturbed(blocks: &[Block], v: &[f64], h: f64) -> Vec<Block> {
    let mut k = 0;
    blocks
        .iter()
        .map(|b| match b {
            Block::Pulse { dt, ux, uy } => {
                let n = ux.len();
                let ux = ux
                    .iter()
                    .zip(&v[k..k + n])
                    .map(|(u, d)| u + h * d)
                    .collect();
                let uy = uy
                    .iter()
                    .zip(&v[k + n..k + 2 * n])
                    .map(|(u, d)| u + h * d)
                    .collect();
                k += 2 * n;
                Block::Pulse { dt: *dt, ux, uy }
            }
            other => other.clone(),
        })
        .collect()
}

/// Rounding error of one loss evaluation relative to [`RandomLoss::scale`]: the segment
/// propagators are interpolants accurate to 1e-14 per entry (the amplitude family's
/// self-check tolerance), and a different B0 or B1 builds or reads a different interpolant, so
/// values may jump by that much; 1e-13 covers the accumulation over ≤ 14 steps.
const LOSS_ROUNDOFF: f64 = 1e-13;

/// Rotation angle (rad) by which each finite-difference step perturbs the dynamics: small
/// enough that the O(δθ²) truncation of central differences is ~1e-10 relative, large enough
/// that round-off (LOSS_ROUNDOFF/δθ ≈ 1e-8) stays far below the 1e-6 test.
const FD_ANGLE: f64 = 1e-5;

/// |a − b| ≤ 1e-6·max(|a|, |b|) + floor, floor = the loss round-off divided by the step.
fn check_fd(what: &str, analytic: f64, numeric: f64, floor: f64) -> Result<(), TestCaseError> {
    let err = (analytic - numeric).abs();
    let tol = 1e-6 * analytic.abs().max(numeric.abs()) + floor;
    println!(
        "FD {what}: rel error {:.1e} (|g| {:.1e}, floor {:.1e})",
        err / analytic.abs().max(numeric.abs()).max(f64::MIN_POSITIVE),
        analytic.abs(),
        floor
    );
    prop_assert!(
        err <= tol,
        "{what}: analytic {analytic:e}, central difference {numeric:e}, |Δ| {err:e} > {tol:e}"
    );
    Ok(())
}

/// 32 cases by default (the whole file runs in about a second); `PROPTEST_CASES=n` overrides it
/// for a longer soak. No regression files are written.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn check_final_state(case: &Case) -> Result<(), TestCaseError> {
    let mut sim = case.simulator(case.members());
    sim.simulate(&case.experiment(case.blocks.clone())).unwrap();
    prop_assert_eq!(sim.fragment_count(), 1 + case.singlet.iter().count());
    for f in 0..sim.fragment_count() {
        let n = if f == 0 { case.shifts.len() } else { 1 };
        let fz = SpinOperators::new(n).fz();
        let tr_fz2 = fz.trace_product(&fz).re;
        for m in 0..case.members.len() {
            let rho = sim.final_state(m, f).unwrap();
            prop_assert_eq!(rho.dim(), 1 << n);
            let herm = rho.hermiticity_error();
            let tr = rho.trace().norm();
            let purity = (rho.trace_product(&rho) - tr_fz2).norm() / tr_fz2;
            prop_assert!(herm <= 1e-12, "hermiticity error {:e}", herm);
            prop_assert!(tr <= 1e-12 * tr_fz2, "Tr ρ = {:e}", tr);
            prop_assert!(purity <= 1e-12, "Tr ρ² off by {:e} relative", purity);
        }
    }
    Ok(())
}

fn check_gradient(case: &Case) -> Result<(), TestCaseError> {
    let mut rng = SplitMix(case.seed);
    let members = case.members();
    let loss = RandomLoss::new(&mut rng, members.len());
    let exp = case.experiment(case.blocks.clone());
    let mut sim = case.simulator(members.clone());
    let (value, grad) = sim
        .loss_and_gradient(&exp, &loss, GradientRequest { b0: true })
        .unwrap();
    // simulate() propagates whole pulses with precomputed block propagators, the gradient's
    // forward sweep goes segment by segment: the same model, equal to rounding.
    let signals = sim.simulate(&exp).unwrap();
    let scale = loss.scale(case.molecule().proton_count());
    let forward = loss.evaluate(&signals, None).unwrap();
    prop_assert!(
        (forward - value).abs() <= 1e-12 * scale,
        "{} vs {}",
        forward,
        value
    );

    // Shapes: one entry per pulse block, per segment, per member.
    let pulses: Vec<(f64, &Vec<f64>, &Vec<f64>)> = case
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Pulse { dt, ux, uy } => Some((*dt, ux, uy)),
            _ => None,
        })
        .collect();
    prop_assert_eq!(grad.ux.len(), pulses.len());
    prop_assert_eq!(grad.uy.len(), pulses.len());
    prop_assert_eq!(grad.b1.len(), members.len());
    prop_assert_eq!(grad.b0.len(), members.len());
    for ((_, ux, _), (gx, gy)) in pulses.iter().zip(grad.ux.iter().zip(&grad.uy)) {
        prop_assert_eq!(gx.len(), ux.len());
        prop_assert_eq!(gy.len(), ux.len());
    }

    // Controls: directional derivative along a random v ∈ [−1, 1]^K.
    let k: usize = pulses.iter().map(|(_, ux, _)| 2 * ux.len()).sum();
    let v: Vec<f64> = (0..k).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let analytic: f64 = grad
        .ux
        .iter()
        .zip(&grad.uy)
        .flat_map(|(gx, gy)| gx.iter().chain(gy))
        .zip(&v)
        .map(|(g, d)| g * d)
        .sum();
    // Angle moved per unit step: 2π·Σ dt·b1·|v_k|.
    let b1_max = case.members.iter().map(|m| m.0).fold(0.0, f64::max);
    let mut sensitivity = 0.0;
    let mut offset = 0;
    for (dt, ux, _) in &pulses {
        let n = 2 * ux.len();
        let v_abs: f64 = v[offset..offset + n].iter().map(|x| x.abs()).sum();
        sensitivity += 2.0 * PI * dt * b1_max * v_abs;
        offset += n;
    }
    let h = FD_ANGLE / sensitivity;
    let lp = sim
        .loss(&case.experiment(perturbed(&case.blocks, &v, h)), &loss)
        .unwrap();
    let lm = sim
        .loss(&case.experiment(perturbed(&case.blocks, &v, -h)), &loss)
        .unwrap();
    let numeric = (lp - lm) / (2.0 * h);
    check_fd("controls", analytic, numeric, LOSS_ROUNDOFF * scale / h)?;

    // B1 scale and B0 offset of each member, one at a time (a new simulator per value), with
    // steps moving the dynamics by FD_ANGLE: B1 scales the RF rotation angle, B0 adds
    // 2π·Δν0·(total evolution time including the acquisition).
    let rf_angle: f64 = case
        .blocks
        .iter()
        .map(|b| match b {
            Block::Pulse { dt, ux, uy } | Block::SlicePulse { dt, ux, uy, .. } => {
                2.0 * PI * dt * ux.iter().zip(uy).map(|(x, y)| x.hypot(*y)).sum::<f64>()
            }
            Block::Hard { flip, .. } => flip.abs(),
            Block::Delay { .. } | Block::Filter { .. } => 0.0,
        })
        .sum();
    let duration: f64 = case
        .blocks
        .iter()
        .map(|b| match b {
            Block::Pulse { dt, ux, .. } | Block::SlicePulse { dt, ux, .. } => dt * ux.len() as f64,
            Block::Delay { duration } => *duration,
            Block::Hard { .. } | Block::Filter { .. } => 0.0,
        })
        .sum::<f64>()
        + (POINTS - 1) as f64 * DWELL;
    let h_b1 = (FD_ANGLE / rf_angle).min(1e-3);
    let h_b0 = FD_ANGLE / (2.0 * PI * duration);
    let loss_with = |members: Vec<Member>| {
        let mut sim = case.simulator(members);
        sim.loss(&exp, &loss).unwrap()
    };
    for m in 0..members.len() {
        let shifted = |db1: f64, db0: f64| {
            let mut ms = members.clone();
            ms[m].b1 += db1;
            ms[m].b0_hz += db0;
            ms
        };
        let lp = loss_with(shifted(h_b1, 0.0));
        let lm = loss_with(shifted(-h_b1, 0.0));
        let floor = LOSS_ROUNDOFF * scale / h_b1;
        check_fd(
            &format!("b1 of member {m}"),
            grad.b1[m],
            (lp - lm) / (2.0 * h_b1),
            floor,
        )?;
        let lp = loss_with(shifted(0.0, h_b0));
        let lm = loss_with(shifted(0.0, -h_b0));
        let floor = LOSS_ROUNDOFF * scale / h_b0;
        check_fd(
            &format!("b0 of member {m}"),
            grad.b0[m],
            (lp - lm) / (2.0 * h_b0),
            floor,
        )?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn final_state_is_hermitian_and_unitarily_equivalent_to_fz(case in case()) {
        check_final_state(&case)?;
    }

    #[test]
    fn gradient_matches_central_differences(case in case()) {
        check_gradient(&case)?;
    }

    /// Coherence filters (ideal crushers) split the propagation into chains and make ρ
    /// non-Hermitian; the gradient must stay exact through them.
    #[test]
    fn gradient_through_coherence_filters_matches_central_differences(
        case in case(),
        orders in prop::sample::select(vec![vec![-1], vec![1], vec![0], vec![-1, 1], vec![0, -1], vec![-2, 1]]),
        position in 1usize..4,
    ) {
        let mut case = case;
        let at = position.min(case.blocks.len());
        case.blocks.insert(at, Block::Filter { orders });
        check_gradient(&case)?;
    }
}
