fn main() {
    for eta in [0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0] {
        println!("eta {eta}: degree {}", spinloop::physics::propagator::degree_for(eta));
    }
}
