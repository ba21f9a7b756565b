//! The safety interlock (issue 5, deliverable 4): no waveform over a limit leaves, whatever
//! the optimizer proposes. Every expectation here is computed independently of the module
//! (peak, energy, duration, duty cycle and raster are recomputed in the test).

use proptest::prelude::*;
use spinloop::design::parameterization::{ParamKind, Parameterization};
use spinloop::safety::{ConsoleLimits, EnergyWindow, Interlock, SafetyError, Violation, Waveform};

/// Relative slack the test allows on peak and energy (the module's own is tighter).
const SLACK: f64 = 1e-9;
/// Relative slack the test allows on timings.
const TSLACK: f64 = 1e-6;

fn limits() -> ConsoleLimits {
    ConsoleLimits {
        peak_b1_hz: 1000.0,
        max_energy_hz2s: 50.0,
        max_duration_s: 1e-3,
        raster_s: 1e-5,
        max_duty_cycle: 0.1,
        window: None,
    }
}

fn wf(id: u64, dt: f64, ux: Vec<f64>, uy: Vec<f64>) -> Waveform {
    Waveform { id, dt, ux, uy }
}

/// Independent re-check: true when every limit holds (within the test's slack).
fn independently_safe(l: &ConsoleLimits, w: &Waveform, tr: f64) -> bool {
    let n = w.ux.len();
    if n == 0 || n != w.uy.len() {
        return false;
    }
    if !(w.dt.is_finite() && w.dt > 0.0 && tr.is_finite() && tr > 0.0) {
        return false;
    }
    let mut pk = 0.0f64;
    let mut en = 0.0f64;
    for k in 0..n {
        let (x, y) = (w.ux[k], w.uy[k]);
        if !(x.is_finite() && y.is_finite()) {
            return false;
        }
        pk = pk.max((x * x + y * y).sqrt());
        en += (x * x + y * y) * w.dt;
    }
    let duration = n as f64 * w.dt;
    let ratio = w.dt / l.raster_s;
    let on_raster = ratio.round() >= 1.0 && (ratio - ratio.round()).abs() <= TSLACK * ratio;
    pk <= l.peak_b1_hz * (1.0 + SLACK)
        && en <= l.max_energy_hz2s * (1.0 + SLACK)
        && duration <= l.max_duration_s * (1.0 + TSLACK)
        && duration <= tr * (1.0 + TSLACK)
        && duration / tr <= l.max_duty_cycle * (1.0 + TSLACK)
        && on_raster
}

fn sample() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1500.0..1500.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => prop_oneof![Just(1e300), Just(-1e300), Just(f64::MAX)],
        1 => Just(0.0),
    ]
}

/// n samples: mostly a clean vector (so that some proposals are safe), else a wild one.
fn samples(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        3 => prop::collection::vec(-300.0..300.0f64, n),
        2 => prop::collection::vec(sample(), n),
    ]
}

fn console_limits() -> impl Strategy<Value = ConsoleLimits> {
    (
        100.0..2000.0f64,
        1.0..1000.0f64,
        1e-4..2e-3f64,
        prop_oneof![Just(1e-5), Just(2e-6), Just(4e-6)],
        0.01..=1.0f64,
    )
        .prop_map(|(peak, energy, dur, raster, duty)| ConsoleLimits {
            peak_b1_hz: peak,
            max_energy_hz2s: energy,
            max_duration_s: dur,
            raster_s: raster,
            max_duty_cycle: duty,
            window: None,
        })
}

/// (waveform, dt choice): dt an on-raster multiple, off-raster, zero, negative or NaN.
fn proposal() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, u32, f64)> {
    (0usize..40, any::<bool>(), 0usize..3).prop_flat_map(|(n, same, extra)| {
        let m = if same { n } else { n + extra };
        (
            samples(n),
            samples(m),
            1u32..6,
            prop_oneof![
                6 => Just(0.0),
                1 => 0.01..0.99f64,
                1 => Just(-1.0),
                1 => Just(f64::NAN),
                1 => Just(-2.0),
            ],
        )
    })
}

