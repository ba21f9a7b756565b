//! The simulator: forward propagation of every (ensemble member × fragment) task, FID
//! acquisition, and the exact adjoint (backward) pass that turns ∂L/∂FID into gradients with
//! respect to every control ux\[k\], uy\[k\] of every shaped pulse, every member's B1 scale and its
//! B0 offset.
//!
//! # Model (DESIGN.md conventions)
//! - ρ0 = Fz. RF segment k: H = H0 + b1·(ux\[k\] Fx + uy\[k\] Fy) + Δν0·Fz, U = exp(−i2π·dt·H),
//!   ρ ← U ρ Uᴴ. Delays evolve under H0 + Δν0 Fz. Ideal hard pulses rotate by b1·θ about the
//!   axis at phase φ, instantaneously.
//! - Signal of a fragment with n spins and weight w: s(t) = w·Tr[ρ(t) F+]/2^(n−2)·e^{−π·lw·t},
//!   free evolution under H0 + Δν0 Fz during acquisition; a molecule's FID is the sum of its
//!   fragments' FIDs.
//!
//! # Adjoint, in three products per segment
//! With λ_k the costate (λ_N = ∂L/∂ρ_N, Hermitian, dL = Tr[λ dρ]; λ_k = U_kᴴ λ_{k+1} U_k), a
//! parameter θ of segment k contributes 2·Re Tr[ρ_k U_kᴴ λ_{k+1} ∂U_k/∂θ]
//! = 2·Re Tr[C_k · U_kᴴ∂U_k/∂θ] with C_k = ρ_k λ_k. Because both ρ and λ are carried by the
//! same unitaries, C_{k+1} = U_k C_k U_kᴴ: C evolves like a density matrix, *forward* in time,
//! from C_0 = ρ_0 λ_0 with λ_0 = P_Nᴴ λ_N P_N, P_N = U_{N−1}⋯U_0. So a gradient costs one
//! forward sweep accumulating P (1 product per segment), then a second forward sweep carrying C
//! (2 products per segment) — no stored trajectory and no backward sweep. The generators
//! U_kᴴ∂U_k come from the amplitude families of [`super::propagator`] (exact derivatives of the
//! matrix exponential); for delays and ideal pulses they are closed-form (−i2πτ·Fz for B0,
//! −iθ·F_φ for B1), since those generators commute with their propagators.
//!
//! # Determinism and parallelism
//! Tasks run in parallel (rayon) over members and fragments; each task is computed by one thread
//! with its own scratch, and all reductions run afterwards in task order, so results are
//! bit-identical between runs and for any thread count. The per-segment loops allocate nothing.
//! A product of two d×d complex matrices costs 8d³ flops; a segment costs 3 of them for a
//! loss+gradient (1 for a loss alone), plus O(degree·d²) table work.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use num_complex::Complex64 as C64;
use rayon::prelude::*;

use super::error::{PhysicsError, finite, positive};
use super::hamiltonian::{FreeEigen, free_hamiltonian_in};
use super::kernels::{
    correlate, horner, poly_dot, poly_dot2, rotate, scale_rows_blocks, synthesize,
};
use super::linalg::{CMat, Op, ZERO, gemm};
use super::operators::SpinOperators;
use super::propagator::AmplitudeFamily;
use super::signals::{SignalLoss, Signals};
use super::spin_system::{Field, Molecule, Nucleus};

/// One element of an experiment before acquisition.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Shaped pulse: piecewise-constant segments of duration `dt` (s) with controls in Hz.
    /// Gradients flow to every `ux\[k\]`, `uy\[k\]`.
    Pulse {
        /// Segment duration (s).
        dt: f64,
        /// x controls (Hz).
        ux: Vec<f64>,
        /// y controls (Hz).
        uy: Vec<f64>,
    },
    /// Slice-selective shaped pulse: like [`Block::Pulse`], played under a gradient along
    /// spatial-grid axis `axis`, so a spin at grid coordinate u (in units of the nominal slice
    /// thickness, 0 = slice centre) sees an extra offset u·`hz_per_unit` during the pulse (for a
    /// pulse of bandwidth BW selecting the nominal slice, hz_per_unit = BW). Gradients are off
    /// outside the pulse; chemical-shift displacement and slice profiles follow.
    SlicePulse {
        /// Segment duration (s).
        dt: f64,
        /// x controls (Hz).
        ux: Vec<f64>,
        /// y controls (Hz).
        uy: Vec<f64>,
        /// Grid axis of the gradient.
        axis: usize,
        /// Offset (Hz) per unit of grid coordinate.
        hz_per_unit: f64,
    },
    /// Free evolution for `duration` seconds.
    Delay {
        /// Duration (s).
        duration: f64,
    },
    /// Coherence-pathway selection, as ideal crusher gradients would do it: keeps the elements
    /// ρ_pq whose coherence order M_p − M_q is in `orders` and zeroes the rest. The detected
    /// signal is order −1. Selecting one order makes ρ non-Hermitian, as in the pathway
    /// formalism; gradients remain exact.
    Filter {
        /// Coherence orders to keep.
        orders: Vec<i32>,
    },
    /// Ideal instantaneous pulse: flip `flip` (rad) about the axis at phase `phase` (rad).
    Hard {
        /// Flip angle (rad), scaled by each member's B1.
        flip: f64,
        /// Phase (rad): 0 = x, π/2 = y.
        phase: f64,
    },
}

/// A shaped pulse's (dt, ux, uy, gradient axis and Hz per unit).
type ShapedParts<'a> = (f64, &'a [f64], &'a [f64], Option<(usize, f64)>);

impl Block {
    /// (dt, ux, uy, gradient axis and Hz per unit) of a shaped pulse, slice-selective or not.
    fn shaped(&self) -> Option<ShapedParts<'_>> {
        match self {
            Block::Pulse { dt, ux, uy } => Some((*dt, ux, uy, None)),
            Block::SlicePulse {
                dt,
                ux,
                uy,
                axis,
                hz_per_unit,
            } => Some((*dt, ux, uy, Some((*axis, *hz_per_unit)))),
            _ => None,
        }
    }
}

/// Positions of a spatial grid for slice-selective pulses: the Cartesian product of the
/// coordinates along each axis, in units of the nominal slice thickness. The simulated signal of
/// a member is the mean over the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct SpatialGrid {
    /// Coordinates along each axis.
    pub axes: Vec<Vec<f64>>,
}

impl SpatialGrid {
    /// `n` evenly spaced points across [−half_width, half_width] on each of `axes` axes
    /// (cell centres, so the grid integrates the profile by the midpoint rule).
    pub fn uniform(axes: usize, n: usize, half_width: f64) -> Result<SpatialGrid, PhysicsError> {
        if n == 0 {
            return Err(PhysicsError::invalid("grid points", 0, "must be >= 1"));
        }
        positive("grid half_width", half_width)?;
        let coords: Vec<f64> = (0..n)
            .map(|i| -half_width + (i as f64 + 0.5) * 2.0 * half_width / n as f64)
            .collect();
        Ok(SpatialGrid {
            axes: vec![coords; axes],
        })
    }

    fn positions(&self) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = vec![Vec::new()];
        for axis in &self.axes {
            out = out
                .iter()
                .flat_map(|p| {
                    axis.iter().map(move |&c| {
                        let mut q = p.clone();
                        q.push(c);
                        q
                    })
                })
                .collect();
        }
        out
    }
}

/// FID acquisition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acquisition {
    /// Number of complex points.
    pub points: usize,
    /// Dwell time (s).
    pub dwell: f64,
    /// Lorentzian linewidth (Hz): decay e^{−π·lw·t}.
    pub linewidth_hz: f64,
}

/// A pulse-sequence experiment as seen by the physics core.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Blocks in time order.
    pub blocks: Vec<Block>,
    /// Acquisition after the last block.
    pub acquisition: Acquisition,
}

/// One spectral line: a single-quantum transition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Frequency in the rotating frame (Hz); ppm = carrier + f/f0.
    pub freq_hz: f64,
    /// Complex amplitude at t = 0.
    pub amplitude: C64,
}

/// One ensemble member: a hardware condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// B1 scale (1 = nominal).
    pub b1: f64,
    /// B0 offset (Hz).
    pub b0_hz: f64,
}

impl Member {
    /// The nominal member (b1 = 1, Δν0 = 0).
    pub const NOMINAL: Member = Member {
        b1: 1.0,
        b0_hz: 0.0,
    };
}

/// Tuning knobs of the simulator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimOptions {
    /// Amplitude-family interval parameter η (see [`AmplitudeFamily::new`]).
    pub family_eta: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { family_eta: 0.02 }
    }
}

/// Gradient of a loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// Per shaped pulse (in block order): ∂L/∂ux\[k\].
    pub ux: Vec<Vec<f64>>,
    /// Per shaped pulse: ∂L/∂uy\[k\].
    pub uy: Vec<Vec<f64>>,
    /// Per member: ∂L/∂b1.
    pub b1: Vec<f64>,
    /// Per member: ∂L/∂Δν0 (Hz⁻¹); zero unless requested.
    pub b0: Vec<f64>,
}

