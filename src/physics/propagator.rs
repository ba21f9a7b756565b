//! Exact RF-segment propagators and their derivatives, as amplitude families.
//!
//! # Why a family
//! An RF segment of duration τ with controls (ux, uy) under B1 scale b and B0 offset Δν0 has
//! H = H0 + Δν0·Fz + b·(ux Fx + uy Fy). Because H0 and Fz commute with Fz,
//! H = R(φ)·(H0 + Δν0 Fz + a Fx)·R(φ)ᴴ with a = b·|u|, φ = atan2(uy, ux), R(φ) = exp(−iφFz)
//! diagonal. So every segment propagator is U = R(φ)·V(a)·R(φ)ᴴ, where
//! V(a) = exp(−i·2π·τ·(H0 + Δν0 Fz + a Fx)) depends on one real number. V is an entire function
//! of a whose Chebyshev coefficients on an interval of half-width h decay like (η/2)^k/k! with
//! η = 2π·τ·h·n/2; a polynomial of modest degree therefore represents V(a) — and the
//! Fréchet derivatives of exp along Fx, Fy and Fz at H0 + Δν0 Fz + a Fx — to machine precision.
//!
//! # Exactness
//! Node values come from the Hermitian eigendecomposition (the propagator) and the
//! Daleckii–Krein formula (the derivatives), both exact to rounding. The interpolation degree is
//! chosen from the Bernstein-ellipse bound so that the truncation error is below 1e-17 of the
//! unit norm of V, and every new interval is checked against direct evaluation at two points
//! between nodes; the degree is raised if that check shows more than 1e-14. The derivatives
//! are therefore derivatives of the matrix exponential of the discretized model, not the
//! first-order GRAPE approximation.
//!
//! # Cost
//! Building an interval costs `degree` eigendecompositions plus 12 products each, once per
//! (fragment, τ, Δν0); it is cached for the lifetime of the simulator. Evaluating V(a) is a
//! Horner sweep over `degree` matrices (flat f64 axpys), and a derivative trace Re Tr[K·∂V] is
//! `degree` flat dot products — no matrix products.

use super::error::PhysicsError;
use super::kernels::{horner, table_index};
use super::linalg::{CMat, HermitianEigen, Op, gemm};
use super::operators::SpinOperators;

const TARGET_ERROR: f64 = 1e-17;
/// Between-node check: V (unit norm) to this absolute error.
const CHECK_TOLERANCE: f64 = 1e-14;
/// Between-node check of the generators, relative to their largest entry. Node values come
/// from Daleckii–Krein with an eigendecomposition whose rounding alone is ~1e-14 relative for
/// small generators, so this is the noise floor, not an interpolation allowance.
const CHECK_TOLERANCE_GENERATOR: f64 = 1e-12;
const MAX_DEGREE: usize = 48;
/// Amplitude intervals a family may index.
const MAX_INTERVALS: usize = 1 << 16;
/// Memory one family's tables may use.
const MAX_TABLE_BYTES: usize = 2 << 30;

/// Coefficient tables of one amplitude interval: monomial coefficients in t = (a − center)/half.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Centre of the interval (Hz).
    pub center: f64,
    /// Half-width (Hz).
    pub half: f64,
    /// Number of coefficients.
    pub degree: usize,
    /// V(a): `degree` matrices, each 2·d² interleaved f64, contiguous.
    pub v: Vec<f64>,
    /// (Vᴴ·∂V along Fx)ᴴ — the generator G (∂V/∂a = V·G), stored as its adjoint so that
    /// Re Tr[C·G] is the flat f64 dot product of C's data with the table.
    pub dx: Vec<f64>,
    /// (Vᴴ·∂V along Fy)ᴴ.
    pub dy: Vec<f64>,
    /// (Vᴴ·∂V along Fz)ᴴ (only built when B0 gradients are requested).
    pub dz: Option<Vec<f64>>,
}

/// The family V(a), a ≥ 0, for one fragment, segment duration and B0 offset.
#[derive(Debug, Clone)]
pub struct AmplitudeFamily {
    d: usize,
    tau: f64,
    h: CMat,
    fx: CMat,
    fy: CMat,
    fz: CMat,
    width: f64,
    base_degree: usize,
    with_z: bool,
    intervals: Vec<Option<Interval>>,
}