fn tr() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 1e-4..0.1f64,
        1 => Just(0.0),
        1 => Just(-1.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Ok only if every limit holds on an independent re-check, and Ok never alters samples
    /// (about 7 % of these proposals are safe, so both branches are exercised).
    #[test]
    fn approve_ok_only_if_within_every_limit(
        l in console_limits(),
        (ux, uy, k, frac) in proposal(),
        tr in tr(),
        now in 0.0..1e6f64,
    ) {
        // frac: 0 → on raster (k·raster); in (0, 1) → off raster; −1 → 0; −2 → negative; NaN.
        let dt = if frac == 0.0 {
            k as f64 * l.raster_s
        } else if frac == -1.0 {
            0.0
        } else if frac == -2.0 {
            -l.raster_s
        } else if frac.is_nan() {
            f64::NAN
        } else {
            (k as f64 + frac) * l.raster_s
        };
        let w = wf(3, dt, ux, uy);
        let mut il = Interlock::new(l).unwrap();
        let safe = independently_safe(&l, &w, tr);
        match il.approve(w.clone(), tr, now) {
            Ok(a) => {
                prop_assert!(safe, "approved an unsafe waveform {w:?} tr {tr} under {l:?}");
                prop_assert_eq!(a.id(), w.id);
                prop_assert_eq!(a.dt().to_bits(), w.dt.to_bits());
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(a.ux()), bits(&w.ux));
                prop_assert_eq!(bits(a.uy()), bits(&w.uy));
                prop_assert_eq!(a.into_waveform(), w);
            }
            Err(SafetyError::Rejected { id, violations }) => {
                prop_assert_eq!(id, 3);
                prop_assert!(!violations.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// With a rolling window, the approved plays of any window never exceed its budget.
    #[test]
    fn rolling_window_never_exceeded(
        steps in prop::collection::vec((0.0..0.5f64, 0usize..20, 0.0..1000.0f64), 1..60),
        window_s in 0.1..3.0f64,
        budget in 1.0..100.0f64,
    ) {
        let l = ConsoleLimits {
            max_energy_hz2s: 1e9,
            window: Some(EnergyWindow { window_s, max_energy_hz2s: budget }),
            ..limits()
        };
        let mut il = Interlock::new(l).unwrap();
        let mut t = 0.0;
        let mut approved: Vec<(f64, f64)> = Vec::new();
        for (i, &(gap, n, amp)) in steps.iter().enumerate() {
            t += gap;
            let w = wf(i as u64, 1e-5, vec![amp; n], vec![0.0; n]);
            if let Ok(a) = il.approve(w, 1.0, t) {
                let e = amp * amp * n as f64 * 1e-5;
                approved.push((t, e));
                let in_window: f64 = approved
                    .iter()
                    .filter(|(s, _)| t - s < window_s)
                    .map(|(_, e)| e)
                    .sum();
                prop_assert!(in_window <= budget * (1.0 + SLACK), "{in_window} > {budget}");
                prop_assert_eq!(a.approved_at_s(), t);
            }
        }
    }

    /// Whatever θ the optimizer proposes (huge values included), a parameterization whose
    /// peak equals the console's limit always passes the peak check.
    #[test]
    fn parameterized_waveforms_pass_at_their_peak(
        theta_seed in prop::collection::vec(
            prop_oneof![-1e300..1e300f64, -50.0..50.0f64, Just(f64::MAX), Just(-f64::MAX)],
            64,
        ),
        kind in 0usize..3,
        segments in 4usize..32,
        peak in 1.0..5000.0f64,
    ) {
        let kind = match kind {
            0 => ParamKind::Cartesian,
            1 => ParamKind::AmplitudePhase,
            _ => ParamKind::SineBasis { terms: 2 },
        };
        let dt = 1e-5;
        let p = Parameterization::new(segments, dt, peak, kind, 1).unwrap();
        let theta: Vec<f64> = theta_seed.iter().copied().cycle().take(p.len()).collect();
        let (ux, uy) = p.waveform(&theta).unwrap();
        let l = ConsoleLimits {
            peak_b1_hz: peak,
            max_energy_hz2s: f64::MAX,
            max_duration_s: 1.0,
            raster_s: dt,
            max_duty_cycle: 1.0,
            window: None,
        };
        let mut il = Interlock::new(l).unwrap();
        let w = wf(1, dt, ux.clone(), uy.clone());
        let finite = ux.iter().chain(&uy).all(|v| v.is_finite());
        match il.approve(w, 1.0, 0.0) {
            Ok(a) => prop_assert!(finite && a.peak_hz() < peak),
            // The peak check always passes; a non-finite sample (the parameterization's
            // overflow at θ ≈ f64::MAX) is still stopped by the finiteness check.
            Err(SafetyError::Rejected { violations, .. }) => {
                prop_assert!(!finite, "{violations:?}");
                prop_assert!(
                    violations.iter().all(|v| !v.to_string().contains("peak-B1")),
                    "{violations:?}"
                );
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        if !finite {
            return Ok(());
        }

        // A console limit below the design peak: the interlock rejects exactly the waveforms
        // that exceed it.
        let lower = ConsoleLimits { peak_b1_hz: 0.5 * peak, ..l };
        let mut il = Interlock::new(lower).unwrap();
        let pk = ux.iter().zip(&uy).map(|(x, y)| (x * x + y * y).sqrt()).fold(0.0, f64::max);
        let r = il.approve(wf(2, dt, ux, uy), 1.0, 0.0);
        if pk > lower.peak_b1_hz * (1.0 + SLACK) {
            match r {
                Err(SafetyError::Rejected { violations, .. }) => {
                    prop_assert!(violations.iter().any(|v| v.to_string().contains("peak-B1")));
                }
                other => prop_assert!(false, "peak {pk} > {}: {other:?}", lower.peak_b1_hz),
            }
        } else if pk < lower.peak_b1_hz * (1.0 - SLACK) {
            prop_assert!(r.is_ok(), "{r:?}");
        }
    }
}

fn rejected(r: Result<spinloop::safety::ApprovedWaveform, SafetyError>) -> Vec<Violation> {
    match r {
        Err(SafetyError::Rejected { violations, .. }) => violations,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn design_peak_above_console_limit_is_rejected_for_saturated_theta() {
    let p = Parameterization::new(16, 1e-5, 2000.0, ParamKind::Cartesian, 0).unwrap();
    let theta = vec![1e300; p.len()];
    let (ux, uy) = p.waveform(&theta).unwrap();
    let mut il = Interlock::new(ConsoleLimits {
        max_energy_hz2s: 1e9,
        ..limits()
    })
    .unwrap();
    let v = rejected(il.approve(wf(1, 1e-5, ux, uy), 0.01, 0.0));
    assert_eq!(v.len(), 1, "{v:?}");
    let s = v[0].to_string();
    assert!(s.contains("peak-B1 limit 1000 Hz"), "{s}");
}

#[test]
fn each_violation_names_its_value_and_limit() {
    let l = limits();
    // Peak: one sample at 1500 Hz (energy 22.5 Hz²·s, within its limit).
    let mut il = Interlock::new(l).unwrap();
    let v = rejected(il.approve(wf(1, 1e-5, vec![0.0, 1500.0], vec![0.0; 2]), 0.01, 0.0));
    assert_eq!(v.len(), 1, "{v:?}");
    let s = v[0].to_string();
    assert!(s.contains("1500") && s.contains("1000"), "{s}");

    // Energy: 100 samples of 900 Hz for 1e-5 s = 810 Hz²·s > 50.
    let v = rejected(il.approve(wf(2, 1e-5, vec![900.0; 100], vec![0.0; 100]), 0.01, 0.0));
    assert_eq!(v.len(), 1, "{v:?}");
    let s = v[0].to_string();
    assert!(s.contains("810") && s.contains("50 Hz²·s"), "{s}");

    // Duration: 200 segments of 1e-5 s = 2 ms > 1 ms (TR long enough for the duty cycle).
    let v = rejected(il.approve(wf(3, 1e-5, vec![0.0; 200], vec![0.0; 200]), 1.0, 0.0));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(matches!(v[0], Violation::Duration(_)));
    let s = v[0].to_string();
    assert!(s.contains("0.002") && s.contains("0.001"), "{s}");

    // Raster: dt 1.5e-5 s on a 1e-5 s raster.
    let v = rejected(il.approve(wf(4, 1.5e-5, vec![0.0; 4], vec![0.0; 4]), 1.0, 0.0));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(matches!(v[0], Violation::Raster(_)));
    let s = v[0].to_string();
    assert!(s.contains("0.000015") && s.contains("0.00001 s"), "{s}");

    // Duty cycle: 50 × 1e-5 s = 0.5 ms in a 2 ms TR = 0.25 > 0.1.
    let v = rejected(il.approve(wf(5, 1e-5, vec![0.0; 50], vec![0.0; 50]), 2e-3, 0.0));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(matches!(v[0], Violation::DutyCycle(_)));
    let s = v[0].to_string();
    assert!(s.contains("0.25") && s.contains("0.1"), "{s}");

    // Non-finite, empty, mismatched lengths.
    for (w, needle) in [
        (wf(6, 1e-5, vec![1.0, f64::NAN], vec![0.0; 2]), "NaN"),
        (wf(7, 1e-5, vec![], vec![]), "no segments"),
        (wf(8, 1e-5, vec![1.0; 3], vec![0.0; 2]), "expected 3, got 2"),
        (wf(9, -1e-5, vec![1.0; 3], vec![0.0; 3]), "-0.00001"),
        (wf(10, 1e-5, vec![f64::INFINITY], vec![0.0]), "inf"),
    ] {
        let v = rejected(il.approve(w, 0.01, 0.0));
        assert!(
            v.iter().any(|v| v.to_string().contains(needle)),
            "{needle}: {v:?}"
        );
    }
}

#[test]
fn multiple_violations_are_listed_together() {
    let mut il = Interlock::new(limits()).unwrap();
    // Peak 3000 > 1000, energy 150 × 3000² × 1.5e-5 ≫ 50, duration 2.25 ms > 1 ms, dt off the
    // raster, duty cycle 2.25 ms / 3 ms = 0.75 > 0.1.
    let w = wf(42, 1.5e-5, vec![3000.0; 150], vec![0.0; 150]);
    let err = il.approve(w, 3e-3, 0.0).unwrap_err();
    let text = err.to_string();
    let v = rejected(Err(err));
    assert_eq!(v.len(), 5, "{v:?}");
    assert!(v.iter().any(|v| v.to_string().contains("peak-B1")));
    assert!(v.iter().any(|v| v.to_string().contains("energy")));
    assert!(v.iter().any(|v| matches!(v, Violation::Duration(_))));
    assert!(v.iter().any(|v| matches!(v, Violation::Raster(_))));
    assert!(v.iter().any(|v| matches!(v, Violation::DutyCycle(_))));
    assert!(
        text.contains("waveform 42 rejected, 5 violation(s)"),
        "{text}"
    );
}

/// 4 samples of 256 Hz for 2⁻¹⁶ s: energy exactly 4 Hz²·s.
fn play(id: u64) -> Waveform {
    let dt = 1.0 / 65536.0;
    wf(id, dt, vec![256.0; 4], vec![0.0; 4])
}

fn window_limits(window_s: f64, budget: f64) -> ConsoleLimits {
    ConsoleLimits {
        raster_s: 1.0 / 65536.0,
        window: Some(EnergyWindow {
            window_s,
            max_energy_hz2s: budget,
        }),
        ..limits()
    }
}

#[test]
fn rolling_window_accounting() {
    let mut il = Interlock::new(window_limits(1.0, 12.0)).unwrap();
    for (i, t) in [0.0, 0.1, 0.2].into_iter().enumerate() {
        let a = il.approve(play(i as u64), 0.01, t).unwrap();
        assert_eq!(a.energy_hz2s(), 4.0);
    }
    assert_eq!(il.window_energy(0.3), (12.0, 3));
    let v = rejected(il.approve(play(3), 0.01, 0.3));
    assert_eq!(v.len(), 1);
    match &v[0] {
        Violation::WindowEnergy {
            energy_hz2s,
            play_hz2s,
            earlier,
            window_s,
            max_hz2s,
        } => {
            assert_eq!(
                (*energy_hz2s, *play_hz2s, *earlier, *window_s, *max_hz2s),
                (16.0, 4.0, 3, 1.0, 12.0)
            );
        }
        other => panic!("{other:?}"),
    }
    let s = v[0].to_string();
    assert!(s.contains("16") && s.contains("12"), "{s}");
    // The rejection used no budget: still rejected just before the first play leaves.
    assert!(il.approve(play(4), 0.01, 0.999).is_err());
    // At t = 1.0 the play at 0 has left the window: approved again, then full again.
    il.approve(play(5), 0.01, 1.0).unwrap();
    assert!(il.approve(play(6), 0.01, 1.0).is_err());
    // Long after, the whole budget is back.
    for i in 0..3 {
        il.approve(play(10 + i), 0.01, 5.0).unwrap();
    }
    assert!(il.approve(play(20), 0.01, 5.0).is_err());
}

#[test]
fn time_only_moves_forward() {
    let mut il = Interlock::new(window_limits(1.0, 12.0)).unwrap();
    il.approve(play(1), 0.01, 10.0).unwrap();
    match il.approve(play(2), 0.01, 9.5) {
        Err(SafetyError::TimeWentBackwards { now_s, latest_s }) => {
            assert_eq!((now_s, latest_s), (9.5, 10.0));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        il.approve(play(3), 0.01, f64::NAN),
        Err(SafetyError::InvalidTime(_))
    ));
    assert!(matches!(
        il.approve(play(3), 0.01, f64::NEG_INFINITY),
        Err(SafetyError::InvalidTime(_))
    ));
    // Equal time is fine; a rejected waveform's time still advances the clock.
    il.approve(play(4), 0.01, 10.0).unwrap();
    assert!(il.approve(wf(5, 1e-5, vec![], vec![]), 0.01, 11.0).is_err());
    assert_eq!(il.latest_time_s(), Some(11.0));
    assert!(matches!(
        il.approve(play(6), 0.01, 10.5),
        Err(SafetyError::TimeWentBackwards { .. })
    ));
}

#[test]
fn limits_are_validated_and_new_limits_are_conservative() {
    for bad in [
        ConsoleLimits {
            peak_b1_hz: f64::NAN,
            ..limits()
        },
        ConsoleLimits {
            max_duty_cycle: 1.5,
            ..limits()
        },
        ConsoleLimits {
            raster_s: 0.0,
            ..limits()
        },
        window_limits(-1.0, 1.0),
        window_limits(1.0, f64::INFINITY),
    ] {
        assert!(
            matches!(Interlock::new(bad), Err(SafetyError::InvalidLimits(_))),
            "{bad:?}"
        );
    }
    let mut il = Interlock::new(window_limits(1.0, 12.0)).unwrap();
    assert!(il.set_limits(window_limits(0.0, 1.0)).is_err());
    assert_eq!(il.limits(), &window_limits(1.0, 12.0));
    il.approve(play(1), 0.01, 0.0).unwrap();
    il.approve(play(2), 0.01, 0.5).unwrap();
    // Same window, a new hello: delivered energy still counts.
    il.set_limits(window_limits(1.0, 12.0)).unwrap();
    il.approve(play(3), 0.01, 0.6).unwrap();
    assert!(il.approve(play(4), 0.01, 0.7).is_err());
    // A longer window: plays before the memory are unknown, so a full budget is assumed spent
    // at the latest time seen (0.7) for one new window.
    il.set_limits(window_limits(10.0, 100.0)).unwrap();
    assert!(il.approve(play(5), 0.01, 5.0).is_err());
    assert!(il.approve(play(6), 0.01, 10.69).is_err());
    il.approve(play(7), 0.01, 10.7).unwrap();
    assert_eq!(il.limits().window.map(|w| w.window_s), Some(10.0));
}

#[test]
fn approved_waveform_reports_its_measures() {
    let mut il = Interlock::new(limits()).unwrap();
    let a = il
        .approve(wf(9, 2e-5, vec![300.0, 0.0], vec![400.0, 0.0]), 0.01, 2.0)
        .unwrap();
    assert_eq!(a.peak_hz(), 500.0);
    assert!((a.energy_hz2s() - 250_000.0 * 2e-5).abs() < 1e-12);
    assert_eq!(a.duration_s(), 4e-5);
    assert_eq!((a.tr_s(), a.approved_at_s(), a.id()), (0.01, 2.0, 9));
    assert_eq!(a.waveform().ux, vec![300.0, 0.0]);
}