/// What the backward pass should compute besides control gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GradientRequest {
    /// Also compute ∂L/∂Δν0 per member (builds extra tables).
    pub b0: bool,
}

/// A fragment prepared for simulation.
#[derive(Debug)]
struct FragmentModel {
    molecule: usize,
    n: usize,
    d: usize,
    /// H0 in the M-ordered basis of `ops`.
    h0: CMat,
    eig: FreeEigen,
    m2: Vec<i32>,
    /// Contiguous total-M blocks of the M-ordered basis.
    blocks: Vec<(usize, usize, i32)>,
    /// weight / 2^(n−2)
    norm: f64,
    /// (p, q, ⟨q|F̃+|p⟩) in the H0 eigenbasis, M_q = M_p + 1.
    transitions: Vec<(usize, usize, C64)>,
    ops: SpinOperators,
}

/// Key of an amplitude family: fragment, dt bits, b0 bits.
type FamilyKey = (usize, u64, u64);

/// Fixed (non-RF-segment) step of a task, prepared per structure: its propagator and the
/// generator Uᴴ∂U/∂θ of its one parameter (B0 for a delay, B1 for an ideal pulse).
#[derive(Debug, Clone)]
enum FixedStep {
    /// Delay: generator −i2πτ·Fz (diagonal, stored as its diagonal).
    Delay { u: CMat, generator_diag: Vec<C64> },
    /// Ideal pulse: generator −iθ·F_φ.
    Hard { u: CMat, generator: CMat },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// Segment k of pulse block `pulse` (index among pulses).
    Segment { pulse: usize, k: usize },
    /// Fixed step index into the task's fixed list.
    Fixed(usize),
    /// Coherence filter: index into the simulator's filter list; ends a propagator chain.
    Filter(usize),
}

/// A run of unitary steps between coherence filters: its propagator, the state entering it, and
/// (after the gradient sweep's backward pass over chains) the costate entering it.
#[derive(Debug)]
struct Chain {
    p: CMat,
    rho_start: CMat,
    lam_start: CMat,
}

/// Per-task state kept between forward and backward.
#[derive(Debug)]
struct Task {
    member: usize,
    fragment: usize,
    /// Index into the spatial grid's positions.
    position: usize,
    /// Fixed-step propagators, shared by all grid positions of a (fragment, member).
    fixed: Arc<Vec<FixedStep>>,
    /// Amplitude family of each pulse block.
    families: Vec<usize>,
    /// Transition frequencies (Hz) for this member's B0.
    freqs: Vec<f64>,
    /// Propagator chains between coherence filters (one chain without filters).
    chains: Vec<Chain>,
    rho_n: CMat,
    fid: Vec<C64>,
    grad_fid: Vec<C64>,
    grad_ux: Vec<Vec<f64>>,
    grad_uy: Vec<Vec<f64>>,
    grad_b1: f64,
    grad_b0: f64,
}

impl Task {
    /// A task whose matrices and buffers are allocated on first use (a large spatial grid has
    /// many tasks, and most of them never need a costate or an FID of their own).
    #[allow(clippy::too_many_arguments)]
    fn new(
        member: usize,
        fragment: usize,
        position: usize,
        fixed: Arc<Vec<FixedStep>>,
        families: Vec<usize>,
        freqs: Vec<f64>,
        filters: usize,
        pulse_lengths: &[usize],
    ) -> Task {
        Task {
            member,
            fragment,
            position,
            fixed,
            families,
            freqs,
            chains: (0..=filters)
                .map(|_| Chain {
                    p: CMat::zeros(0),
                    rho_start: CMat::zeros(0),
                    lam_start: CMat::zeros(0),
                })
                .collect(),
            rho_n: CMat::zeros(0),
            fid: Vec::new(),
            grad_fid: Vec::new(),
            grad_ux: pulse_lengths.iter().map(|&n| vec![0.0; n]).collect(),
            grad_uy: pulse_lengths.iter().map(|&n| vec![0.0; n]).collect(),
            grad_b1: 0.0,
            grad_b0: 0.0,
        }
    }

    /// Sizes the state matrices for dimension d (allocating only the first time).
    fn ensure_dim(&mut self, d: usize) {
        for m in self
            .chains
            .iter_mut()
            .flat_map(|c| [&mut c.p, &mut c.rho_start, &mut c.lam_start])
            .chain(std::iter::once(&mut self.rho_n))
        {
            if m.dim() != d {
                *m = CMat::zeros(d);
            }
        }
    }
}

/// Per-thread scratch for one dimension.
struct Scratch {
    u: CMat,
    w: CMat,
    x: CMat,
    m: CMat,
    rho: CMat,
    lam: CMat,
    phase: Vec<C64>,
    amp: Vec<C64>,
    ph: Phasors,
}

impl Scratch {
    fn new(d: usize, n: usize) -> Scratch {
        Scratch {
            u: CMat::zeros(d),
            w: CMat::zeros(d),
            x: CMat::zeros(d),
            m: CMat::zeros(d),
            rho: CMat::zeros(d),
            lam: CMat::zeros(d),
            phase: vec![ZERO; 4 * n + 1],
            amp: Vec::new(),
            ph: Phasors::default(),
        }
    }
}

/// The simulator for a fixed set of molecules, field, carrier and ensemble.
pub struct Simulator {
    field: Field,
    carrier_ppm: f64,
    molecules: Vec<Molecule>,
    members: Vec<Member>,
    fragments: Vec<FragmentModel>,
    families: Vec<AmplitudeFamily>,
    family_index: HashMap<FamilyKey, usize>,
    options: SimOptions,
    /// Structure signature of the prepared experiment.
    prepared: Option<Vec<(u8, u64, u64)>>,
    steps: Vec<StepKind>,
    /// Coherence orders kept by each filter step.
    filters: Vec<Vec<i32>>,
    /// Spatial-grid positions (one position at the origin without a grid).
    positions: Vec<Vec<f64>>,
    tasks: Vec<Task>,
    /// Whole-pulse propagators of the last shared forward pass, keyed by (family, pulse, B1
    /// bits) with the controls they were computed from: a pulse whose controls did not change
    /// since the last call (a fixed refocusing pulse while another pulse is optimized) is not
    /// recomputed. Only the entries of the last call are kept.
    prop_cache: HashMap<(usize, usize, u64), CachedPropagator>,
}

/// A whole-pulse propagator and the controls it belongs to.
#[derive(Debug)]
struct CachedPropagator {
    ux: Vec<f64>,
    uy: Vec<f64>,
    u: Arc<CMat>,
}

fn phase_table(phase: &mut [C64], phi: f64, n: usize) {
    // phase[δ + 2n] = e^{−iφ·δ/2}, δ = 2(M_p − M_q) ∈ [−2n, 2n], by powers of e^{−iφ/2}.
    let c = 2 * n;
    phase[c] = C64::new(1.0, 0.0);
    if phi == 0.0 {
        phase.fill(C64::new(1.0, 0.0));
        return;
    }
    let z = C64::from_polar(1.0, -phi / 2.0);
    for k in 1..=c {
        let p = phase[c + k - 1] * z;
        phase[c + k] = p;
        phase[c - k] = p.conj();
    }
}

impl Simulator {
    /// Prepares the molecules (all fragments must be of the observed nucleus, 1H) at `field`
    /// in the frame rotating at `carrier_ppm`, for the given ensemble members.
    pub fn new(
        molecules: Vec<Molecule>,
        field: Field,
        carrier_ppm: f64,
        members: Vec<Member>,
        options: SimOptions,
    ) -> Result<Simulator, PhysicsError> {
        positive("field.f0_mhz", field.f0_mhz)?;
        finite("carrier_ppm", carrier_ppm)?;
        if molecules.is_empty() {
            return Err(PhysicsError::invalid(
                "molecules",
                "[]",
                "need at least one",
            ));
        }
        if members.is_empty() {
            return Err(PhysicsError::invalid("members", "[]", "need at least one"));
        }
        for (i, m) in members.iter().enumerate() {
            positive(format!("members[{i}].b1"), m.b1)?;
            finite(format!("members[{i}].b0_hz"), m.b0_hz)?;
        }
        if !(options.family_eta > 0.0 && options.family_eta <= 1.0) {
            return Err(PhysicsError::invalid(
                "options.family_eta",
                options.family_eta,
                "must be in (0, 1]",
            ));
        }
        let mut fragments = Vec::new();
        for (mi, mol) in molecules.iter().enumerate() {
            mol.validate()?;
            for (fi, frag) in mol.simulation_fragments().iter().enumerate() {
                if let Some(s) = frag.spins.iter().find(|s| s.nucleus != Nucleus::H1) {
                    return Err(PhysicsError::invalid(
                        format!("{}.fragments[{fi}].{}.nucleus", mol.name, s.label),
                        format!("{:?}", s.nucleus),
                        "the simulator is homonuclear 1H",
                    ));
                }
                let n = frag.n_spins();
                let ops = SpinOperators::m_ordered(n);
                let h0 = free_hamiltonian_in(frag, field, carrier_ppm, &ops);
                let eig = FreeEigen::new(&h0, &ops)?;
                let fp = ops.fplus();
                let d = ops.dim();
                let mut tmp = CMat::zeros(d);
                let mut fpt = CMat::zeros(d);
                gemm(&mut tmp, &fp, Op::N, &eig.vectors, Op::N);
                gemm(&mut fpt, &eig.vectors, Op::H, &tmp, Op::N);
                let mut transitions = Vec::new();
                for p in 0..d {
                    for q in 0..d {
                        if (eig.m[q] - eig.m[p] - 1.0).abs() < 1e-9 {
                            transitions.push((p, q, fpt[(q, p)]));
                        }
                    }
                }
                fragments.push(FragmentModel {
                    molecule: mi,
                    n,
                    d,
                    h0,
                    eig,
                    m2: ops.total_m2(),
                    blocks: ops.m_blocks(),
                    norm: frag.weight / 2f64.powi(n as i32 - 2),
                    transitions,
                    ops,
                });
            }
        }
        Ok(Simulator {
            field,
            carrier_ppm,
            molecules,
            members,
            fragments,
            families: Vec::new(),
            family_index: HashMap::new(),
            options,
            prepared: None,
            steps: Vec::new(),
            filters: Vec::new(),
            positions: vec![Vec::new()],
            tasks: Vec::new(),
            prop_cache: HashMap::new(),
        })
    }

