//! Product operators of n coupled spins-1/2 in the Zeeman (product) basis, dimension 2^n.
//!
//! Basis convention: a basis state is a bit string with spin 1 the most significant bit; bit 0
//! is |α⟩ (m = +1/2), bit 1 is |β⟩ (m = −1/2). I = σ/2. Fx = Σ Ix_i, etc. F+ = Fx + iFy
//! raises m. [`SpinOperators::new`] orders the basis by the bit string (index = bit string);
//! [`SpinOperators::m_ordered`] sorts it by descending total M (ties in bit-string order), so
//! that every operator commuting with Fz is block diagonal with contiguous blocks — the order
//! the simulator uses internally. None of the reported numbers depend on the ordering.

use num_complex::Complex64 as C64;

use super::linalg::{CMat, ONE, ZERO};

/// The spin operators of an n-spin system.
#[derive(Debug, Clone)]
pub struct SpinOperators {
    n: usize,
    /// Basis index → bit string.
    states: Vec<usize>,
    /// Bit string → basis index.
    index: Vec<usize>,
}

impl SpinOperators {
    /// Operators for `n` spins (n ≥ 1) in bit-string order.
    pub fn new(n: usize) -> SpinOperators {
        let states: Vec<usize> = (0..1 << n).collect();
        SpinOperators {
            n,
            index: states.clone(),
            states,
        }
    }

    /// Operators for `n` spins in a basis sorted by descending total M.
    pub fn m_ordered(n: usize) -> SpinOperators {
        let mut states: Vec<usize> = (0..1 << n).collect();
        states.sort_by_key(|&b| b.count_ones());
        let mut index = vec![0; 1 << n];
        for (i, &b) in states.iter().enumerate() {
            index[b] = i;
        }
        SpinOperators { n, states, index }
    }

    /// Basis index of a bit string.
    pub fn index_of(&self, bits: usize) -> usize {
        self.index[bits]
    }

    /// Bit string of basis state p.
    pub fn state(&self, p: usize) -> usize {
        self.states[p]
    }

    /// Re-expresses a matrix given in bit-string order in this basis.
    pub fn from_bit_order(&self, a: &CMat) -> CMat {
        let d = self.dim();
        let mut b = CMat::zeros(d);
        for j in 0..d {
            for i in 0..d {
                b[(i, j)] = a[(self.states[i], self.states[j])];
            }
        }
        b
    }

    /// Re-expresses a matrix given in this basis in bit-string order.
    pub fn to_bit_order(&self, a: &CMat) -> CMat {
        let d = self.dim();
        let mut b = CMat::zeros(d);
        for j in 0..d {
            for i in 0..d {
                b[(self.states[i], self.states[j])] = a[(i, j)];
            }
        }
        b
    }

    /// Contiguous blocks of equal total M: (first index, length, 2M), descending M.
    pub fn m_blocks(&self) -> Vec<(usize, usize, i32)> {
        let m2 = self.total_m2();
        let mut blocks: Vec<(usize, usize, i32)> = Vec::new();
        for (p, &m) in m2.iter().enumerate() {
            match blocks.last_mut() {
                Some(b) if b.2 == m && b.0 + b.1 == p => b.1 += 1,
                _ => blocks.push((p, 1, m)),
            }
        }
        blocks
    }

    /// Number of spins.
    pub fn spins(&self) -> usize {
        self.n
    }

    /// Hilbert-space dimension 2^n.
    pub fn dim(&self) -> usize {
        1 << self.n
    }

    #[inline]
    fn bit(&self, p: usize, i: usize) -> usize {
        (self.states[p] >> (self.n - 1 - i)) & 1
    }

    /// m_i of spin i in basis state p (+1/2 or −1/2).
    #[inline]
    pub fn m(&self, p: usize, i: usize) -> f64 {
        0.5 - self.bit(p, i) as f64
    }

    /// Total magnetic quantum number M_p = Σ m_i of each basis state (the diagonal of Fz).
    pub fn total_m(&self) -> Vec<f64> {
        (0..self.dim())
            .map(|p| (0..self.n).map(|i| self.m(p, i)).sum())
            .collect()
    }

