//! Results are bit-identical between runs and between 1 and 2 threads.

use spinloop::design::golden::{self, Variant};
use spinloop::physics::{GradientRequest, SimOptions};

fn run(threads: usize) -> (f64, spinloop::physics::Gradient) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut s = golden::simulator(Variant::B1, SimOptions::default()).unwrap();
        let (ux, uy) = golden::test_pulse();
        let exp = golden::experiment(ux, uy);
        let loss = golden::loss().unwrap();
        let first = s
            .loss_and_gradient(&exp, &loss, GradientRequest { b0: true })
            .unwrap();
        let second = s
            .loss_and_gradient(&exp, &loss, GradientRequest { b0: true })
            .unwrap();
        assert_eq!(first.0.to_bits(), second.0.to_bits());
        assert_eq!(first.1, second.1);
        first
    })
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    let (l1, g1) = run(1);
    let (l2, g2) = run(2);
    assert_eq!(l1.to_bits(), l2.to_bits());
    for (a, b) in g1.ux[0]
        .iter()
        .chain(&g1.uy[0])
        .zip(g2.ux[0].iter().chain(&g2.uy[0]))
    {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    assert_eq!(g1.b1, g2.b1);
    assert_eq!(g1.b0, g2.b0);
}