    /// The field.
    pub fn field(&self) -> Field {
        self.field
    }

    /// The carrier (ppm).
    pub fn carrier_ppm(&self) -> f64 {
        self.carrier_ppm
    }

    /// The molecules, in signal order.
    pub fn molecules(&self) -> &[Molecule] {
        &self.molecules
    }

    /// The ensemble members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Replaces the ensemble members (validated as in [`Simulator::new`]) without rebuilding
    /// the prepared molecules: amplitude-family tables already built (they depend on B0, not on
    /// B1) are kept, and tasks are re-prepared on the next call. Results are those of a new
    /// simulator with these members. Note that tables accumulate, one set per distinct B0
    /// offset seen; a long-lived caller that visits many offsets should rebuild now and then.
    pub fn set_members(&mut self, members: Vec<Member>) -> Result<(), PhysicsError> {
        if members.is_empty() {
            return Err(PhysicsError::invalid("members", "[]", "need at least one"));
        }
        for (i, m) in members.iter().enumerate() {
            positive(format!("members[{i}].b1"), m.b1)?;
            finite(format!("members[{i}].b0_hz"), m.b0_hz)?;
        }
        self.members = members;
        self.prepared = None;
        Ok(())
    }

    /// Number of simulation tasks (fragments × members × grid positions).
    pub fn task_count(&self) -> usize {
        self.members.len() * self.fragments.len() * self.positions.len()
    }

    /// Simulates slice-selective pulses over this grid from now on (the signal of a member is
    /// the mean over its positions). Tables are shared between positions that see the same
    /// offset, so a 2-D grid of n×n needs only about 2n tables per fragment.
    pub fn set_spatial_grid(&mut self, grid: &SpatialGrid) -> Result<(), PhysicsError> {
        for (a, axis) in grid.axes.iter().enumerate() {
            if axis.is_empty() {
                return Err(PhysicsError::invalid(
                    format!("grid.axes[{a}]"),
                    "[]",
                    "needs a coordinate",
                ));
            }
            for &c in axis {
                finite(format!("grid.axes[{a}]"), c)?;
            }
        }
        self.positions = grid.positions();
        self.prepared = None;
        Ok(())
    }

    /// Matrix-product work of one loss+gradient: Σ over tasks of steps × 3 products × 8d³.
    pub fn flops_per_gradient(&self, experiment: &Experiment) -> f64 {
        let segs: usize = experiment
            .blocks
            .iter()
            .map(|b| match b {
                Block::Pulse { ux, .. } | Block::SlicePulse { ux, .. } => ux.len(),
                _ => 1,
            })
            .sum();
        let per_member: f64 = self
            .fragments
            .iter()
            .map(|f| 8.0 * (f.d as f64).powi(3) * 3.0 * segs as f64)
            .sum();
        per_member * self.members.len() as f64
    }

    fn validate_experiment(experiment: &Experiment) -> Result<(), PhysicsError> {
        let acq = &experiment.acquisition;
        if acq.points == 0 {
            return Err(PhysicsError::invalid(
                "acquisition.points",
                0,
                "must be >= 1",
            ));
        }
        positive("acquisition.dwell", acq.dwell)?;
        finite("acquisition.linewidth_hz", acq.linewidth_hz)?;
        if acq.linewidth_hz < 0.0 {
            return Err(PhysicsError::invalid(
                "acquisition.linewidth_hz",
                acq.linewidth_hz,
                "must be >= 0",
            ));
        }
        for (bi, b) in experiment.blocks.iter().enumerate() {
            match b {
                Block::Pulse { dt, ux, uy } | Block::SlicePulse { dt, ux, uy, .. } => {
                    if let Block::SlicePulse { hz_per_unit, .. } = b {
                        finite(format!("blocks[{bi}].hz_per_unit"), *hz_per_unit)?;
                    }
                    positive(format!("blocks[{bi}].dt"), *dt)?;
                    if ux.len() != uy.len() {
                        return Err(PhysicsError::SizeMismatch {
                            what: format!("blocks[{bi}] uy"),
                            expected: ux.len(),
                            got: uy.len(),
                        });
                    }
                    if ux.is_empty() {
                        return Err(PhysicsError::invalid(
                            format!("blocks[{bi}].ux"),
                            "[]",
                            "a shaped pulse needs at least one segment",
                        ));
                    }
                    // Check first, name the field only on failure (no per-segment allocation).
                    for (k, (&x, &y)) in ux.iter().zip(uy).enumerate() {
                        if !x.is_finite() {
                            finite(format!("blocks[{bi}].ux[{k}]"), x)?;
                        }
                        if !y.is_finite() {
                            finite(format!("blocks[{bi}].uy[{k}]"), y)?;
                        }
                    }
                }
                Block::Delay { duration } => {
                    finite(format!("blocks[{bi}].duration"), *duration)?;
                    if *duration < 0.0 {
                        return Err(PhysicsError::invalid(
                            format!("blocks[{bi}].duration"),
                            duration,
                            "must be >= 0",
                        ));
                    }
                }
                Block::Filter { orders } => {
                    if orders.is_empty() {
                        return Err(PhysicsError::invalid(
                            format!("blocks[{bi}].orders"),
                            "[]",
                            "a coherence filter must keep at least one order",
                        ));
                    }
                }
                Block::Hard { flip, phase } => {
                    finite(format!("blocks[{bi}].flip"), *flip)?;
                    finite(format!("blocks[{bi}].phase"), *phase)?;
                }
            }
        }
        Ok(())
    }

    fn family_for(
        &mut self,
        fragment: usize,
        dt: f64,
        b0: f64,
        with_z: bool,
    ) -> Result<usize, PhysicsError> {
        let key = (fragment, dt.to_bits(), b0.to_bits());
        if let Some(&i) = self.family_index.get(&key) {
            if with_z && !self.families[i].has_z() {
                let f = &self.fragments[fragment];
                self.families[i] =
                    AmplitudeFamily::new(&f.h0, &f.ops, dt, b0, self.options.family_eta, true)?;
            }
            return Ok(i);
        }
        let f = &self.fragments[fragment];
        let fam = AmplitudeFamily::new(&f.h0, &f.ops, dt, b0, self.options.family_eta, with_z)?;
        self.families.push(fam);
        let i = self.families.len() - 1;
        self.family_index.insert(key, i);
        Ok(i)
    }

