//! Product-operator analysis of density matrices: which (multi-spin) states a sequence — or an
//! optimiser — actually uses.
//!
//! A density matrix ρ of n spins-1/2 (n ≤ 8) is expanded exactly in one of two complete,
//! orthogonal product-operator bases, and the largest terms are listed in the textbook form
//! `0.38 I5x − 1.32 I1y I2y I5x`.
//!
//! # Basis and normalization (Sørensen product operators)
//! Every basis operator is a product over the spins of one factor per spin:
//! - [`Basis::Cartesian`]: E (identity), I_x, I_y, I_z;
//! - [`Basis::Shift`]: E, I_+ = I_x + iI_y, I_− = I_x − iI_y, I_z — natural for the
//!   coherence-order-selected (non-Hermitian) states of [`Block::Filter`].
//!
//! With k non-identity factors the operator is **B = 2^(k−1) · Π I_{j,α_j}** (Sørensen et al.,
//! Prog. NMR Spectrosc. 16, 163 (1983)): Ix, 2 I1y I2z, 4 I1x I2z I3z, … and ½E for k = 0.
//! In the Cartesian basis all 4^n operators are Hermitian and mutually orthogonal with the
//! *same* Hilbert–Schmidt norm Tr(BᴴB) = 2^(n−2); so the expansion ρ = Σ c_a B_a has
//! coefficients c_a = Tr(B_aᴴ ρ) / 2^(n−2), i.e. the coefficients of the orthonormal basis
//! B_a/2^(n/2−1) scaled by one common factor. That factor is chosen so that the numbers mean
//! something to a physicist:
//! - the simulator's thermal equilibrium ρ0 = Fz has coefficient **1 on every I_jz**;
//! - a state with coefficient c on I_jx gives FID amplitude c (the simulator's signal is
//!   Tr[ρF+]/2^(n−2)), i.e. the coefficient is in units of one proton's fully excited signal.
//!
//! The shift basis uses the same B = 2^(k−1)·Π I_{j,α_j} and c_a = Tr(B_aᴴρ)/Tr(B_aᴴB_a);
//! its operators are orthogonal but not of equal norm (I_± are not Hermitian), and
//! I_x = ½(I_+ + I_−), so an x-magnetisation of 1 reads `0.5 I1+ + 0.5 I1−`.
//!
//! A term is printed without the factor 2^(k−1): `−1.32 I1y I2y I5x` means −1.32·4·I1y·I2y·I5x.
//!
//! Worked example: one spin, ρ0 = Iz. An ideal 90° pulse about y (phase π/2) gives ρ = Ix,
//! whose decomposition has the single term `1 I1x` (c = 1, everything else 0). With two weakly
//! coupled spins (coupling J, shifts refocused by a 180° pulse about x) the in-phase I1x
//! evolves into I1x cos(πJt) + 2 I1y I2z sin(πJt), and likewise I2x; after t = 1/(2J) the
//! list reads `1 I1y I2z + 1 I1z I2y` (two antiphase terms, each of coefficient 1).
//!
//! # Non-Hermitian states and the identity
//! Coefficients are complex in general ([`Term::coefficient`]); for a Hermitian ρ the Cartesian
//! coefficients are real up to rounding. The identity component (½E, coefficient Tr ρ/2^(n−1))
//! is part of [`decompose`]'s complete output but is usually uninformative (Tr ρ = 0 for every
//! state the simulator produces from Fz); [`without_identity`] drops it, and [`state_report`]
//! never shows it.
//!
//! # Spin numbering and formatting
//! [`Term::factors`] holds **0-based** spin indices in the fragment's order (the order of
//! [`Fragment::spins`] and of the simulator's bit-string basis, spin 1 = most significant bit);
//! printing numbers them from 1 (`I1`…`In`) or uses spin names (`Ix(H2)`). Signs between terms
//! and the lowering operator are printed with the Unicode minus sign `−` (U+2212); only the
//! exponent of scientific notation keeps Rust's ASCII form (`2.500e-5`).
//! Numbers have 4 significant digits with trailing zeros removed (`1`, `0.7071`, `−1.32`),
//! and scientific notation below 1e−3 or from 1e5 (`2.500e-5`). A coefficient is printed as
//! a real number when its imaginary part is below 1e−12 of the largest |c| in the list, as an
//! imaginary number (`0.5i`) when its real part is, and as `(a+bi)` otherwise.
//!
//! # Cost
//! The coefficients are computed by a fast separable transform (one 4×4 change of basis per
//! spin applied to the 4^n matrix entries): O(n·4^n) work, about 10⁷ complex multiply-adds for
//! n = 8, with no per-term matrices.
//!
//! [`Block::Filter`]: crate::physics::Block::Filter
//! [`Fragment::spins`]: crate::physics::Fragment::spins

