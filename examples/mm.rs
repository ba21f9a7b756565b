use faer::linalg::matmul::{matmul, triangular::{self, BlockStructure}};
use faer::{Accum, Mat, Par};
use num_complex::Complex64 as C64;
use std::time::Instant;
fn main() {
    let n = 32;
    let a = Mat::<C64>::from_fn(n, n, |i, j| C64::new((i * 7 + j) as f64 * 0.01, (i + 3 * j) as f64 * 0.02));
    let b = Mat::<C64>::from_fn(n, n, |i, j| C64::new((i + j) as f64 * 0.03, (2 * i + j) as f64 * 0.01));
    let mut c = Mat::<C64>::zeros(n, n);
    let one = C64::new(1.0, 0.0);
    for (name, mode) in [("full", 0), ("adjoint rhs", 1), ("tri lower out", 2)] {
        let reps = 20000;
        let t = Instant::now();
        for _ in 0..reps {
            match mode {
                0 => matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), one, Par::Seq),
                1 => matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.adjoint(), one, Par::Seq),
                _ => triangular::matmul(c.as_mut(), BlockStructure::TriangularLower, Accum::Replace, a.as_ref(), BlockStructure::Rectangular, b.adjoint(), BlockStructure::Rectangular, one, Par::Seq),
            }
        }
        let us = t.elapsed().as_secs_f64() / reps as f64 * 1e6;
        println!("{name}: {us:.2} us  {:.1} GF/s", 8.0 * (n as f64).powi(3) / us / 1e3);
    }
}