    /// Prepares tasks, fixed propagators and amplitude families for `experiment`.
    fn prepare(&mut self, experiment: &Experiment, want_b0: bool) -> Result<(), PhysicsError> {
        Self::validate_experiment(experiment)?;
        let acq = experiment.acquisition;
        let signature: Vec<(u8, u64, u64)> = experiment
            .blocks
            .iter()
            .map(|b| match b {
                Block::Pulse { dt, ux, .. } => (0u8, dt.to_bits(), ux.len() as u64),
                Block::SlicePulse {
                    dt,
                    ux,
                    axis,
                    hz_per_unit,
                    ..
                } => (
                    6u8,
                    dt.to_bits() ^ hz_per_unit.to_bits().rotate_left(17),
                    ((*axis as u64) << 32) | ux.len() as u64,
                ),
                Block::Delay { duration } => (1u8, duration.to_bits(), 0),
                Block::Hard { flip, phase } => (2u8, flip.to_bits(), phase.to_bits()),
                Block::Filter { orders } => (
                    5u8,
                    orders
                        .iter()
                        .fold(0u64, |h, &o| h.rotate_left(7) ^ (o as i64 as u64)),
                    orders.len() as u64,
                ),
            })
            .chain([
                (3u8, acq.dwell.to_bits(), acq.points as u64),
                (4u8, acq.linewidth_hz.to_bits(), 0),
            ])
            .collect();

        // Amplitude families: one per (fragment, dt, B0); cover this experiment's amplitudes.
        let nm = self.members.len();
        let np = self.positions.len();
        let mut task_families: Vec<Vec<usize>> = Vec::with_capacity(self.task_count());
        let mut need: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        for fi in 0..self.fragments.len() {
            for mi in 0..nm {
                for pi in 0..np {
                    let member = self.members[mi];
                    let mut fams = Vec::new();
                    for (bi, b) in experiment.blocks.iter().enumerate() {
                        let Some((dt, ux, uy, gradient)) = b.shaped() else {
                            continue;
                        };
                        let offset = match gradient {
                            None => 0.0,
                            Some((axis, hz)) => {
                                let Some(&u) = self.positions[pi].get(axis) else {
                                    return Err(PhysicsError::invalid(
                                        format!("blocks[{bi}].axis"),
                                        axis,
                                        format!(
                                            "the spatial grid has {} axes",
                                            self.positions[pi].len()
                                        ),
                                    ));
                                };
                                u * hz
                            }
                        };
                        let idx = self.family_for(fi, dt, member.b0_hz + offset, want_b0)?;
                        let fam = &self.families[idx];
                        let set = need.entry(idx).or_default();
                        for (x, y) in ux.iter().zip(uy) {
                            set.insert(fam.interval_of(member.b1 * x.hypot(*y))?);
                        }
                        fams.push(idx);
                    }
                    task_families.push(fams);
                }
            }
        }
        let mut work: Vec<(usize, Vec<usize>)> = need
            .into_iter()
            .map(|(i, s)| (i, s.into_iter().collect()))
            .collect();
        work.sort_by_key(|w| w.0);
        {
            let mut slots: Vec<Option<&mut AmplitudeFamily>> =
                self.families.iter_mut().map(Some).collect();
            let jobs: Vec<(&mut AmplitudeFamily, &[usize])> = work
                .iter()
                .filter_map(|(i, idx)| slots[*i].take().map(|f| (f, idx.as_slice())))
                .collect();
            let results: Vec<Result<(), PhysicsError>> = jobs
                .into_par_iter()
                .map(|(f, idx)| f.ensure_intervals(idx))
                .collect();
            for r in results {
                r?;
            }
        }

        if self.prepared.as_ref() == Some(&signature) {
            return Ok(());
        }

        // Step list.
        let mut steps = Vec::new();
        let mut pulse = 0;
        let mut fixed_count = 0;
        let mut filters = Vec::new();
        for b in &experiment.blocks {
            match b {
                Block::Pulse { ux, .. } | Block::SlicePulse { ux, .. } => {
                    steps.extend((0..ux.len()).map(|k| StepKind::Segment { pulse, k }));
                    pulse += 1;
                }
                Block::Filter { orders } => {
                    steps.push(StepKind::Filter(filters.len()));
                    filters.push(orders.clone());
                }
                _ => {
                    steps.push(StepKind::Fixed(fixed_count));
                    fixed_count += 1;
                }
            }
        }
        let pulse_lengths: Vec<usize> = experiment
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Pulse { ux, .. } | Block::SlicePulse { ux, .. } => Some(ux.len()),
                _ => None,
            })
            .collect();

        // Tasks with their fixed propagators.
        let mut tasks: Vec<Task> = Vec::with_capacity(self.task_count());
        for (ti, fams) in task_families.into_iter().enumerate() {
            let (fi, mi, pi) = (ti / (nm * np), (ti / np) % nm, ti % np);
            let f = &self.fragments[fi];
            let member = self.members[mi];
            if pi > 0 {
                // Another position of the same (fragment, member): share what does not depend
                // on the position.
                let first = &tasks[ti - pi];
                let (fixed, freqs) = (first.fixed.clone(), first.freqs.clone());
                tasks.push(Task::new(
                    mi,
                    fi,
                    pi,
                    fixed,
                    fams,
                    freqs,
                    filters.len(),
                    &pulse_lengths,
                ));
                continue;
            }
            let mut fixed = Vec::with_capacity(fixed_count);
            for b in &experiment.blocks {
                match b {
                    Block::Delay { duration } => fixed.push(FixedStep::Delay {
                        u: f.eig.propagator(*duration, member.b0_hz),
                        generator_diag: f
                            .m2
                            .iter()
                            .map(|&m2| {
                                C64::new(
                                    0.0,
                                    -2.0 * std::f64::consts::PI * duration * m2 as f64 / 2.0,
                                )
                            })
                            .collect(),
                    }),
                    Block::Hard { flip, phase } => fixed.push(FixedStep::Hard {
                        u: f.ops.rotation(member.b1 * flip, *phase),
                        generator: {
                            let mut g = f.ops.f_phi(*phase);
                            g.scale(C64::new(0.0, -flip));
                            g
                        },
                    }),
                    Block::Pulse { .. } | Block::SlicePulse { .. } | Block::Filter { .. } => {}
                }
            }
            let energies = f.eig.shifted_energies(member.b0_hz);
            let freqs = f
                .transitions
                .iter()
                .map(|&(p, q, _)| energies[q] - energies[p])
                .collect();
            tasks.push(Task::new(
                mi,
                fi,
                pi,
                Arc::new(fixed),
                fams,
                freqs,
                filters.len(),
                &pulse_lengths,
            ));
        }
        self.tasks = tasks;
        self.steps = steps;
        self.filters = filters;
        self.prepared = Some(signature);
        Ok(())
    }

    /// Simulates every member × molecule FID.
    pub fn simulate(&mut self, experiment: &Experiment) -> Result<Signals, PhysicsError> {
        self.prepare(experiment, false)?;
        self.run_forward_shared(experiment);
        Ok(self.collect_signals(experiment.acquisition.points))
    }

    /// Forward-only simulation that computes each shaped pulse's propagator once per distinct
    /// (table, B1 scale) — i.e. once per slice offset, not once per grid position — and then
    /// propagates every task block by block. Results equal the segment-by-segment sweep to
    /// rounding.
    fn run_forward_shared(&mut self, experiment: &Experiment) {
        let pulses = pulse_controls(experiment);
        // Distinct (family, pulse, b1) keys in first-seen task order.
        let mut keys: Vec<(usize, usize, u64)> = Vec::new();
        let mut index: HashMap<(usize, usize, u64), usize> = HashMap::new();
        let mut task_blocks: Vec<Vec<usize>> = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            let b1 = self.members[task.member].b1.to_bits();
            let ids = task
                .families
                .iter()
                .enumerate()
                .map(|(p, &fam)| {
                    let key = (fam, p, b1);
                    *index.entry(key).or_insert_with(|| {
                        keys.push(key);
                        keys.len() - 1
                    })
                })
                .collect();
            task_blocks.push(ids);
        }
        let fam_fragment: HashMap<usize, usize> = self
            .family_index
            .iter()
            .map(|(&(fragment, _, _), &i)| (i, fragment))
            .collect();
        let cached: Vec<Option<Arc<CMat>>> = keys
            .iter()
            .map(|key| {
                let (ux, uy) = pulses[key.1];
                self.prop_cache
                    .get(key)
                    .filter(|c| c.ux.as_slice() == ux && c.uy.as_slice() == uy)
                    .map(|c| c.u.clone())
            })
            .collect();
        let props: Vec<Arc<CMat>> = keys
            .par_iter()
            .zip(cached.into_par_iter())
            .map_init(ScratchPool::default, |pool, (&(fam, p, b1), hit)| {
                hit.unwrap_or_else(|| {
                    let f = &self.fragments[fam_fragment[&fam]];
                    Arc::new(pulse_propagator(
                        &self.families[fam],
                        pulses[p],
                        f64::from_bits(b1),
                        f,
                        pool,
                    ))
                })
            })
            .collect();
        self.prop_cache = keys
            .iter()
            .zip(&props)
            .map(|(&key, u)| {
                let (ux, uy) = pulses[key.1];
                (
                    key,
                    CachedPropagator {
                        ux: ux.to_vec(),
                        uy: uy.to_vec(),
                        u: u.clone(),
                    },
                )
            })
            .collect();
        let ctx = Ctx {
            fragments: &self.fragments,
            families: &self.families,
            steps: &self.steps,
            filters: &self.filters,
            members: &self.members,
            pulses: &pulses,
            acq: experiment.acquisition,
        };
        let blocks = &experiment.blocks;
        self.tasks
            .par_iter_mut()
            .zip(task_blocks.par_iter())
            .for_each_init(ScratchPool::default, |pool, (task, ids)| {
                ctx.forward_blocks(task, blocks, ids, &props, pool);
            });
        // The acquisition is the same linear map at every grid position, so each (fragment,
        // member) acquires once from Σ_positions ρ_N: the first position's task carries that
        // FID, the others carry zero (signals weight every task by 1/positions).
        let np = self.positions.len();
        let groups: Vec<&mut [Task]> = self.tasks.chunks_mut(np).collect();
        groups
            .into_par_iter()
            .for_each_init(ScratchPool::default, |pool, group| {
                let f = &ctx.fragments[group[0].fragment];
                let s = pool.get(f.n);
                s.m.copy_from(&group[0].rho_n);
                for t in &group[1..] {
                    s.m.axpy(C64::new(1.0, 0.0), &t.rho_n);
                }
                let sum = s.m.clone();
                group[0].fid.resize(ctx.acq.points, ZERO);
                ctx.acquire_state(&sum, &group[0].freqs, f, s, &mut group[0].fid);
                for t in &mut group[1..] {
                    t.fid.clear();
                }
            });
    }

    /// Evaluates a loss of the simulated signals (no gradient).
    pub fn loss(
        &mut self,
        experiment: &Experiment,
        loss: &dyn SignalLoss,
    ) -> Result<f64, PhysicsError> {
        let signals = self.simulate(experiment)?;
        loss.evaluate(&signals, None)
    }

    /// After a forward pass: the loss of the collected signals, and ∂L/∂FID of every task
    /// (a task's share of its member's signal is 1/positions).
    fn evaluate_loss(&mut self, points: usize, loss: &dyn SignalLoss) -> Result<f64, PhysicsError> {
        let signals = self.collect_signals(points);
        let mut grad_signals = Signals::zeros(self.members.len(), self.molecules.len(), points);
        let value = loss.evaluate(&signals, Some(&mut grad_signals))?;
        if !value.is_finite() {
            return Err(PhysicsError::Numerical(format!("loss is {value}")));
        }
        let w = 1.0 / self.positions.len() as f64;
        for task in &mut self.tasks {
            let mol = self.fragments[task.fragment].molecule;
            task.grad_fid.resize(points, ZERO);
            for (g, x) in task
                .grad_fid
                .iter_mut()
                .zip(grad_signals.fid(task.member, mol))
            {
                *g = x * w;
            }
        }
        Ok(value)
    }

    /// Evaluates a loss and its exact gradient with respect to every control, every member's
    /// B1 scale and (if requested) B0 offset.
    pub fn loss_and_gradient(
        &mut self,
        experiment: &Experiment,
        loss: &dyn SignalLoss,
        request: GradientRequest,
    ) -> Result<(f64, Gradient), PhysicsError> {
        self.prepare(experiment, request.b0)?;
        self.run_forward(experiment);
        let value = self.evaluate_loss(experiment.acquisition.points, loss)?;
        self.run_gradient(experiment, request.b0);

        // Reduction in task order (deterministic for any thread count).
        let mut g = Gradient {
            ux: Vec::new(),
            uy: Vec::new(),
            b1: vec![0.0; self.members.len()],
            b0: vec![0.0; self.members.len()],
        };
        for b in &experiment.blocks {
            if let Some((_, ux, _, _)) = b.shaped() {
                g.ux.push(vec![0.0; ux.len()]);
                g.uy.push(vec![0.0; ux.len()]);
            }
        }
        for task in &self.tasks {
            for (p, (gx, gy)) in task.grad_ux.iter().zip(&task.grad_uy).enumerate() {
                for (a, b) in g.ux[p].iter_mut().zip(gx) {
                    *a += b;
                }
                for (a, b) in g.uy[p].iter_mut().zip(gy) {
                    *a += b;
                }
            }
            g.b1[task.member] += task.grad_b1;
            g.b0[task.member] += task.grad_b0;
        }
        Ok((value, g))
    }

    /// Like [`Simulator::loss_and_gradient`], but computes the gradient only with respect to the
    /// controls of the shaped pulses listed in `pulses` (indices among the experiment's shaped
    /// pulses, in block order) — the pulses being designed; the others are fixed. The returned
    /// [`Gradient`] has every pulse's `ux`/`uy` vector, zero for the fixed pulses, and empty
    /// `b1`/`b0` (not computed).
    ///
    /// This is the design path and is much cheaper than the full gradient when fixed pulses
    /// (e.g. slice-selective refocusing) and a spatial grid are present:
    /// - the forward pass uses whole-pulse propagators, computed once per distinct (pulse,
    ///   slice offset, B1) and reused across calls while a pulse's controls are unchanged;
    /// - the C = [ρ, λ] sweep runs only through the chains (runs between coherence filters)
    ///   that contain a designed pulse;
    /// - a chain before the first slice-selective pulse has the same ρ at every grid position,
    ///   and its gradient is linear in λ, so it is swept once per (fragment, member) with the
    ///   costate summed over positions.
    ///
    /// The value is the same loss; gradients agree with [`Simulator::loss_and_gradient`] to
    /// rounding.
    pub fn loss_and_pulse_gradient(
        &mut self,
        experiment: &Experiment,
        loss: &dyn SignalLoss,
        pulses: &[usize],
    ) -> Result<(f64, Gradient), PhysicsError> {
        let shaped: Vec<(usize, bool)> = experiment
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Pulse { ux, .. } => Some((ux.len(), false)),
                Block::SlicePulse { ux, .. } => Some((ux.len(), true)),
                _ => None,
            })
            .collect();
        for &p in pulses {
            if p >= shaped.len() {
                return Err(PhysicsError::invalid(
                    "designed pulse",
                    p,
                    format!("the experiment has {} shaped pulses", shaped.len()),
                ));
            }
        }
        self.prepare(experiment, false)?;
        self.run_forward_shared(experiment);
        let value = self.evaluate_loss(experiment.acquisition.points, loss)?;

        // Chain of each step; which chains hold a designed pulse; which lie before the first
        // position-dependent (slice-selective) pulse.
        let n_chains = self.filters.len() + 1;
        let mut selected = vec![false; n_chains];
        let mut first_slice_chain = n_chains;
        let mut pulse_chain = vec![0; shaped.len()];
        let mut chain = 0;
        for step in &self.steps {
            match *step {
                StepKind::Filter(_) => chain += 1,
                StepKind::Segment { pulse, .. } => {
                    pulse_chain[pulse] = chain;
                    if pulses.contains(&pulse) {
                        selected[chain] = true;
                    }
                    if shaped[pulse].1 {
                        first_slice_chain = first_slice_chain.min(chain);
                    }
                }
                StepKind::Fixed(_) => {}
            }
        }
        let shared: Vec<bool> = (0..n_chains)
            .map(|c| selected[c] && c < first_slice_chain)
            .collect();
        let own: Vec<bool> = (0..n_chains)
            .map(|c| selected[c] && c >= first_slice_chain)
            .collect();

        let pulse_ctl = pulse_controls(experiment);
        let ctx = Ctx {
            fragments: &self.fragments,
            families: &self.families,
            steps: &self.steps,
            filters: &self.filters,
            members: &self.members,
            pulses: &pulse_ctl,
            acq: experiment.acquisition,
        };
        let np = self.positions.len();
        // Chains before the first slice-selective pulse (the shared prefix).
        let prefix = first_slice_chain.min(n_chains);
        // The first position sweeps the shared chains and its own; the others only their own.
        let first_sweeps: Vec<bool> = (0..n_chains).map(|c| shared[c] || own[c]).collect();
        let groups: Vec<&mut [Task]> = self.tasks.chunks_mut(np).collect();
        groups
            .into_par_iter()
            .for_each_init(ScratchPool::default, |pool, group| {
                for t in group.iter_mut() {
                    t.grad_b0 = 0.0;
                    t.grad_b1 = 0.0;
                }
                ctx.group_costates(group, if np > 1 { prefix } else { 0 }, pool);
                let (first, rest) = group.split_at_mut(1);
                ctx.sweep(&mut first[0], false, Some(&first_sweeps), pool);
                if own.iter().any(|&o| o) {
                    for t in rest.iter_mut() {
                        ctx.sweep(t, false, Some(&own), pool);
                    }
                }
            });

        let mut g = Gradient {
            ux: shaped.iter().map(|&(n, _)| vec![0.0; n]).collect(),
            uy: shaped.iter().map(|&(n, _)| vec![0.0; n]).collect(),
            b1: Vec::new(),
            b0: Vec::new(),
        };
        for task in &self.tasks {
            let sweeps_shared = task.position == 0;
            for &p in pulses {
                // A pulse lies in one chain; only the first position sweeps a shared chain.
                let in_shared = shared[pulse_chain[p]];
                if in_shared && !sweeps_shared {
                    continue;
                }
                for (a, b) in g.ux[p].iter_mut().zip(&task.grad_ux[p]) {
                    *a += b;
                }
                for (a, b) in g.uy[p].iter_mut().zip(&task.grad_uy[p]) {
                    *a += b;
                }
            }
        }
        Ok((value, g))
    }

    /// The state ρ_N at the end of the last block for (member, fragment index in simulation
    /// order) in the bit-string basis of [`SpinOperators::new`], at the first grid position,
    /// valid after a call to `simulate` or `loss_and_gradient`.
    pub fn final_state(&self, member: usize, fragment: usize) -> Option<CMat> {
        self.tasks
            .iter()
            .find(|t| t.member == member && t.fragment == fragment && t.position == 0)
            .map(|t| self.fragments[fragment].ops.to_bit_order(&t.rho_n))
    }

    /// Fragment count (in simulation order: molecules in order, coupled fragments then
    /// singlets).
    pub fn fragment_count(&self) -> usize {
        self.fragments.len()
    }

    /// Molecule index of a fragment (simulation order).
    pub fn fragment_molecule(&self, fragment: usize) -> Option<usize> {
        self.fragments.get(fragment).map(|f| f.molecule)
    }

    /// The line list of one (member, fragment) after the last simulation, averaged over the
    /// spatial grid like the signal: every single-quantum transition of H0 + Δν0 Fz with its
    /// frequency (Hz, rotating frame) and complex amplitude at t = 0 (weighted and normalized
    /// like the FID, before line broadening). The FID is exactly
    /// Σ amplitude·e^{(i2πf − π·lw)t} over these lines.
    pub fn lines(&self, member: usize, fragment: usize) -> Option<Vec<Line>> {
        let f = self.fragments.get(fragment)?;
        let mut out: Option<Vec<Line>> = None;
        let w = 1.0 / self.positions.len() as f64;
        let mut tmp = CMat::zeros(f.d);
        let mut rt = CMat::zeros(f.d);
        for task in self
            .tasks
            .iter()
            .filter(|t| t.member == member && t.fragment == fragment)
        {
            let v = &f.eig.vectors;
            gemm(&mut tmp, &task.rho_n, Op::N, v, Op::N);
            gemm(&mut rt, v, Op::H, &tmp, Op::N);
            let lines = out.get_or_insert_with(|| {
                task.freqs
                    .iter()
                    .map(|&freq_hz| Line {
                        freq_hz,
                        amplitude: ZERO,
                    })
                    .collect()
            });
            for (line, &(p, q, c)) in lines.iter_mut().zip(&f.transitions) {
                line.amplitude += rt[(p, q)] * c * f.norm * w;
            }
        }
        out
    }

    fn collect_signals(&self, points: usize) -> Signals {
        let mut s = Signals::zeros(self.members.len(), self.molecules.len(), points);
        let w = 1.0 / self.positions.len() as f64;
        for task in &self.tasks {
            let mol = self.fragments[task.fragment].molecule;
            for (o, x) in s.fid_mut(task.member, mol).iter_mut().zip(&task.fid) {
                *o += x * w;
            }
        }
        s
    }

    fn run_forward(&mut self, experiment: &Experiment) {
        let pulses = pulse_controls(experiment);
        let ctx = Ctx {
            fragments: &self.fragments,
            families: &self.families,
            steps: &self.steps,
            filters: &self.filters,
            members: &self.members,
            pulses: &pulses,
            acq: experiment.acquisition,
        };
        self.tasks
            .par_iter_mut()
            .for_each_init(ScratchPool::default, |pool, task| {
                ctx.forward(task, pool);
            });
    }

    fn run_gradient(&mut self, experiment: &Experiment, want_b0: bool) {
        let pulses = pulse_controls(experiment);
        let ctx = Ctx {
            fragments: &self.fragments,
            families: &self.families,
            steps: &self.steps,
            filters: &self.filters,
            members: &self.members,
            pulses: &pulses,
            acq: experiment.acquisition,
        };
        self.tasks
            .par_iter_mut()
            .for_each_init(ScratchPool::default, |pool, task| {
                ctx.gradient(task, want_b0, pool);
            });
    }
}