/// V and Vᴴ·∂V along Fx, Fy, Fz at one amplitude.
struct NodeValues {
    v: CMat,
    dx: CMat,
    dy: CMat,
    dz: Option<CMat>,
}

/// Chebyshev truncation bound for an entire function bounded by e^{η·|Im t|} on the
/// Bernstein ellipse E_ρ: 4·e^{η(ρ−1/ρ)/2}·ρ^{−m}/(ρ−1), minimized over ρ.
fn chebyshev_bound(eta: f64, m: usize) -> f64 {
    let mut best = f64::INFINITY;
    let mut rho = 1.05_f64;
    while rho < 1e6 {
        let ln =
            (4.0f64).ln() + eta * (rho - 1.0 / rho) / 2.0 - m as f64 * rho.ln() - (rho - 1.0).ln();
        best = best.min(ln.exp());
        rho *= 1.05;
    }
    best
}

/// Smallest degree meeting `TARGET_ERROR` for half-width parameter η.
pub fn degree_for(eta: f64) -> usize {
    (2..MAX_DEGREE)
        .find(|&m| chebyshev_bound(eta, m) < TARGET_ERROR)
        .unwrap_or(MAX_DEGREE)
}

impl AmplitudeFamily {
    /// Family for the n-spin fragment with free Hamiltonian `h0` (Hz), segment duration `tau`
    /// (s) and B0 offset `b0_hz`. `eta` (0 < η ≤ 1) sets the interval half-width
    /// h = η/(π·τ·n); smaller η means more, cheaper intervals. `with_z` builds the ∂/∂Δν0
    /// tables too.
    pub fn new(
        h0: &CMat,
        ops: &SpinOperators,
        tau: f64,
        b0_hz: f64,
        eta: f64,
        with_z: bool,
    ) -> Result<AmplitudeFamily, PhysicsError> {
        if !(tau.is_finite() && tau > 0.0) {
            return Err(PhysicsError::invalid(
                "segment dt",
                tau,
                "must be finite and > 0",
            ));
        }
        if !b0_hz.is_finite() {
            return Err(PhysicsError::invalid("b0 offset", b0_hz, "must be finite"));
        }
        if !(eta > 0.0 && eta <= 1.0) {
            return Err(PhysicsError::invalid(
                "family eta",
                eta,
                "must be in (0, 1]",
            ));
        }
        let n = ops.spins();
        let fz = ops.fz();
        let mut h = h0.clone();
        h.axpy(num_complex::Complex64::new(b0_hz, 0.0), &fz);
        let half = eta / (std::f64::consts::PI * tau * n as f64);
        Ok(AmplitudeFamily {
            d: ops.dim(),
            tau,
            h,
            fx: ops.fx(),
            fy: ops.fy(),
            fz,
            width: 2.0 * half,
            base_degree: degree_for(eta),
            with_z,
            intervals: Vec::new(),
        })
    }

    /// Hilbert-space dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Whether the ∂/∂Δν0 tables are built.
    pub fn has_z(&self) -> bool {
        self.with_z
    }

    fn node(&self, a: f64) -> Result<NodeValues, PhysicsError> {
        let mut h = self.h.clone();
        h.axpy(num_complex::Complex64::new(a, 0.0), &self.fx);
        let e = HermitianEigen::new(&h)?;
        let v = e.propagator(self.tau);
        let generator = |dir: &CMat| {
            let d = e.propagator_derivative(self.tau, dir);
            let mut g = CMat::zeros(self.d);
            gemm(&mut g, &v, Op::H, &d, Op::N);
            g
        };
        Ok(NodeValues {
            dx: generator(&self.fx),
            dy: generator(&self.fy),
            dz: if self.with_z {
                Some(generator(&self.fz))
            } else {
                None
            },
            v,
        })
    }

