//! The free-precession Hamiltonian of a coupled fragment in the rotating frame, always in the
//! full (strong-coupling) form, in Hz:
//!
//! H0 = Σ νi Izi + Σ_{i<j} Jij (Ixi Ixj + Iyi Iyj + Izi Izj),   νi = (δi − δcarrier)·f0\[MHz\].
//!
//! H0 commutes with Fz, so it is block diagonal in the total-M blocks of the Zeeman basis; its
//! eigendecomposition is done block by block, so every eigenvector has a definite M and a B0
//! offset Δν0·Fz shifts eigenvalues without changing eigenvectors.

use num_complex::Complex64 as C64;

use super::error::PhysicsError;
use super::linalg::{CMat, HermitianEigen};
use super::operators::SpinOperators;
use super::spin_system::{Field, Fragment};

/// H0 of `frag` at `field` in the frame rotating at `carrier_ppm`, in bit-string order.
pub fn free_hamiltonian(frag: &Fragment, field: Field, carrier_ppm: f64) -> CMat {
    free_hamiltonian_in(
        frag,
        field,
        carrier_ppm,
        &SpinOperators::new(frag.n_spins()),
    )
}

/// H0 in the basis of `ops` (which must be for `frag.n_spins()` spins).
pub fn free_hamiltonian_in(
    frag: &Fragment,
    field: Field,
    carrier_ppm: f64,
    ops: &SpinOperators,
) -> CMat {
    let n = frag.n_spins();
    let d = ops.dim();
    let nu: Vec<f64> = frag
        .spins
        .iter()
        .map(|s| field.offset_hz(s.shift_ppm, carrier_ppm))
        .collect();
    let mut h = CMat::zeros(d);
    for p in 0..d {
        let mut diag = 0.0;
        for (i, v) in nu.iter().enumerate() {
            diag += v * ops.m(p, i);
        }
        h[(p, p)] = C64::new(diag, 0.0);
    }
    for c in &frag.couplings {
        let (i, j) = (c.i - 1, c.j - 1);
        let mask = (1usize << (n - 1 - i)) | (1usize << (n - 1 - j));
        for p in 0..d {
            // Izi Izj on the diagonal
            h[(p, p)] += C64::new(c.hz * ops.m(p, i) * ops.m(p, j), 0.0);
            // (I+ I− + I− I+)/2 flips an antiparallel pair
            if ops.m(p, i) != ops.m(p, j) {
                h[(ops.index_of(ops.state(p) ^ mask), p)] += C64::new(c.hz / 2.0, 0.0);
            }
        }
    }
    h
}

/// Eigendecomposition of H0 with eigenvectors of definite total M.
#[derive(Debug, Clone)]
pub struct FreeEigen {
    /// Eigenvalues (Hz), in basis-block order.
    pub energies: Vec<f64>,
    /// Total M of each eigenvector.
    pub m: Vec<f64>,
    /// Eigenvectors as columns of a unitary matrix in the Zeeman basis.
    pub vectors: CMat,
}

impl FreeEigen {
    /// Diagonalizes H0 (which must commute with Fz) block by block in total M.
    pub fn new(h0: &CMat, ops: &SpinOperators) -> Result<FreeEigen, PhysicsError> {
        let d = ops.dim();
        let m2 = ops.total_m2();
        let n = ops.spins() as i32;
        let mut energies = vec![0.0; d];
        let mut m = vec![0.0; d];
        let mut vectors = CMat::zeros(d);
        let mut col = 0;
        for block_m2 in (-n..=n).rev().step_by(2) {
            let idx: Vec<usize> = (0..d).filter(|&p| m2[p] == block_m2).collect();
            let k = idx.len();
            let mut sub = CMat::zeros(k);
            for (a, &p) in idx.iter().enumerate() {
                for (b, &q) in idx.iter().enumerate() {
                    sub[(a, b)] = h0[(p, q)];
                }
            }
            let e = HermitianEigen::new(&sub)?;
            for b in 0..k {
                energies[col] = e.values[b];
                m[col] = block_m2 as f64 / 2.0;
                for (a, &p) in idx.iter().enumerate() {
                    vectors[(p, col)] = e.vectors[(a, b)];
                }
                col += 1;
            }
        }
        Ok(FreeEigen {
            energies,
            m,
            vectors,
        })
    }

    /// Eigenvalues of H0 + Δν0·Fz.
    pub fn shifted_energies(&self, b0_hz: f64) -> Vec<f64> {
        self.energies
            .iter()
            .zip(&self.m)
            .map(|(e, m)| e + b0_hz * m)
            .collect()
    }

    /// exp(−i·2π·τ·(H0 + Δν0·Fz)).
    pub fn propagator(&self, tau: f64, b0_hz: f64) -> CMat {
        let e = HermitianEigen {
            values: self.shifted_energies(b0_hz),
            vectors: self.vectors.clone(),
        };
        e.propagator(tau)
    }
}