fn pulse_controls(experiment: &Experiment) -> Vec<(&[f64], &[f64])> {
    experiment
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Pulse { ux, uy, .. } | Block::SlicePulse { ux, uy, .. } => {
                Some((ux.as_slice(), uy.as_slice()))
            }
            _ => None,
        })
        .collect()
}

/// The propagator of a whole shaped pulse, ∏ R_k V_k R_kᴴ, by the rotating-frame sweep.
fn pulse_propagator(
    fam: &AmplitudeFamily,
    (ux, uy): (&[f64], &[f64]),
    b1: f64,
    f: &FragmentModel,
    pool: &mut ScratchPool,
) -> CMat {
    let s = pool.get(f.n);
    let two_n = 2 * f.n as i32;
    set_identity(&mut s.rho);
    let mut prev_phi = 0.0;
    for (&x, &y) in ux.iter().zip(uy) {
        let (a, phi, _) = polar(b1, x, y);
        fam.eval(a, &mut s.u);
        if phi != prev_phi {
            phase_table(&mut s.phase, prev_phi - phi, f.n);
            scale_rows_blocks(s.rho.data_mut(), f.d, &f.blocks, &s.phase, two_n);
        }
        gemm(&mut s.w, &s.u, Op::N, &s.rho, Op::N);
        std::mem::swap(&mut s.rho, &mut s.w);
        prev_phi = phi;
    }
    if prev_phi != 0.0 {
        phase_table(&mut s.phase, prev_phi, f.n);
        scale_rows_blocks(s.rho.data_mut(), f.d, &f.blocks, &s.phase, two_n);
    }
    s.rho.clone()
}