use std::cmp::Ordering;
use std::fmt::Write as _;

use num_complex::Complex64 as C64;

use crate::physics::linalg::{CMat, ONE, ZERO};
use crate::physics::operators::SpinOperators;
use crate::physics::spin_system::MAX_SPINS;
use crate::physics::{Experiment, Fragment, PhysicsError, Simulator};

/// Which product-operator basis to expand in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Basis {
    /// Factors E, I_x, I_y, I_z (Hermitian operators; real coefficients for Hermitian ρ).
    #[default]
    Cartesian,
    /// Factors E, I_+, I_−, I_z (each term has a definite coherence order).
    Shift,
}

/// The single-spin factor of a product operator (the identity factor E is implicit: a spin
/// absent from [`Term::factors`] carries E).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Axis {
    /// I_x.
    X,
    /// I_y.
    Y,
    /// I_z.
    Z,
    /// I_+ = I_x + iI_y (raises m; coherence order +1).
    Plus,
    /// I_− = I_x − iI_y (lowers m; coherence order −1, the detected order).
    Minus,
}

impl Axis {
    /// The suffix printed after the spin: `x`, `y`, `z`, `+`, `−` (U+2212).
    pub fn symbol(self) -> &'static str {
        match self {
            Axis::X => "x",
            Axis::Y => "y",
            Axis::Z => "z",
            Axis::Plus => "+",
            Axis::Minus => "−",
        }
    }

    /// The 2×2 matrix of the factor in the basis (|α⟩, |β⟩), row-major.
    fn matrix(self) -> [[C64; 2]; 2] {
        let h = C64::new(0.5, 0.0);
        let z = ZERO;
        match self {
            Axis::X => [[z, h], [h, z]],
            Axis::Y => [[z, C64::new(0.0, -0.5)], [C64::new(0.0, 0.5), z]],
            Axis::Z => [[h, z], [z, -h]],
            Axis::Plus => [[z, ONE], [z, z]],
            Axis::Minus => [[z, z], [ONE, z]],
        }
    }

    /// Coherence order contributed by this factor (I_± : ±1; I_x, I_y mix ±1 and count 0 here).
    fn order(self) -> i32 {
        match self {
            Axis::Plus => 1,
            Axis::Minus => -1,
            _ => 0,
        }
    }
}

/// One term c·B of a product-operator expansion, B = 2^(k−1)·Π I_{spin,axis} (see the
/// module documentation for the normalization).
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// The coefficient c (complex; real for Hermitian ρ in the Cartesian basis).
    pub coefficient: C64,
    /// The non-identity factors as (0-based spin index, axis), sorted by spin, each spin at
    /// most once; empty for the identity term ½E.
    pub factors: Vec<(usize, Axis)>,
}

impl Term {
    /// Whether this is the identity term ½E.
    pub fn is_identity(&self) -> bool {
        self.factors.is_empty()
    }

    /// Number of non-identity factors k (the "spin order" of the term).
    pub fn spin_order(&self) -> usize {
        self.factors.len()
    }

    /// Coherence order Σ (±1) of a shift-basis term (I_x and I_y count 0, so only meaningful
    /// for terms of [`Basis::Shift`]).
    pub fn coherence_order(&self) -> i32 {
        self.factors.iter().map(|&(_, a)| a.order()).sum()
    }