    /// Twice the total M, as an integer in −n..=n.
    pub fn total_m2(&self) -> Vec<i32> {
        (0..self.dim())
            .map(|p| (0..self.n).map(|i| 1 - 2 * self.bit(p, i) as i32).sum())
            .collect()
    }

    /// Iz of spin i (0-based).
    pub fn iz(&self, i: usize) -> CMat {
        let d = self.dim();
        let mut m = CMat::zeros(d);
        for p in 0..d {
            m[(p, p)] = C64::new(self.m(p, i), 0.0);
        }
        m
    }

    /// I+ of spin i: |α⟩⟨β|.
    pub fn iplus(&self, i: usize) -> CMat {
        let d = self.dim();
        let mut m = CMat::zeros(d);
        let mask = 1 << (self.n - 1 - i);
        for p in 0..d {
            let b = self.states[p];
            if b & mask != 0 {
                m[(self.index[b ^ mask], p)] = ONE;
            }
        }
        m
    }

    /// I− of spin i.
    pub fn iminus(&self, i: usize) -> CMat {
        self.iplus(i).adjoint()
    }

    /// Ix of spin i.
    pub fn ix(&self, i: usize) -> CMat {
        let mut m = self.iplus(i);
        m.axpy(ONE, &self.iminus(i));
        m.scale(C64::new(0.5, 0.0));
        m
    }

    /// Iy of spin i.
    pub fn iy(&self, i: usize) -> CMat {
        let mut m = self.iplus(i);
        m.axpy(C64::new(-1.0, 0.0), &self.iminus(i));
        m.scale(C64::new(0.0, -0.5));
        m
    }

    fn total(&self, f: impl Fn(usize) -> CMat) -> CMat {
        let mut m = CMat::zeros(self.dim());
        for i in 0..self.n {
            m.axpy(ONE, &f(i));
        }
        m
    }

    /// Fx = Σ Ix_i.
    pub fn fx(&self) -> CMat {
        self.total(|i| self.ix(i))
    }

    /// Fy = Σ Iy_i.
    pub fn fy(&self) -> CMat {
        self.total(|i| self.iy(i))
    }

    /// Fz = Σ Iz_i.
    pub fn fz(&self) -> CMat {
        self.total(|i| self.iz(i))
    }

    /// F+ = Fx + iFy.
    pub fn fplus(&self) -> CMat {
        self.total(|i| self.iplus(i))
    }

    /// Ideal hard-pulse rotation exp(−iθ(cos φ Fx + sin φ Fy)), built exactly as the Kronecker
    /// product of single-spin rotations.
    pub fn rotation(&self, theta: f64, phi: f64) -> CMat {
        let (c, s) = ((theta / 2.0).cos(), (theta / 2.0).sin());
        // exp(−iθ/2 (cos φ σx + sin φ σy)) = c·1 − i s (cos φ σx + sin φ σy)
        let mut r = CMat::zeros(2);
        r[(0, 0)] = C64::new(c, 0.0);
        r[(1, 1)] = C64::new(c, 0.0);
        // off-diagonal: −i s (cos φ ∓ i sin φ) — (0,1) multiplies e^{−iφ}, (1,0) e^{+iφ}
        r[(0, 1)] = C64::new(0.0, -s) * C64::from_polar(1.0, -phi);
        r[(1, 0)] = C64::new(0.0, -s) * C64::from_polar(1.0, phi);
        let mut u = CMat::identity(1);
        for _ in 0..self.n {
            u = u.kron(&r);
        }
        self.from_bit_order(&u)
    }

    /// The transverse operator cos φ Fx + sin φ Fy.
    pub fn f_phi(&self, phi: f64) -> CMat {
        let mut m = self.fx();
        m.scale(C64::new(phi.cos(), 0.0));
        m.axpy(C64::new(phi.sin(), 0.0), &self.fy());
        m
    }

    /// The zero matrix of this dimension.
    pub fn zero(&self) -> CMat {
        let mut m = CMat::zeros(self.dim());
        m.data_mut().fill(ZERO);
        m
    }
}