/// Scratch per spin count, created on first use by each rayon worker split.
#[derive(Default)]
struct ScratchPool {
    by_spins: Vec<Option<Scratch>>,
}

impl ScratchPool {
    fn get(&mut self, n: usize) -> &mut Scratch {
        if self.by_spins.len() <= n {
            self.by_spins.resize_with(n + 1, || None);
        }
        self.by_spins[n].get_or_insert_with(|| Scratch::new(1 << n, n))
    }
}

/// Read-only context shared by all tasks of one pass.
struct Ctx<'a> {
    fragments: &'a [FragmentModel],
    families: &'a [AmplitudeFamily],
    steps: &'a [StepKind],
    filters: &'a [Vec<i32>],
    members: &'a [Member],
    pulses: &'a [(&'a [f64], &'a [f64])],
    acq: Acquisition,
}

/// Polar form of a control: (a = b1·|u|, φ, |u|).
#[inline]
fn polar(b1: f64, ux: f64, uy: f64) -> (f64, f64, f64) {
    let r = ux.hypot(uy);
    let phi = if r > 0.0 { uy.atan2(ux) } else { 0.0 };
    (b1 * r, phi, r)
}

impl Ctx<'_> {
    /// Index (into `filters`) of the filter that starts chain `c` (c ≥ 1): filters are numbered
    /// in step order, so it is c − 1.
    fn filter_before(&self, c: usize) -> usize {
        c - 1
    }

    /// Amplitude and phase of segment k of a pulse for this task's member.
    #[inline]
    fn control(&self, task: &Task, pulse: usize, k: usize) -> (f64, f64, f64) {
        let (ux, uy) = self.pulses[pulse];
        polar(self.members[task.member].b1, ux[k], uy[k])
    }

    /// First sweep: P = U_{N−1}⋯U_0 per chain (chains end at coherence filters),
    /// ρ_end = P ρ_start Pᴴ, the filter gives the next chain's ρ_start; then the FID of ρ_N.
    ///
    /// Each U_k = R_k V_k R_kᴴ, so P = R_{N−1}·V_{N−1}·(R_{N−1}ᴴR_{N−2})·V_{N−2}⋯V_0·R_0ᴴ: the
    /// sweep multiplies by V_k (one product) and, between steps, scales rows by the diagonal
    /// R_kᴴR_{k−1} = diag(e^{−i(φ_{k−1}−φ_k)M}) — skipped when the phase does not change.
    /// Fixed steps have φ = 0 and V = U.
    fn forward(&self, task: &mut Task, pool: &mut ScratchPool) {
        let f = &self.fragments[task.fragment];
        task.ensure_dim(f.d);
        let d = f.d;
        let two_n = 2 * f.n as i32;
        let s = pool.get(f.n);
        let rho0 = &mut task.chains[0].rho_start;
        rho0.fill_zero();
        for p in 0..d {
            rho0[(p, p)] = C64::new(f.m2[p] as f64 / 2.0, 0.0);
        }
        set_identity(&mut s.rho);
        let mut chain = 0;
        let mut prev_phi = 0.0;
        for step in self.steps {
            let (phi, v) = match *step {
                StepKind::Segment { pulse, k } => {
                    let (a, phi, _) = self.control(task, pulse, k);
                    self.families[task.families[pulse]].eval(a, &mut s.u);
                    (phi, &s.u)
                }
                StepKind::Fixed(i) => match &task.fixed[i] {
                    FixedStep::Delay { u, .. } | FixedStep::Hard { u, .. } => (0.0, u),
                },
                StepKind::Filter(fi) => {
                    self.close_chain(task, f, s, chain, prev_phi);
                    chain += 1;
                    let next = &mut task.chains[chain].rho_start;
                    next.copy_from(&task.rho_n);
                    coherence_mask(next, &f.m2, &self.filters[fi], 1);
                    set_identity(&mut s.rho);
                    prev_phi = 0.0;
                    continue;
                }
            };
            if phi != prev_phi {
                phase_table(&mut s.phase, prev_phi - phi, f.n);
                scale_rows_blocks(s.rho.data_mut(), d, &f.blocks, &s.phase, two_n);
            }
            gemm(&mut s.w, v, Op::N, &s.rho, Op::N);
            std::mem::swap(&mut s.rho, &mut s.w);
            prev_phi = phi;
        }
        self.close_chain(task, f, s, chain, prev_phi);
        self.acquire(task, f, s);
    }

    /// Forward propagation block by block with precomputed pulse propagators (`props[ids[p]]`
    /// for the p-th shaped pulse), then the FID.
    fn forward_blocks(
        &self,
        task: &mut Task,
        blocks: &[Block],
        ids: &[usize],
        props: &[Arc<CMat>],
        pool: &mut ScratchPool,
    ) {
        let f = &self.fragments[task.fragment];
        task.ensure_dim(f.d);
        let d = f.d;
        let s = pool.get(f.n);
        let rho0 = &mut task.chains[0].rho_start;
        rho0.fill_zero();
        for p in 0..d {
            rho0[(p, p)] = C64::new(f.m2[p] as f64 / 2.0, 0.0);
        }
        set_identity(&mut s.rho);
        // While the accumulated propagator is still the identity, the next one is copied, not
        // multiplied (one product saved per chain).
        let mut identity = true;
        let (mut chain, mut pulse, mut fixed, mut filter) = (0, 0, 0, 0);
        for b in blocks {
            let u = match b {
                Block::Pulse { .. } | Block::SlicePulse { .. } => {
                    pulse += 1;
                    &props[ids[pulse - 1]]
                }
                Block::Delay { .. } | Block::Hard { .. } => {
                    fixed += 1;
                    match &task.fixed[fixed - 1] {
                        FixedStep::Delay { u, .. } | FixedStep::Hard { u, .. } => u,
                    }
                }
                Block::Filter { .. } => {
                    self.close_chain(task, f, s, chain, 0.0);
                    chain += 1;
                    let next = &mut task.chains[chain].rho_start;
                    next.copy_from(&task.rho_n);
                    coherence_mask(next, &f.m2, &self.filters[filter], 1);
                    filter += 1;
                    set_identity(&mut s.rho);
                    identity = true;
                    continue;
                }
            };
            if identity {
                s.rho.copy_from(u);
                identity = false;
            } else {
                gemm(&mut s.w, u, Op::N, &s.rho, Op::N);
                std::mem::swap(&mut s.rho, &mut s.w);
            }
        }
        self.close_chain(task, f, s, chain, 0.0);
    }

    /// Ends chain `chain`: rotates the accumulated propagator (in `s.rho`) back to the lab
    /// frame, stores it, and writes ρ_end = P ρ_start Pᴴ into `task.rho_n`.
    fn close_chain(
        &self,
        task: &mut Task,
        f: &FragmentModel,
        s: &mut Scratch,
        chain: usize,
        prev_phi: f64,
    ) {
        if prev_phi != 0.0 {
            phase_table(&mut s.phase, prev_phi, f.n);
            scale_rows_blocks(s.rho.data_mut(), f.d, &f.blocks, &s.phase, 2 * f.n as i32);
        }
        let c = &mut task.chains[chain];
        c.p.copy_from(&s.rho);
        gemm(&mut s.w, &c.p, Op::N, &c.rho_start, Op::N);
        gemm(&mut task.rho_n, &s.w, Op::N, &c.p, Op::H);
    }

    /// FID of ρ_N: transitions of H0 + Δν0 Fz in its eigenbasis, summed with a phasor
    /// recurrence re-anchored exactly every 64 points.
    fn acquire(&self, task: &mut Task, f: &FragmentModel, s: &mut Scratch) {
        task.fid.resize(self.acq.points, ZERO);
        self.acquire_state(&task.rho_n, &task.freqs, f, s, &mut task.fid);
    }

    /// FID of a state `rho` with this task's transition frequencies into `fid`.
    fn acquire_state(
        &self,
        rho: &CMat,
        freqs: &[f64],
        f: &FragmentModel,
        s: &mut Scratch,
        fid: &mut [C64],
    ) {
        let w = &f.eig.vectors;
        gemm(&mut s.w, rho, Op::N, w, Op::N);
        gemm(&mut s.x, w, Op::H, &s.w, Op::N);
        s.amp.clear();
        s.amp.extend(
            f.transitions
                .iter()
                .map(|&(p, q, c)| s.x[(p, q)] * c * f.norm),
        );
        s.ph.synthesize(freqs, self.acq, &s.amp, fid);
    }

    /// Second sweep: Λ_N from ∂L/∂FID, the costate entering each chain (λ_start = Pᴴλ_end P,
    /// backwards over chains), then forward through the steps with C = [ρ, λ] carried by
    /// C_{k+1} = U_k C_k U_kᴴ (restarted at each chain), reading ∂L/∂θ_k = Re Tr[C_k U_kᴴ∂U_k].
    fn gradient(&self, task: &mut Task, want_b0: bool, pool: &mut ScratchPool) {
        self.costates(task, want_b0, pool);
        self.sweep(task, want_b0, None, pool);
    }

    /// The first half of [`Ctx::gradient`]: ∂L/∂Δν0 through the acquisition (if wanted), Λ_N
    /// and the costate entering every chain.
    fn costates(&self, task: &mut Task, want_b0: bool, pool: &mut ScratchPool) {
        let f = &self.fragments[task.fragment];
        let n = f.n;
        let s = pool.get(n);
        let acq = self.acq;
        let two_pi = 2.0 * std::f64::consts::PI;

        // ∂L/∂Δν0 through the acquisition: every transition shifts by Δν0, ∂s/∂Δν0 = i2πt·s.
        task.grad_b0 = 0.0;
        task.grad_b1 = 0.0;
        if want_b0 {
            let mut g = 0.0;
            for (m, (gm, sm)) in task.grad_fid.iter().zip(&task.fid).enumerate() {
                let t = m as f64 * acq.dwell;
                g += (gm.conj() * C64::new(0.0, two_pi * t) * sm).re;
            }
            task.grad_b0 += g;
        }

        self.final_costate(task, f, s);
        self.chain_costates(task, f, s, 0..task.chains.len());
    }

    /// Λ_N (the costate at the end of the last block) from ∂L/∂FID into `s.lam`.
    fn final_costate(&self, task: &Task, f: &FragmentModel, s: &mut Scratch) {
        // G_tr = Σ_m g_m conj(φ_tr(m)); Γ_pq = G_tr conj(c_pq); λ_N = herm(W Γᴴ Wᴴ).
        s.ph.correlate(&task.freqs, self.acq, &task.grad_fid, &mut s.amp);
        s.m.fill_zero();
        for (gt, &(p, q, c)) in s.amp.iter().zip(&f.transitions) {
            s.m[(q, p)] = gt.conj() * c * f.norm;
        }
        // Λ_N = W Γᴴ Wᴴ: dL = Re Tr[Λ_N dρ_N] for any (also non-Hermitian) dρ_N.
        let w = &f.eig.vectors;
        gemm(&mut s.x, w, Op::N, &s.m, Op::N);
        gemm(&mut s.lam, &s.x, Op::N, w, Op::H);
    }

    /// Backward over chains from the costate in `s.lam` (entering the end of the last chain of
    /// `chains`): λ_start = Pᴴ λ_end P for each chain of the range, last first; a filter's
    /// adjoint keeps the opposite orders (Tr[A·mask_S(B)] = Tr[mask_{−S}(A)·B]). On return, if
    /// the range starts above 0, `s.lam` holds the costate entering the end of the chain before.
    fn chain_costates(
        &self,
        task: &mut Task,
        f: &FragmentModel,
        s: &mut Scratch,
        chains: std::ops::Range<usize>,
    ) {
        for c in chains.rev() {
            let ch = &mut task.chains[c];
            gemm(&mut s.x, &ch.p, Op::H, &s.lam, Op::N);
            gemm(&mut ch.lam_start, &s.x, Op::N, &ch.p, Op::N);
            if c > 0 {
                s.lam.copy_from(&ch.lam_start);
                let fi = self.filter_before(c);
                coherence_mask(&mut s.lam, &f.m2, &self.filters[fi], -1);
            }
        }
    }

    /// Costates of one (fragment, member) group of grid positions for the design path: Λ_N is
    /// the same at every position (one acquisition map, one ∂L/∂FID), so it is computed once;
    /// each position runs backward through chains `shared..`; the costates entering the shared
    /// prefix (chains `..shared`, the same ρ at every position) are summed over positions and
    /// carried through the prefix once, into the first position's task.
    fn group_costates(&self, group: &mut [Task], shared: usize, pool: &mut ScratchPool) {
        let f = &self.fragments[group[0].fragment];
        let s = pool.get(f.n);
        self.final_costate(&group[0], f, s);
        if shared == 0 {
            s.w.copy_from(&s.lam);
            for t in group.iter_mut() {
                s.lam.copy_from(&s.w);
                let n = t.chains.len();
                self.chain_costates(t, f, s, 0..n);
            }
            return;
        }
        // s.w: Λ_N; s.rho: Σ over positions of the costate entering the prefix.
        s.w.copy_from(&s.lam);
        s.rho.fill_zero();
        for t in group.iter_mut() {
            s.lam.copy_from(&s.w);
            let n = t.chains.len();
            self.chain_costates(t, f, s, shared..n);
            s.rho.axpy(C64::new(1.0, 0.0), &s.lam);
        }
        std::mem::swap(&mut s.lam, &mut s.rho);
        self.chain_costates(&mut group[0], f, s, 0..shared);
    }

    /// The second half of [`Ctx::gradient`]: the forward sweep of C = [ρ, λ] through the steps
    /// of the chains selected by `chains` (all when None), reading every control gradient (and
    /// the B1 and B0 gradients) of those chains. Gradients of the controls of skipped chains
    /// are left as they were.
    fn sweep(
        &self,
        task: &mut Task,
        want_b0: bool,
        chains: Option<&[bool]>,
        pool: &mut ScratchPool,
    ) {
        let f = &self.fragments[task.fragment];
        let member = self.members[task.member];
        let d = f.d;
        let n = f.n;
        let s = pool.get(n);
        let selected = |c: usize| chains.is_none_or(|sel| sel[c]);
        if selected(0) {
            chain_commutator(&task.chains[0], &mut s.rho, &mut s.w);
        }

        // s.rho holds C̃_k = R_kᴴ C_k R_k with C_k = [ρ_k, λ_k], in the segment's rotating frame:
        // C̃_{k+1} = (R_{k+1}ᴴR_k)·V_k C̃_k V_kᴴ·(R_kᴴR_{k+1}), and the generator tables are stored
        // so that a flat dot with C̃_k's data is Re Tr[C_k U_kᴴ∂U_k] = ∂L/∂θ_k.
        let two_n = 2 * n as i32;
        let mut prev_phi = 0.0;
        let mut chain = 0;
        for step in self.steps {
            let phi = match *step {
                StepKind::Segment { pulse, k } => self.control(task, pulse, k).1,
                StepKind::Fixed(_) => 0.0,
                StepKind::Filter(_) => {
                    chain += 1;
                    if selected(chain) {
                        chain_commutator(&task.chains[chain], &mut s.rho, &mut s.w);
                    }
                    prev_phi = 0.0;
                    continue;
                }
            };
            if !selected(chain) {
                continue;
            }
            if phi != prev_phi {
                phase_table(&mut s.phase, prev_phi - phi, n);
                rotate(s.rho.data_mut(), d, &f.blocks, &s.phase, two_n);
            }
            prev_phi = phi;
            match *step {
                StepKind::Segment { pulse, k } => {
                    let (a, phi, r) = self.control(task, pulse, k);
                    let fam = &self.families[task.families[pulse]];
                    let (iv, t) = fam.locate(a);
                    let (gx, gy) = poly_dot2(&iv.dx, &iv.dy, iv.degree, t, s.rho.as_f64());
                    let (sn, cs) = phi.sin_cos();
                    task.grad_ux[pulse][k] = member.b1 * (cs * gx - sn * gy);
                    task.grad_uy[pulse][k] = member.b1 * (sn * gx + cs * gy);
                    task.grad_b1 += r * gx;
                    if let (true, Some(dz)) = (want_b0, &iv.dz) {
                        task.grad_b0 += poly_dot(dz, iv.degree, t, s.rho.as_f64());
                    }
                    horner(&iv.v, iv.degree, t, s.u.as_f64_mut());
                    conjugate_in_place(&mut s.rho, &mut s.w, &s.u);
                }
                StepKind::Filter(_) => {}
                StepKind::Fixed(i) => match &task.fixed[i] {
                    FixedStep::Delay { u, generator_diag } => {
                        if want_b0 {
                            let tr: C64 = (0..d).map(|p| s.rho[(p, p)] * generator_diag[p]).sum();
                            task.grad_b0 += tr.re;
                        }
                        conjugate_in_place(&mut s.rho, &mut s.w, u);
                    }
                    FixedStep::Hard { u, generator } => {
                        task.grad_b1 += s.rho.trace_product(generator).re;
                        conjugate_in_place(&mut s.rho, &mut s.w, u);
                    }
                },
            }
        }
    }
}