    fn fit(nodes: &[CMat], degree: usize, d: usize) -> Vec<f64> {
        // Chebyshev coefficients c_k = (2/m) Σ_i f(t_i) T_k(t_i), c_0 halved.
        let m = degree;
        let len = 2 * d * d;
        let mut cheb = vec![0.0; m * len];
        for k in 0..m {
            let scale = if k == 0 {
                1.0 / m as f64
            } else {
                2.0 / m as f64
            };
            let dst = &mut cheb[k * len..(k + 1) * len];
            for (i, node) in nodes.iter().enumerate() {
                let theta = std::f64::consts::PI * (i as f64 + 0.5) / m as f64;
                let w = scale * (k as f64 * theta).cos();
                for (x, y) in dst.iter_mut().zip(node.as_f64()) {
                    *x += w * y;
                }
            }
        }
        // Monomial coefficients: T_0 = 1, T_1 = t, T_{k+1} = 2t T_k − T_{k−1}.
        let mut tk_prev = vec![0.0; m];
        let mut tk = vec![0.0; m];
        tk_prev[0] = 1.0;
        if m > 1 {
            tk[1] = 1.0;
        }
        let mut mono = vec![0.0; m * len];
        for k in 0..m {
            let coeffs: Vec<f64> = if k == 0 {
                tk_prev.clone()
            } else if k == 1 {
                tk.clone()
            } else {
                let mut next = vec![0.0; m];
                for j in 0..m {
                    let shifted = if j > 0 { 2.0 * tk[j - 1] } else { 0.0 };
                    next[j] = shifted - tk_prev[j];
                }
                tk_prev = std::mem::replace(&mut tk, next.clone());
                next
            };
            let src = &cheb[k * len..(k + 1) * len];
            for (j, &cj) in coeffs.iter().enumerate() {
                if cj != 0.0 {
                    let dst = &mut mono[j * len..(j + 1) * len];
                    for (x, y) in dst.iter_mut().zip(src) {
                        *x += cj * y;
                    }
                }
            }
        }
        // Chunk-major layout for the hot kernels.
        let mut table = vec![0.0; m * len];
        for j in 0..m {
            for i in 0..len {
                table[table_index(i, j, m)] = mono[j * len + i];
            }
        }
        table
    }

    fn build_interval(&self, index: usize) -> Result<Interval, PhysicsError> {
        let half = self.width / 2.0;
        let center = (index as f64 + 0.5) * self.width;
        let mut degree = self.base_degree;
        loop {
            let mut vs = Vec::with_capacity(degree);
            let mut dxs = Vec::with_capacity(degree);
            let mut dys = Vec::with_capacity(degree);
            let mut dzs = Vec::with_capacity(degree);
            for i in 0..degree {
                let t = (std::f64::consts::PI * (i as f64 + 0.5) / degree as f64).cos();
                let nv = self.node(center + half * t)?;
                vs.push(nv.v);
                dxs.push(nv.dx.adjoint());
                dys.push(nv.dy.adjoint());
                if let Some(z) = nv.dz {
                    dzs.push(z.adjoint());
                }
            }
            let iv = Interval {
                center,
                half,
                degree,
                v: Self::fit(&vs, degree, self.d),
                dx: Self::fit(&dxs, degree, self.d),
                dy: Self::fit(&dys, degree, self.d),
                dz: if self.with_z {
                    Some(Self::fit(&dzs, degree, self.d))
                } else {
                    None
                },
            };
            // Self-check between nodes.
            let (mut worst_v, mut worst_g): (f64, f64) = (0.0, 0.0);
            for t in [0.37, -0.81] {
                let direct = self.node(center + half * t)?;
                let mut buf = CMat::zeros(self.d);
                horner(&iv.v, degree, t, buf.as_f64_mut());
                worst_v = worst_v.max(max_diff(&buf, &direct.v));
                let scale = direct.dx.max_abs().max(f64::MIN_POSITIVE);
                horner(&iv.dx, degree, t, buf.as_f64_mut());
                worst_g = worst_g.max(max_diff(&buf, &direct.dx.adjoint()) / scale);
                horner(&iv.dy, degree, t, buf.as_f64_mut());
                worst_g = worst_g.max(max_diff(&buf, &direct.dy.adjoint()) / scale);
            }
            let worst = worst_v.max(worst_g * CHECK_TOLERANCE / CHECK_TOLERANCE_GENERATOR);
            if worst <= CHECK_TOLERANCE {
                return Ok(iv);
            }
            if degree >= self.base_degree + 8 || degree >= MAX_DEGREE {
                return Err(PhysicsError::Numerical(format!(
                    "amplitude family: interpolation error {worst_v:e} (propagator), \
                     {worst_g:e} (generators, relative) at degree {degree}"
                )));
            }
            degree = (degree + 2).min(MAX_DEGREE);
        }
    }

