use spinloop::physics::{
    Field, hamiltonian::free_hamiltonian, library, operators::SpinOperators,
    propagator::AmplitudeFamily,
};
fn main() {
    for eta in [0.005, 0.01, 0.02, 0.05, 0.1] {
        println!(
            "eta {eta}: bound degree {}",
            spinloop::physics::propagator::degree_for(eta)
        );
        let frag = &library::glutamate().fragments[0];
        let h0 = free_hamiltonian(frag, Field::THREE_T, 3.0);
        let ops = SpinOperators::new(5);
        let mut fam = AmplitudeFamily::new(&h0, &ops, 20e-6, 0.0, eta, false).unwrap();
        let t = std::time::Instant::now();
        fam.ensure(306.0).unwrap();
        let (iv, _) = fam.locate(100.0);
        println!(
            "   interval degree {} half {:.1} Hz, build {:.3} s",
            iv.degree,
            iv.half,
            t.elapsed().as_secs_f64()
        );
    }
}