/// C = [ρ_start, λ_start] of a chain into `c` (two products; `w` is scratch).
fn chain_commutator(ch: &Chain, c: &mut CMat, w: &mut CMat) {
    gemm(c, &ch.rho_start, Op::N, &ch.lam_start, Op::N);
    gemm(w, &ch.lam_start, Op::N, &ch.rho_start, Op::N);
    for (a, b) in c.data_mut().iter_mut().zip(w.data()) {
        *a -= b;
    }
}

/// Zeroes every element whose coherence order (M_p − M_q)·sign is not in `orders`.
fn coherence_mask(x: &mut CMat, m2: &[i32], orders: &[i32], sign: i32) {
    let d = x.dim();
    for q in 0..d {
        for p in 0..d {
            let order = sign * (m2[p] - m2[q]) / 2;
            if !orders.contains(&order) {
                x[(p, q)] = ZERO;
            }
        }
    }
}

fn set_identity(x: &mut CMat) {
    x.fill_zero();
    for p in 0..x.dim() {
        x[(p, p)] = C64::new(1.0, 0.0);
    }
}

/// x ← U x Uᴴ using `w` as scratch (two products).
#[inline]
fn conjugate_in_place(x: &mut CMat, w: &mut CMat, u: &CMat) {
    gemm(w, u, Op::N, x, Op::N);
    gemm(x, w, Op::N, u, Op::H);
}