    /// The dense operator B = 2^(k−1)·Π I_{spin,axis} (without the coefficient) of an
    /// `n_spins` system, in the bit-string basis of [`SpinOperators::new`].
    pub fn operator(&self, n_spins: usize) -> Result<CMat, PhysicsError> {
        check_spins(n_spins)?;
        self.check_factors(n_spins)?;
        let ops = SpinOperators::new(n_spins);
        let mut m = CMat::identity(ops.dim());
        m.scale(C64::new(0.5, 0.0));
        for &(s, a) in &self.factors {
            let f = match a {
                Axis::X => ops.ix(s),
                Axis::Y => ops.iy(s),
                Axis::Z => ops.iz(s),
                Axis::Plus => ops.iplus(s),
                Axis::Minus => ops.iminus(s),
            };
            m = m.mul(&f);
            m.scale(C64::new(2.0, 0.0));
        }
        Ok(m)
    }

    fn check_factors(&self, n_spins: usize) -> Result<(), PhysicsError> {
        for w in self.factors.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err(PhysicsError::invalid(
                    "term.factors",
                    format!("{:?}", self.factors),
                    "spins must be strictly increasing",
                ));
            }
        }
        if let Some(&(s, _)) = self.factors.iter().find(|f| f.0 >= n_spins) {
            return Err(PhysicsError::invalid(
                "term.factors",
                s,
                format!("no such spin: spins are 0..{n_spins}"),
            ));
        }
        Ok(())
    }

    /// Deterministic order of operators: lower spin order first, then by (spin, axis).
    fn key_cmp(&self, other: &Term) -> Ordering {
        self.factors
            .len()
            .cmp(&other.factors.len())
            .then_with(|| self.factors.cmp(&other.factors))
    }
}

fn check_spins(n_spins: usize) -> Result<(), PhysicsError> {
    if n_spins == 0 || n_spins > MAX_SPINS {
        return Err(PhysicsError::invalid(
            "n_spins",
            n_spins,
            format!("must be in 1..={MAX_SPINS}"),
        ));
    }
    Ok(())
}

/// The four per-spin factors of a basis, index 0 = E.
fn factor_axes(basis: Basis) -> [Option<Axis>; 4] {
    match basis {
        Basis::Cartesian => [None, Some(Axis::X), Some(Axis::Y), Some(Axis::Z)],
        Basis::Shift => [None, Some(Axis::Plus), Some(Axis::Minus), Some(Axis::Z)],
    }
}

/// The 2×2 matrix of a factor (E = identity).
fn factor_matrix(a: Option<Axis>) -> [[C64; 2]; 2] {
    match a {
        None => [[ONE, ZERO], [ZERO, ONE]],
        Some(a) => a.matrix(),
    }
}

/// Applies the 4×4 matrix `m` along every spin's (row bit, column bit) index of `v`
/// (length 4^n, spin 1 most significant).
fn separable_transform(v: &mut [C64], n: usize, m: &[[C64; 4]; 4]) {
    for j in 0..n {
        let stride = 1usize << (2 * (n - 1 - j));
        let block = stride * 4;
        for base in (0..v.len()).step_by(block) {
            for off in 0..stride {
                let i0 = base + off;
                let x = [
                    v[i0],
                    v[i0 + stride],
                    v[i0 + 2 * stride],
                    v[i0 + 3 * stride],
                ];
                for (r, row) in m.iter().enumerate() {
                    v[i0 + r * stride] =
                        row[0] * x[0] + row[1] * x[1] + row[2] * x[2] + row[3] * x[3];
                }
            }
        }
    }
}

/// Index of the (row r, column c) entry in the spin-interleaved layout: spin j contributes the
/// digit 2·r_j + c_j in base 4.
fn interleave(r: usize, c: usize, n: usize) -> usize {
    let mut k = 0;
    for j in 0..n {
        let sh = n - 1 - j;
        k = 4 * k + 2 * ((r >> sh) & 1) + ((c >> sh) & 1);
    }
    k
}

