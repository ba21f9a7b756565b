//! The golden-problem benchmark behind `spinloop bench`: seconds per loss+gradient of
//! `glu_gln_3t` (single and B1-ensemble variants) on a chosen number of threads, the implied
//! GFLOP/s, and a bit-identity check between repeated runs.

pub mod daemon;

use std::time::Instant;

use crate::design::golden::{self, Variant};
use crate::physics::{GradientRequest, PhysicsError, SimOptions};

/// One benchmark measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Variant measured.
    pub variant: &'static str,
    /// Rayon threads.
    pub threads: usize,
    /// Timed evaluations.
    pub evals: usize,
    /// Seconds for the first (cold) evaluation, including building propagator tables.
    pub cold_seconds: f64,
    /// Median seconds per loss+gradient (warm).
    pub median_seconds: f64,
    /// Fastest evaluation (s).
    pub min_seconds: f64,
    /// Matrix-product GFLOP/s implied by 3 products of 8d³ flops per segment and simulation.
    pub gflops: f64,
    /// The loss (for the record).
    pub loss: f64,
    /// Whether every evaluation gave bit-identical loss and gradient.
    pub bit_identical: bool,
}

/// Runs `evals` timed loss+gradient evaluations (after one cold one) of the golden variant
/// on a pool of `threads` rayon threads.
pub fn golden_bench(
    variant: Variant,
    threads: usize,
    evals: usize,
    options: SimOptions,
) -> Result<BenchResult, PhysicsError> {
    let pool = thread_pool(threads)?;
    pool.install(|| {
        let (ux, uy) = golden::test_pulse();
        let exp = golden::experiment(ux, uy);
        let loss = golden::loss()?;
        let t0 = Instant::now();
        let mut sim = golden::simulator(variant, options)?;
        let (l0, g0) = sim.loss_and_gradient(&exp, &loss, GradientRequest::default())?;
        let cold = t0.elapsed().as_secs_f64();
        let mut times = Vec::with_capacity(evals);
        let mut identical = true;
        for _ in 0..evals {
            let t = Instant::now();
            let (l, g) = sim.loss_and_gradient(&exp, &loss, GradientRequest::default())?;
            times.push(t.elapsed().as_secs_f64());
            identical &= l.to_bits() == l0.to_bits() && g == g0;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        Ok(BenchResult {
            variant: match variant {
                Variant::Single => "single",
                Variant::B1 => "b1",
            },
            threads,
            evals,
            cold_seconds: cold,
            median_seconds: median,
            min_seconds: times[0],
            gflops: sim.flops_per_gradient(&exp) / median / 1e9,
            loss: l0,
            bit_identical: identical,
        })
    })
}

/// Result of the basis-set benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BasisBenchResult {
    /// Metabolites simulated.
    pub metabolites: usize,
    /// Coupled fragments and singlet groups simulated.
    pub fragments: usize,
    /// Grid positions.
    pub positions: usize,
    /// Rayon threads.
    pub threads: usize,
    /// Seconds for the whole basis set from a new simulator (tables included).
    pub seconds: f64,
}

/// The metabolites of the basis benchmark.
pub const BASIS_METABOLITES: [&str; 10] = [
    "Glu", "Gln", "GABA", "NAA", "Cr", "PCr", "PCh", "mI", "GSH", "Lac",
];

