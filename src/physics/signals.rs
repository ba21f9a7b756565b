//! Simulated FIDs of every (ensemble member, molecule) pair and the loss interface the adjoint
//! pass consumes.
//!
//! Gradient convention for a real loss L of complex samples s: g = ∂L/∂Re s + i·∂L/∂Im s, so
//! that dL = Re Σ conj(g)·ds.

use num_complex::Complex64 as C64;

use super::error::PhysicsError;

/// FIDs laid out `[member][molecule][point]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    members: usize,
    molecules: usize,
    points: usize,
    data: Vec<C64>,
}

impl Signals {
    /// All-zero signals.
    pub fn zeros(members: usize, molecules: usize, points: usize) -> Signals {
        Signals {
            members,
            molecules,
            points,
            data: vec![C64::new(0.0, 0.0); members * molecules * points],
        }
    }

    /// Number of ensemble members.
    pub fn members(&self) -> usize {
        self.members
    }

    /// Number of molecules.
    pub fn molecules(&self) -> usize {
        self.molecules
    }

    /// Points per FID.
    pub fn points(&self) -> usize {
        self.points
    }

    /// The FID of one (member, molecule).
    pub fn fid(&self, member: usize, molecule: usize) -> &[C64] {
        let o = (member * self.molecules + molecule) * self.points;
        &self.data[o..o + self.points]
    }

    /// Mutable FID of one (member, molecule).
    pub fn fid_mut(&mut self, member: usize, molecule: usize) -> &mut [C64] {
        let o = (member * self.molecules + molecule) * self.points;
        &mut self.data[o..o + self.points]
    }

    /// Sets every sample to zero.
    pub fn fill_zero(&mut self) {
        self.data.fill(C64::new(0.0, 0.0));
    }

    /// Weighted sum over molecules for one member (a mixture FID).
    pub fn mixture(&self, member: usize, weights: &[f64]) -> Result<Vec<C64>, PhysicsError> {
        if weights.len() != self.molecules {
            return Err(PhysicsError::SizeMismatch {
                what: "mixture weights".into(),
                expected: self.molecules,
                got: weights.len(),
            });
        }
        let mut out = vec![C64::new(0.0, 0.0); self.points];
        for (mol, w) in weights.iter().enumerate() {
            for (o, s) in out.iter_mut().zip(self.fid(member, mol)) {
                *o += *w * s;
            }
        }
        Ok(out)
    }
}

/// A real loss of the simulated signals with its gradient.
pub trait SignalLoss: Sync {
    /// Returns L and, if `grad` is given, writes ∂L/∂Re s + i·∂L/∂Im s for every sample
    /// (`grad` has the shape of `signals`).
    fn evaluate(&self, signals: &Signals, grad: Option<&mut Signals>) -> Result<f64, PhysicsError>;
}