/// Expands ρ (`n_spins` spins, dimension 2^n, bit-string basis of [`SpinOperators::new`] — the
/// basis of [`Simulator::final_state`]) in the product-operator `basis`: all 4^n terms, the
/// identity first, then in basis-index order (spin 1 most significant, factors in the order
/// E, x, y, z or E, +, −, z). The expansion is exact: Σ c_a·[`Term::operator`] = ρ.
///
/// Errors: `n_spins` outside 1..=8, a dimension other than 2^n, non-finite entries.
pub fn decompose(rho: &CMat, n_spins: usize, basis: Basis) -> Result<Vec<Term>, PhysicsError> {
    check_spins(n_spins)?;
    let d = 1usize << n_spins;
    if rho.dim() != d {
        return Err(PhysicsError::SizeMismatch {
            what: format!("density matrix of {n_spins} spins (dimension 2^n)"),
            expected: d,
            got: rho.dim(),
        });
    }
    if let Some(k) = rho
        .data()
        .iter()
        .position(|z| !(z.re.is_finite() && z.im.is_finite()))
    {
        return Err(PhysicsError::invalid(
            format!("rho[({}, {})]", k % d, k / d),
            rho.data()[k],
            "must be finite",
        ));
    }
    let axes = factor_axes(basis);
    // Per-spin coefficient map: c_α = Σ_{rc} M[α][2r+c] ρ_rc with
    // M[α][p] = conj(b_α)_rc / Tr(b_αᴴ b_α) · (½ if α ≠ E), times 2 overall (the 2^(1−k)).
    let mut m = [[ZERO; 4]; 4];
    for (a, ax) in axes.iter().enumerate() {
        let b = factor_matrix(*ax);
        let norm: f64 = b.iter().flatten().map(|z| z.norm_sqr()).sum();
        let scale = if ax.is_some() { 0.5 / norm } else { 1.0 / norm };
        for r in 0..2 {
            for c in 0..2 {
                m[a][2 * r + c] = b[r][c].conj() * scale;
            }
        }
    }
    let mut v = vec![ZERO; d * d];
    for c in 0..d {
        for r in 0..d {
            v[interleave(r, c, n_spins)] = rho[(r, c)];
        }
    }
    separable_transform(&mut v, n_spins, &m);
    Ok(v.iter()
        .enumerate()
        .map(|(idx, &c)| {
            let factors = (0..n_spins)
                .filter_map(|j| {
                    let digit = (idx >> (2 * (n_spins - 1 - j))) & 3;
                    axes[digit].map(|a| (j, a))
                })
                .collect();
            Term {
                coefficient: c * 2.0,
                factors,
            }
        })
        .collect())
}

/// Rebuilds Σ c·B from terms of an `n_spins` system (the inverse of [`decompose`]), in the
/// bit-string basis; terms may come from either basis and may be any subset.
pub fn reconstruct(terms: &[Term], n_spins: usize) -> Result<CMat, PhysicsError> {
    check_spins(n_spins)?;
    let d = 1usize << n_spins;
    let mut out = CMat::zeros(d);
    for t in terms {
        t.check_factors(n_spins)?;
        let mut f: Vec<[[C64; 2]; 2]> = vec![factor_matrix(None); n_spins];
        for &(s, a) in &t.factors {
            f[s] = a.matrix();
        }
        let scale = t.coefficient * 2f64.powi(t.factors.len() as i32 - 1);
        // Every factor (E, Ix, Iy, Iz, I+, I−) has at most one nonzero per row, so each row of
        // the Kronecker product B has at most one: walk it spin by spin.
        'rows: for r in 0..d {
            let (mut c, mut z) = (0usize, scale);
            for (j, fj) in f.iter().enumerate() {
                let row = &fj[(r >> (n_spins - 1 - j)) & 1];
                match row.iter().position(|&e| e != ZERO) {
                    Some(cb) => {
                        c = 2 * c + cb;
                        z *= row[cb];
                    }
                    None => continue 'rows,
                }
            }
            out[(r, c)] += z;
        }
    }
    Ok(out)
}

/// The terms without the identity component ½E.
pub fn without_identity(terms: Vec<Term>) -> Vec<Term> {
    terms.into_iter().filter(|t| !t.is_identity()).collect()
}

