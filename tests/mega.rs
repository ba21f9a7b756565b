//! MEGA-PRESS editing of GABA at 3 T, TE 68 ms (validation case 8).

use num_complex::Complex64 as C64;
use spinloop::physics::{Field, Member, SimOptions, Simulator, library};
use spinloop::sequence::builders::{PulseSpec, acquisition, mega_press};
use spinloop::sequence::shapes::Shape;
use spinloop::spectrum::{SpectrumPlan, ppm_axis};

const F0: f64 = 123.2;
const CARRIER: f64 = 3.0;

/// ON − OFF spectrum of GABA with refocusing flip `refocus` (rad).
fn edited(refocus: f64) -> (Vec<f64>, Vec<C64>) {
    let gauss = Shape::gaussian(14e-3, 700, 0.01).unwrap();
    let ex = PulseSpec::ideal_excitation();
    let rf = PulseSpec::Ideal {
        flip: refocus,
        phase: 0.0,
    };
    let acq = acquisition(4096, 2.5e-4, 3.0).unwrap();
    let fid = |edit_ppm: f64| {
        let edit =
            PulseSpec::shaped_at(&gauss, std::f64::consts::PI, 0.0, (edit_ppm - CARRIER) * F0)
                .unwrap();
        let seq = mega_press(0.015, 0.053, &ex, &rf, &rf, &edit, acq).unwrap();
        let mut sim = Simulator::new(
            vec![library::gaba()],
            Field::THREE_T,
            CARRIER,
            vec![Member::NOMINAL],
            SimOptions::default(),
        )
        .unwrap();
        sim.simulate(&seq.experiment).unwrap().fid(0, 0).to_vec()
    };
    let on = fid(1.9);
    let off = fid(7.5);
    let diff: Vec<C64> = on.iter().zip(&off).map(|(a, b)| a - b).collect();
    let spec = SpectrumPlan::new(4096).unwrap().spectrum(&diff).unwrap();
    (ppm_axis(4096, 2.5e-4, CARRIER, F0), spec)
}

/// (outer-line ppm and heights, centre height) of the edited multiplet near 3.01 ppm.
fn multiplet(ppm: &[f64], spec: &[C64]) -> ((f64, f64), (f64, f64), f64) {
    let pts: Vec<(f64, f64)> = ppm
        .iter()
        .zip(spec)
        .filter(|(p, _)| (2.88..=3.15).contains(*p))
        .map(|(p, s)| (*p, s.re))
        .collect();
    let peak_in = |lo: f64, hi: f64| {
        pts.iter()
            .filter(|(p, _)| *p >= lo && *p <= hi)
            .fold(
                (0.0, f64::MIN),
                |a, &(p, v)| if v > a.1 { (p, v) } else { a },
            )
    };
    let centre = 3.0128;
    let low = peak_in(2.88, centre - 0.03);
    let high = peak_in(centre + 0.03, 3.15);
    let mid = peak_in(centre - 0.015, centre + 0.015).1;
    (low, high, mid)
}

/// Validation case 8: the GABA C4 multiplet of the ON − OFF difference at TE 68 ms shows two
/// outer lines (the edited triplet's outer lines, 2J ≈ 15 Hz apart) of slightly unequal height
/// (strong coupling) and a small centre line, which grows as the refocusing flip departs from
/// 180°.
#[test]
fn gaba_edited_multiplet_has_two_outer_lines_and_a_small_centre() {
    let (ppm, ideal) = edited(std::f64::consts::PI);
    let ((pl, hl), (ph, hh), mid) = multiplet(&ppm, &ideal);
    let split_hz = (ph - pl) * F0;
    println!(
        "180°: outer lines {pl:.4} ({hl:.1}) and {ph:.4} ({hh:.1}), {split_hz:.1} Hz apart; centre {mid:.1}"
    );
    assert!(
        (split_hz - 15.0).abs() < 2.0,
        "outer lines {split_hz} Hz apart"
    );
    assert!(
        ((pl + ph) / 2.0 - 3.0128).abs() < 0.01,
        "multiplet centred at {}",
        (pl + ph) / 2.0
    );
    let ratio = hl.min(hh) / hl.max(hh);
    assert!(
        ratio > 0.75 && ratio < 0.99,
        "outer heights {hl} and {hh}: ratio {ratio}"
    );
    let centre_fraction = mid / hl.max(hh);
    assert!(centre_fraction < 0.3, "centre {mid} vs outer {hl}, {hh}");

    let (ppm2, imperfect) = edited(0.85 * std::f64::consts::PI);
    let ((_, hl2), (_, hh2), mid2) = multiplet(&ppm2, &imperfect);
    let centre_fraction2 = mid2 / hl2.max(hh2);
    println!(
        "153°: outer {hl2:.1}, {hh2:.1}; centre {mid2:.1} ({:.2} vs {:.2} of the outer line)",
        centre_fraction2, centre_fraction
    );
    assert!(
        centre_fraction2 > centre_fraction * 1.3,
        "centre does not grow: {centre_fraction2} vs {centre_fraction}"
    );
}