    /// Index of the interval holding amplitude `a` (a finite, ≥ 0).
    pub fn interval_of(&self, a: f64) -> Result<usize, PhysicsError> {
        if !(a.is_finite() && a >= 0.0) {
            return Err(PhysicsError::invalid(
                "RF amplitude",
                a,
                "must be finite and >= 0",
            ));
        }
        let idx = (a / self.width).floor();
        if idx >= MAX_INTERVALS as f64 {
            return Err(PhysicsError::invalid(
                "RF amplitude",
                format!("{a} Hz"),
                format!(
                    "too large for {} µs segments (limit {:.3e} Hz); use shorter segments or an \
                     ideal Hard block",
                    self.tau * 1e6,
                    MAX_INTERVALS as f64 * self.width
                ),
            ));
        }
        Ok(idx as usize)
    }

    /// Builds the listed intervals that are missing (indices from [`Self::interval_of`]).
    pub fn ensure_intervals(&mut self, indices: &[usize]) -> Result<(), PhysicsError> {
        let Some(&last) = indices.iter().max() else {
            return Ok(());
        };
        let missing = indices
            .iter()
            .filter(|&&i| self.intervals.get(i).is_none_or(|iv| iv.is_none()))
            .count();
        let built = self.intervals.iter().filter(|iv| iv.is_some()).count();
        let per_interval = 3 * self.base_degree * self.d * self.d * 16;
        if (built + missing) * per_interval > MAX_TABLE_BYTES {
            return Err(PhysicsError::invalid(
                "RF amplitudes",
                format!("{} amplitude intervals", built + missing),
                format!(
                    "propagator tables would exceed {} MiB; the waveform spans too wide an \
                     amplitude range for {} µs segments of a {}-dimensional system",
                    MAX_TABLE_BYTES >> 20,
                    self.tau * 1e6,
                    self.d
                ),
            ));
        }
        if self.intervals.len() <= last {
            self.intervals.resize(last + 1, None);
        }
        for &i in indices {
            if self.intervals[i].is_none() {
                self.intervals[i] = Some(self.build_interval(i)?);
            }
        }
        Ok(())
    }

    /// Makes sure every amplitude in [0, a_max] is covered.
    pub fn ensure(&mut self, a_max: f64) -> Result<(), PhysicsError> {
        let last = self.interval_of(a_max)?;
        self.ensure_intervals(&(0..=last).collect::<Vec<_>>())
    }

    /// The interval holding amplitude `a` and the local coordinate t ∈ [−1, 1].
    /// Panics if `a` is not covered: the simulator builds every interval its experiment needs
    /// (`ensure_intervals`) before its sweeps run.
    #[inline]
    pub fn locate(&self, a: f64) -> (&Interval, f64) {
        let idx = ((a / self.width).floor() as usize).min(self.intervals.len() - 1);
        let iv = self.intervals[idx]
            .as_ref()
            .expect("amplitude family: ensure() must cover every amplitude before use");
        (iv, (a - iv.center) / iv.half)
    }

    /// V(a) into `out` (d×d).
    pub fn eval(&self, a: f64, out: &mut CMat) {
        let (iv, t) = self.locate(a);
        horner(&iv.v, iv.degree, t, out.as_f64_mut());
    }
}

