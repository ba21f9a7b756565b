//! The `Design` service over gRPC: Simulate returns the problem's FIDs (equal to the library's
//! simulation of the same problem, bit for bit), Optimize streams its iterations and ends with
//! the waveform, and bad requests get INVALID_ARGUMENT naming the field.

use spinloop::daemon::config::DaemonConfig;
use spinloop::daemon::pb;
use spinloop::daemon::server::{start_in_process, unix_channel};
use spinloop::design::problem::{DesignProblem, ProblemSpec};
use tokio_stream::StreamExt;

const PROBLEM: &str = r#"
name = "tiny"
field = "3T"
molecules = ["NAA", "Cr"]
concentrations = [12.0, 8.0]

[acquisition]
points = 256
dwell_ms = 0.25
linewidth_hz = 4.0

[sequence]
kind = "pulse_acquire"
pulses = "ideal"

[pulse]
segments = 20
dt_us = 20.0

[limits]
peak_b1_hz = 2500.0
max_duration_s = 0.01
raster_s = 10e-6

[ensemble]
b1 = [0.9, 1.1]

[[objective]]
kind = "enhancement"
metabolite = "NAA"
window_ppm = [1.9, 2.1]

[optimizer]
max_iterations = 50
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_and_optimize_over_grpc() {
    let dir = std::env::temp_dir().join(format!("spinloop-design-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let daemon = start_in_process(DaemonConfig::new(dir.join("data"), dir.join("d.sock")))
        .await
        .expect("daemon");
    let mut c =
        pb::design_client::DesignClient::new(unix_channel(&daemon.socket).await.expect("channel"));

    // Simulate with the reference pulse: the same FIDs as the library computes.
    let r = c
        .simulate(pb::SimulateRequest {
            problem_toml: PROBLEM.into(),
            waveform: None,
        })
        .await
        .expect("simulate")
        .into_inner();
    assert_eq!(r.fids.len(), 2 * 2, "members × molecules");
    let mut p = DesignProblem::build(ProblemSpec::from_toml(PROBLEM, "test").expect("spec"))
        .expect("problem");
    let (ux, uy) = p.reference.clone();
    let s = p.signals(&ux, &uy).expect("signals");
    for (k, f) in r.fids.iter().enumerate() {
        let (m, mol) = (k / 2, k % 2);
        let want: Vec<u64> = s
            .fid(m, mol)
            .iter()
            .flat_map(|c| [c.re.to_bits(), c.im.to_bits()])
            .collect();
        let got: Vec<u64> = f.samples.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "fid {k}");
        assert_eq!(f.molecule, ["NAA", "Cr"][mol]);
    }
    assert!((r.dwell_s - 2.5e-4).abs() < 1e-15);
    assert!(r.objective_parts.len() == 1);

    // Optimize: progress per iteration, then the final waveform within the peak limit.
    let mut stream = c
        .optimize(pb::OptimizeRequest {
            problem_toml: PROBLEM.into(),
            max_iterations: 5,
            warm_start: None,
        })
        .await
        .expect("optimize")
        .into_inner();
    let mut msgs = Vec::new();
    while let Some(m) = stream.next().await {
        msgs.push(m.expect("progress"));
    }
    let last = msgs.last().expect("messages");
    assert!(last.done);
    assert!(msgs[..msgs.len() - 1].iter().all(|m| !m.done));
    assert!(msgs.len() >= 2);
    let w = last.waveform.as_ref().expect("waveform");
    assert_eq!(w.ux.len(), 20);
    assert!(w.ux.iter().zip(&w.uy).all(|(x, y)| x.hypot(*y) < 2500.0));
    let losses: Vec<f64> = msgs[..msgs.len() - 1].iter().map(|m| m.loss).collect();
    assert!(losses.windows(2).all(|l| l[1] <= l[0]), "{losses:?}");

    // Bad requests.
    let e = c
        .simulate(pb::SimulateRequest {
            problem_toml: PROBLEM.replace("\"NAA\", \"Cr\"", "\"NAA\", \"Unobtainium\""),
            waveform: None,
        })
        .await
        .expect_err("unknown metabolite");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("Unobtainium"), "{}", e.message());
    let mut bad = w.clone();
    bad.ux[3] = f64::NAN;
    let e = c
        .simulate(pb::SimulateRequest {
            problem_toml: PROBLEM.into(),
            waveform: Some(bad),
        })
        .await
        .expect_err("NaN waveform");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut short = w.clone();
    short.ux.pop();
    short.uy.pop();
    let e = c
        .optimize(pb::OptimizeRequest {
            problem_toml: PROBLEM.into(),
            max_iterations: 1,
            warm_start: Some(short),
        })
        .await
        .expect_err("wrong length");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .simulate(pb::SimulateRequest {
            problem_toml: String::new(),
            waveform: None,
        })
        .await
        .expect_err("empty");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    daemon.shutdown();
    daemon.join().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