/// The `k` terms of largest |c|, in descending |c| (ties: lower spin order first, then by
/// (spin, axis)), leaving out numerical zeros: terms with |c| ≤ 1e−12 of the largest |c| (so
/// the list of an exact single-term state has one entry).
pub fn largest(terms: &[Term], k: usize) -> Vec<Term> {
    let max = terms
        .iter()
        .map(|t| t.coefficient.norm())
        .fold(0.0, f64::max);
    let mut v: Vec<&Term> = terms
        .iter()
        .filter(|t| {
            let a = t.coefficient.norm();
            a > 0.0 && a > 1e-12 * max
        })
        .collect();
    v.sort_by(|a, b| {
        b.coefficient
            .norm()
            .total_cmp(&a.coefficient.norm())
            .then_with(|| a.key_cmp(b))
    });
    v.into_iter().take(k).cloned().collect()
}

/// A real number with 4 significant digits, trailing zeros removed; scientific below 1e−3 or
/// from 1e5; the sign is not printed (the caller prints it).
fn fmt_abs(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{a:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{a:.decimals$}");
    // Rounding may carry into a new digit (9.9996 → "10.000"): still ≤ 4 digits after trimming.
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The coefficient as (is_negative, magnitude text) for real or imaginary values, or a
/// parenthesised complex number.
fn fmt_coefficient(c: C64, tol: f64) -> (bool, String) {
    let re_zero = c.re.abs() <= tol;
    let im_zero = c.im.abs() <= tol;
    if im_zero {
        (c.re < 0.0, fmt_abs(c.re))
    } else if re_zero {
        (c.im < 0.0, format!("{}i", fmt_abs(c.im)))
    } else {
        let re = format!("{}{}", if c.re < 0.0 { "−" } else { "" }, fmt_abs(c.re));
        let im_sign = if c.im < 0.0 { "−" } else { "+" };
        (false, format!("({re}{im_sign}{}i)", fmt_abs(c.im)))
    }
}

/// The operator label of a term: `I1x I2z` (1-based spin numbers), or `Ix(H2) Iz(H3a)` with
/// `names` (spin i named `names[i]`; a spin beyond the names falls back to its number); `E`
/// for the identity.
pub fn operator_label(term: &Term, names: Option<&[String]>) -> String {
    if term.factors.is_empty() {
        return "E".to_string();
    }
    term.factors
        .iter()
        .map(|&(s, a)| match names.and_then(|n| n.get(s)) {
            Some(name) => format!("I{}({name})", a.symbol()),
            None => format!("I{}{}", s + 1, a.symbol()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Formats terms in the given order as `0.38 I5x − 1.32 I1y I2y I5x` (see the module
/// documentation for numbers, signs and complex coefficients); with `names`, spins are shown
/// as `Ix(H2)`. An empty list gives `0`.
pub fn format_terms(terms: &[Term], names: Option<&[String]>) -> String {
    if terms.is_empty() {
        return "0".to_string();
    }
    let max = terms
        .iter()
        .map(|t| t.coefficient.norm())
        .fold(0.0, f64::max);
    let tol = 1e-12 * max;
    let mut out = String::new();
    for (i, t) in terms.iter().enumerate() {
        let (neg, num) = fmt_coefficient(t.coefficient, tol);
        let sign = match (i, neg) {
            (0, false) => "",
            (0, true) => "−",
            (_, false) => " + ",
            (_, true) => " − ",
        };
        let _ = write!(out, "{sign}{num} {}", operator_label(t, names));
    }
    out
}

/// Unique display names of a fragment's spins: the labels, with the suffix `#k` (1-based spin
/// number) added to every label that is empty or shared by several spins
/// (lactate's three `CH3` spins become `CH3#2`, `CH3#3`, `CH3#4`).
pub fn spin_names(fragment: &Fragment) -> Vec<String> {
    let labels: Vec<&str> = fragment.spins.iter().map(|s| s.label.trim()).collect();
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if l.is_empty() || labels.iter().filter(|&&m| m == l).count() > 1 {
                format!("{l}#{}", i + 1)
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// The state of one simulated fragment, with the names needed to read its decomposition.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentState {
    /// Fragment index in simulation order (as in [`Simulator::final_state`]).
    pub fragment: usize,
    /// Name of the molecule.
    pub molecule: String,
    /// Name of the fragment (for a singlet group, its label).
    pub name: String,
    /// Unique spin names (see [`spin_names`]), spin 1 first.
    pub spin_names: Vec<String>,
    /// ρ at the end of the last simulated block, bit-string basis, first grid position.
    pub rho: CMat,
}

impl FragmentState {
    /// Number of spins.
    pub fn n_spins(&self) -> usize {
        self.spin_names.len()
    }
}

/// The states of every fragment of ensemble member `member` after the simulator's last
/// `simulate` (or `loss`/`loss_and_gradient`) call: ρ_N at the end of the last block — before
/// the acquisition — in the bit-string basis, at the first spatial-grid position (the only one
/// without a grid).
pub fn fragment_states(sim: &Simulator, member: usize) -> Result<Vec<FragmentState>, PhysicsError> {
    if member >= sim.members().len() {
        return Err(PhysicsError::invalid(
            "member",
            member,
            format!("the simulator has {} members", sim.members().len()),
        ));
    }
    let mut out = Vec::with_capacity(sim.fragment_count());
    let mut local = 0;
    let mut last_mol = usize::MAX;
    for f in 0..sim.fragment_count() {
        let mi = sim
            .fragment_molecule(f)
            .ok_or_else(|| PhysicsError::Numerical(format!("fragment {f} has no molecule")))?;
        if mi != last_mol {
            local = 0;
            last_mol = mi;
        }
        let mol = &sim.molecules()[mi];
        let frag = mol.simulation_fragments().swap_remove(local);
        local += 1;
        let rho = sim.final_state(member, f).ok_or_else(|| {
            PhysicsError::invalid(
                "simulator",
                "no state",
                "run simulate (or loss) before asking for states",
            )
        })?;
        out.push(FragmentState {
            fragment: f,
            molecule: mol.name.clone(),
            name: frag.name.clone(),
            spin_names: spin_names(&frag),
            rho,
        });
    }
    Ok(out)
}

/// Simulates `experiment` truncated after its first `blocks` blocks (with its original
/// acquisition) and returns every fragment's state of ensemble member `member` at that point
/// of the sequence (0 blocks: the equilibrium Fz). This replaces the simulator's last
/// simulation: later calls to [`Simulator::final_state`] see the truncated run.
pub fn state_after(
    sim: &mut Simulator,
    experiment: &Experiment,
    blocks: usize,
    member: usize,
) -> Result<Vec<FragmentState>, PhysicsError> {
    if blocks > experiment.blocks.len() {
        return Err(PhysicsError::invalid(
            "blocks",
            blocks,
            format!("the experiment has {} blocks", experiment.blocks.len()),
        ));
    }
    let truncated = Experiment {
        blocks: experiment.blocks[..blocks].to_vec(),
        acquisition: experiment.acquisition,
    };
    sim.simulate(&truncated)?;
    fragment_states(sim, member)
}

/// A readable report of the last simulation's states of member `member`: for every fragment,
/// a header naming molecule, fragment and spins (`I1 = H2, I2 = H3a, …`) and its `top`
/// largest non-identity terms in the Cartesian basis, e.g.
/// ```text
/// Glu / glutamyl (fragment 1, 5 spins: I1 = H2, I2 = H3a, I3 = H3b, I4 = H4a, I5 = H4b)
///   0.38 I5x − 1.32 I1y I2y I5x
/// ```
pub fn state_report(sim: &Simulator, member: usize, top: usize) -> Result<String, PhysicsError> {
    state_report_in(sim, member, top, Basis::Cartesian)
}

/// [`state_report`] in a chosen basis.
pub fn state_report_in(
    sim: &Simulator,
    member: usize,
    top: usize,
    basis: Basis,
) -> Result<String, PhysicsError> {
    let mut out = String::new();
    for s in fragment_states(sim, member)? {
        let terms = without_identity(decompose(&s.rho, s.n_spins(), basis)?);
        let legend = s
            .spin_names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("I{} = {n}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "{} / {} (fragment {}, {} spin{}: {legend})",
            s.molecule,
            s.name,
            s.fragment + 1,
            s.n_spins(),
            if s.n_spins() == 1 { "" } else { "s" },
        );
        let _ = writeln!(out, "  {}", format_terms(&largest(&terms, top), None));
    }
    Ok(out)
}