fn max_diff(a: &CMat, b: &CMat) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).norm())
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::hamiltonian::free_hamiltonian_in;
    use crate::physics::library;
    use crate::physics::spin_system::Field;
    use num_complex::Complex64 as C64;

    fn family(eta: f64, b0: f64, tau: f64) -> (AmplitudeFamily, CMat, SpinOperators) {
        let frag = &library::glutamate().fragments[0];
        let ops = SpinOperators::m_ordered(5);
        let h0 = free_hamiltonian_in(frag, Field::THREE_T, 3.0, &ops);
        let fam = AmplitudeFamily::new(&h0, &ops, tau, b0, eta, true).unwrap();
        (fam, h0, ops)
    }

    /// Interpolated V(a) and generators agree with the eigendecomposition at amplitudes that are
    /// not nodes, across several intervals, including a = 0.
    #[test]
    fn family_matches_direct_evaluation() {
        let (mut fam, h0, ops) = family(0.02, 4.5, 20e-6);
        fam.ensure(2500.0).unwrap();
        let fz = ops.fz();
        let mut v = CMat::zeros(32);
        for a in [0.0, 0.37, 63.1, 127.9, 444.4, 1234.5, 2499.0] {
            let mut h = h0.clone();
            h.axpy(C64::new(4.5, 0.0), &fz);
            h.axpy(C64::new(a, 0.0), &ops.fx());
            let e = HermitianEigen::new(&h).unwrap();
            let direct = e.propagator(20e-6);
            fam.eval(a, &mut v);
            let err = max_diff(&v, &direct);
            assert!(err < 1e-14, "V({a}) off by {err:e}");
            // Generators: Vᴴ·∂V along Fx, Fy, Fz (tables are transposed).
            let (iv, t) = fam.locate(a);
            for (table, dir) in [
                (&iv.dx, ops.fx()),
                (&iv.dy, ops.fy()),
                (iv.dz.as_ref().unwrap(), fz.clone()),
            ] {
                let d = e.propagator_derivative(20e-6, &dir);
                let mut g = CMat::zeros(32);
                gemm(&mut g, &direct, Op::H, &d, Op::N);
                let mut got = CMat::zeros(32);
                horner(table, iv.degree, t, got.as_f64_mut());
                let rel = max_diff(&got, &g.adjoint()) / g.max_abs();
                assert!(rel < 1e-12, "generator at {a} off by {rel:e} (relative)");
            }
        }
    }

    /// The Daleckii–Krein derivative agrees with central differences of the exponential.
    #[test]
    fn frechet_derivative_matches_finite_differences() {
        let (_, h0, ops) = family(0.02, 0.0, 20e-6);
        let mut h = h0.clone();
        h.axpy(C64::new(180.0, 0.0), &ops.fx());
        h.axpy(C64::new(-75.0, 0.0), &ops.fy());
        let e = HermitianEigen::new(&h).unwrap();
        for dir in [ops.fx(), ops.fy(), ops.fz()] {
            let exact = e.propagator_derivative(20e-6, &dir);
            let step = 1e-3;
            let at = |s: f64| {
                let mut hs = h.clone();
                hs.axpy(C64::new(s, 0.0), &dir);
                HermitianEigen::new(&hs).unwrap().propagator(20e-6)
            };
            let mut fd = at(step);
            fd.axpy(C64::new(-1.0, 0.0), &at(-step));
            fd.scale(C64::new(0.5 / step, 0.0));
            let rel = max_diff(&fd, &exact) / exact.max_abs();
            assert!(rel < 1e-7, "Fréchet derivative off by {rel:e}");
        }
    }

    #[test]
    fn degree_grows_with_interval_size() {
        assert!(degree_for(0.01) < degree_for(0.1));
        assert!(degree_for(0.1) < degree_for(1.0));
        assert!(chebyshev_bound(0.02, degree_for(0.02)) < TARGET_ERROR);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let ops = SpinOperators::m_ordered(1);
        let h0 = CMat::zeros(2);
        assert!(AmplitudeFamily::new(&h0, &ops, 0.0, 0.0, 0.1, false).is_err());
        assert!(AmplitudeFamily::new(&h0, &ops, 1e-5, f64::NAN, 0.1, false).is_err());
        assert!(AmplitudeFamily::new(&h0, &ops, 1e-5, 0.0, 0.0, false).is_err());
        let mut fam = AmplitudeFamily::new(&h0, &ops, 1e-5, 0.0, 0.1, false).unwrap();
        assert!(fam.ensure(f64::INFINITY).is_err());
        let err = fam.interval_of(1e13).unwrap_err().to_string();
        assert!(
            err.contains("RF amplitude") && err.contains("too large"),
            "{err}"
        );
        assert!(fam.interval_of(-1.0).is_err());
    }
}