/// Damped phasors z_tr(m) = exp((i2π f_tr − π lw)·m·dwell) of one task's transitions, in split
/// (re, im) arrays padded to a multiple of 8, advanced by a per-transition step and re-anchored
/// exactly every [`Phasors::ANCHOR`] points (bounded rounding drift).
#[derive(Default)]
struct Phasors {
    ar: Vec<f64>,
    ai: Vec<f64>,
    sr: Vec<f64>,
    si: Vec<f64>,
    zr: Vec<f64>,
    zi: Vec<f64>,
    rate: Vec<C64>,
}

impl Phasors {
    const ANCHOR: usize = 256;

    fn setup(&mut self, freqs: &[f64], acq: Acquisition) {
        let nt = freqs.len().div_ceil(8) * 8;
        let pi = std::f64::consts::PI;
        self.rate.clear();
        self.rate.extend(
            freqs
                .iter()
                .map(|f| C64::new(-pi * acq.linewidth_hz, 2.0 * pi * f)),
        );
        for v in [
            &mut self.ar,
            &mut self.ai,
            &mut self.sr,
            &mut self.si,
            &mut self.zr,
            &mut self.zi,
        ] {
            v.clear();
            v.resize(nt, 0.0);
        }
        for (i, r) in self.rate.iter().enumerate() {
            let s = (*r * acq.dwell).exp();
            self.sr[i] = s.re;
            self.si[i] = s.im;
        }
        for i in freqs.len()..nt {
            self.sr[i] = 1.0;
        }
    }

    fn anchor(&mut self, t: f64) {
        for (i, r) in self.rate.iter().enumerate() {
            let z = (*r * t).exp();
            self.zr[i] = z.re;
            self.zi[i] = z.im;
        }
    }

    /// fid[m] = Σ_tr amp_tr·z_tr(m).
    fn synthesize(&mut self, freqs: &[f64], acq: Acquisition, amp: &[C64], fid: &mut [C64]) {
        self.setup(freqs, acq);
        for (i, a) in amp.iter().enumerate() {
            self.ar[i] = a.re;
            self.ai[i] = a.im;
        }
        for (b, out) in fid.chunks_mut(Self::ANCHOR).enumerate() {
            self.anchor((b * Self::ANCHOR) as f64 * acq.dwell);
            synthesize(
                &self.ar,
                &self.ai,
                &self.sr,
                &self.si,
                &mut self.zr,
                &mut self.zi,
                out,
            );
        }
    }

    /// out_tr = Σ_m g_m·conj(z_tr(m)).
    fn correlate(&mut self, freqs: &[f64], acq: Acquisition, g: &[C64], out: &mut Vec<C64>) {
        self.setup(freqs, acq);
        // ar/ai accumulate the result.
        for (b, gb) in g.chunks(Self::ANCHOR).enumerate() {
            self.anchor((b * Self::ANCHOR) as f64 * acq.dwell);
            correlate(
                gb,
                &self.sr,
                &self.si,
                &mut self.zr,
                &mut self.zi,
                &mut self.ar,
                &mut self.ai,
            );
        }
        out.clear();
        out.extend((0..freqs.len()).map(|i| C64::new(self.ar[i], self.ai[i])));
    }
}