/// A PRESS (TE 30 ms) basis set of [`BASIS_METABOLITES`] at 3 T with the vendor-like pulses
/// of [`crate::sequence::protocols::VendorPulses`] (2.6 ms shaped excitation, two 5.2 ms
/// slice-selective sinc-Hanning refocusing pulses, 260 segments each) over an n × n grid
/// spanning ±1.2 slice units, from a new simulator (so the propagator tables are included in
/// the time).
pub fn basis_bench(n: usize, threads: usize) -> Result<BasisBenchResult, PhysicsError> {
    use crate::physics::{Field, library};
    use crate::sequence::builders::acquisition;
    use crate::sequence::protocols::{Protocol, PulseStyle};
    use crate::spectrum::basis::protocol_basis;
    let pool = thread_pool(threads)?;
    pool.install(|| {
        let t0 = Instant::now();
        let molecules = BASIS_METABOLITES
            .iter()
            .map(|n| library::by_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let fragments: usize = molecules
            .iter()
            .map(|m| m.simulation_fragments().len())
            .sum();
        let protocol = Protocol::press_te30(PulseStyle::Vendor).with_grid(n, 1.2);
        protocol_basis(
            molecules,
            Field::THREE_T,
            3.0,
            &protocol,
            acquisition(2048, 2.5e-4, 1.0)?,
        )?;
        Ok(BasisBenchResult {
            metabolites: BASIS_METABOLITES.len(),
            fragments,
            positions: n * n,
            threads,
            seconds: t0.elapsed().as_secs_f64(),
        })
    })
}

/// Timing of one design problem's loss and gradient.
#[derive(Debug, Clone)]
pub struct DesignBenchResult {
    /// Problem name.
    pub name: String,
    /// Molecules and their simulated fragments.
    pub molecules: usize,
    /// Fragments simulated per (member, position).
    pub fragments: usize,
    /// Ensemble members (B1 × B0).
    pub members: usize,
    /// Grid positions per member.
    pub positions: usize,
    /// Optimizer parameters.
    pub parameters: usize,
    /// Threads.
    pub threads: usize,
    /// Building the problem (tables, reference signals, noise level) (s).
    pub build_seconds: f64,
    /// The first loss+gradient (builds the amplitude tables and fixed-pulse propagators) (s).
    pub cold_seconds: f64,
    /// Each timed loss+gradient with a changed designed pulse (s).
    pub seconds: Vec<f64>,
    /// If asked: one loss+gradient through the full path (`Simulator::loss_and_gradient`,
    /// every pulse, B1 and B0 differentiated) at the start point (s), and the largest
    /// difference of its designed-pulse gradient from the design path's, relative to the
    /// largest component.
    pub full_gradient: Option<(f64, f64)>,
}

/// Times loss+gradient of a design problem: build, one cold evaluation, then `evals`
/// evaluations at different parameters (the designed pulse changes each time, as in an
/// optimization; the fixed pulses' propagators stay cached).
pub fn design_bench(
    spec: &crate::design::problem::ProblemSpec,
    threads: usize,
    evals: usize,
    full: bool,
) -> Result<DesignBenchResult, PhysicsError> {
    use crate::design::problem::DesignProblem;
    let pool = thread_pool(threads)?;
    pool.install(|| {
        let t0 = Instant::now();
        let mut problem = DesignProblem::build(spec.clone())?;
        let build_seconds = t0.elapsed().as_secs_f64();
        let x0 = problem.initial_parameters()?;
        let t1 = Instant::now();
        let first = problem.evaluate(&x0)?;
        let cold_seconds = t1.elapsed().as_secs_f64();
        let mut seconds = Vec::with_capacity(evals);
        for k in 0..evals {
            // A small step along the gradient: a new pulse each time.
            let step = 1e-3 * (k + 1) as f64;
            let x: Vec<f64> = x0
                .iter()
                .zip(&first.gradient)
                .map(|(a, g)| a - step * g.signum())
                .collect();
            let t = Instant::now();
            problem.evaluate(&x)?;
            seconds.push(t.elapsed().as_secs_f64());
        }
        let full_gradient = if full {
            let (ux, uy) = problem.param.waveform(&x0)?;
            let experiment = problem.experiment_with(ux, uy);
            let (_, design) =
                problem
                    .simulator
                    .loss_and_pulse_gradient(&experiment, &problem.objective, &[0])?;
            let t = Instant::now();
            let (_, g) = problem.simulator.loss_and_gradient(
                &experiment,
                &problem.objective,
                crate::physics::GradientRequest::default(),
            )?;
            let secs = t.elapsed().as_secs_f64();
            let pairs = || {
                g.ux[0]
                    .iter()
                    .zip(&design.ux[0])
                    .chain(g.uy[0].iter().zip(&design.uy[0]))
            };
            let scale = pairs().fold(0.0f64, |m, (a, _)| m.max(a.abs()));
            let diff = pairs().fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            Some((secs, diff / scale.max(f64::MIN_POSITIVE)))
        } else {
            None
        };
        let fragments = problem
            .simulator
            .molecules()
            .iter()
            .map(|m| m.simulation_fragments().len())
            .sum();
        Ok(DesignBenchResult {
            name: problem.spec.name.clone(),
            molecules: problem.spec.molecules.len(),
            fragments,
            members: problem.members.len(),
            positions: problem.positions,
            parameters: problem.param.len(),
            threads,
            build_seconds,
            cold_seconds,
            seconds,
            full_gradient,
        })
    })
}

/// Durable ingestion into the store: acquisitions of `points` complex samples, committed one
/// per transaction (`batch` = 1) or `batch` per transaction, each insert returning after its
/// commit (what an ack waits for). Reports sustained acquisitions/s and per-commit latency.
#[derive(Debug, Clone)]
pub struct StoreBenchResult {
    /// Acquisitions stored.
    pub acquisitions: usize,
    /// Samples per acquisition.
    pub points: usize,
    /// Acquisitions per transaction.
    pub batch: usize,
    /// Wall time (s).
    pub seconds: f64,
    /// Commit latencies (s), one per transaction, sorted.
    pub latencies: Vec<f64>,
}

/// Runs the store benchmark in a fresh database under `dir` (created; removed afterwards).
pub fn store_bench(
    dir: &std::path::Path,
    acquisitions: usize,
    points: usize,
    batch: usize,
) -> Result<StoreBenchResult, crate::store::StoreError> {
    use crate::store::{ConsoleInfo, NewAcquisition, NewSession, Store};
    use num_complex::Complex64;
    let batch = batch.max(1);
    let _ = std::fs::remove_dir_all(dir);
    let mut store = Store::open(dir)?;
    store.upsert_console(&ConsoleInfo {
        id: "bench-console".into(),
        nucleus: "1H".into(),
        f0_hz: 123.2e6,
        limits: serde_json::json!({"peak_b1_hz": 1000.0}),
    })?;
    store.create_session(&NewSession {
        id: "bench-session".into(),
        console_id: "bench-console".into(),
        spec: serde_json::json!({}),
    })?;
    let make = |i: usize| NewAcquisition {
        session_id: "bench-session".into(),
        console_id: "bench-console".into(),
        idempotency_key: format!("acq-{i}"),
        waveform_id: "w0".into(),
        dwell_s: 2.5e-4,
        f0_hz: 123.2e6,
        averages: 1,
        coil: "head".into(),
        n_samples: points,
        samples: (0..points)
            .map(|k| Complex64::from_polar(1.0, 0.01 * (k * (i + 1)) as f64))
            .collect(),
    };
    let mut latencies = Vec::with_capacity(acquisitions.div_ceil(batch));
    let t0 = Instant::now();
    let mut i = 0;
    while i < acquisitions {
        let n = batch.min(acquisitions - i);
        let items: Vec<NewAcquisition> = (i..i + n).map(make).collect();
        let t = Instant::now();
        if n == 1 {
            store.insert_acquisition(&items[0])?;
        } else {
            for r in store.insert_acquisitions(&items)? {
                r?;
            }
        }
        latencies.push(t.elapsed().as_secs_f64());
        i += n;
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    latencies.sort_by(f64::total_cmp);
    Ok(StoreBenchResult {
        acquisitions,
        points,
        batch,
        seconds,
        latencies,
    })
}

/// A rayon pool of `threads` threads for one measurement.
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, PhysicsError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| PhysicsError::Numerical(format!("thread pool: {e}")))
}
