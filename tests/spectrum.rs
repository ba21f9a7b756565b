//! FID → spectrum processing: the normalization of integrals, apodization widths, phasing,
//! referencing, noise statistics and SNR, each against a closed-form expectation.

use num_complex::Complex64 as C64;
use spinloop::spectrum::processing::{
    NoiseSource, Phase, apodize_exponential, apodize_gaussian, integral, noise_std, peak_ppm,
    shift_frequency, snr, zero_fill,
};
use spinloop::spectrum::{SpectrumPlan, ppm_axis};

const F0: f64 = 123.2;
const CARRIER: f64 = 3.0;

/// s(t) = A·e^{(i2πf − π lw)t}.
fn line(points: usize, dwell: f64, amp: C64, f: f64, lw: f64) -> Vec<C64> {
    (0..points)
        .map(|m| {
            let t = m as f64 * dwell;
            amp * C64::new(
                -std::f64::consts::PI * lw * t,
                2.0 * std::f64::consts::PI * f * t,
            )
            .exp()
        })
        .collect()
}

fn spectrum(fid: &[C64]) -> Vec<C64> {
    SpectrumPlan::new(fid.len()).unwrap().spectrum(fid).unwrap()
}

/// Full width at half maximum of the real part around the maximum, by linear interpolation.
fn fwhm_hz(spec: &[C64], dwell: f64) -> f64 {
    let m = spec.len();
    let (imax, max) = spec
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.re))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let half = max / 2.0;
    let cross = |dir: isize| {
        let mut i = imax as isize;
        while spec[(i + dir) as usize].re > half {
            i += dir;
        }
        let (a, b) = (spec[i as usize].re, spec[(i + dir) as usize].re);
        i as f64 + dir as f64 * (a - half) / (a - b)
    };
    (cross(1) - cross(-1)) / (m as f64 * dwell)
}

#[test]
fn integral_over_the_whole_axis_is_the_fid_amplitude() {
    let (m, dwell) = (2048, 2.5e-4);
    let fid = line(m, dwell, C64::new(3.0, 0.0), 37.0, 4.0);
    let spec = spectrum(&fid);
    let ppm = ppm_axis(m, dwell, CARRIER, F0);
    let all = integral(&spec, &ppm, ppm[0], ppm[m - 1]).unwrap();
    // (2/M)·Σ S = 2·s'[0] = s[0] exactly (the first point is halved before the FFT).
    assert!((all - 3.0).abs() < 1e-12, "{all}");
    // A ±20-linewidth window keeps all but the Lorentzian tails: (2/π)·atan(W/γ).
    let f = 37.0;
    let w = 80.0;
    let part = integral(&spec, &ppm, CARRIER + (f - w) / F0, CARRIER + (f + w) / F0).unwrap();
    let expected = 3.0 * (2.0 / std::f64::consts::PI) * (w / 2.0f64).atan();
    assert!((part - expected).abs() < 0.01 * 3.0, "{part} vs {expected}");
}

#[test]
fn exponential_apodization_adds_its_width_exactly() {
    let (m, dwell) = (1024, 5e-4);
    let mut a = line(m, dwell, C64::new(1.0, 0.0), -20.0, 2.0);
    apodize_exponential(&mut a, dwell, 3.0).unwrap();
    let b = line(m, dwell, C64::new(1.0, 0.0), -20.0, 5.0);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).norm() < 1e-14);
    }
    let spec = spectrum(&zero_fill(&b, 16384).unwrap());
    let w = fwhm_hz(&spec, dwell);
    assert!((w - 5.0).abs() < 0.05, "Lorentzian FWHM {w}");
}

#[test]
fn gaussian_apodization_gives_its_fwhm() {
    let (m, dwell) = (4096, 5e-4);
    let mut fid = line(m, dwell, C64::new(1.0, 0.0), 12.0, 0.0);
    apodize_gaussian(&mut fid, dwell, 6.0).unwrap();
    let spec = spectrum(&zero_fill(&fid, 32768).unwrap());
    let w = fwhm_hz(&spec, dwell);
    assert!((w - 6.0).abs() < 0.06, "Gaussian FWHM {w}");
}

#[test]
fn zero_and_first_order_phase_restore_absorption() {
    let (m, dwell) = (2048, 2.5e-4);
    let ppm = ppm_axis(m, dwell, CARRIER, F0);
    // Frequencies on the grid (1/(M·dwell) = 1.953125 Hz) so the phased peak is purely real.
    for (f, phi) in [(25.0 * 1.953125, 0.7), (-41.0 * 1.953125, -2.1)] {
        let fid = line(m, dwell, C64::from_polar(1.0, phi), f, 3.0);
        let mut spec = spectrum(&fid);
        let at = CARRIER + f / F0;
        Phase {
            zero_rad: -phi,
            first_rad_per_ppm: 0.0,
            pivot_ppm: at,
        }
        .apply(&mut spec, &ppm)
        .unwrap();
        let j = ppm
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - at).abs().total_cmp(&(b.1 - at).abs()))
            .unwrap()
            .0;
        assert!(spec[j].im.abs() < 1e-9 * spec[j].re, "{}", spec[j]);
    }
    // A first-order phase is a linear function of ppm, zero at the pivot.
    let mut flat = vec![C64::new(1.0, 0.0); m];
    Phase {
        zero_rad: 0.0,
        first_rad_per_ppm: 0.5,
        pivot_ppm: 3.0,
    }
    .apply(&mut flat, &ppm)
    .unwrap();
    for (s, x) in flat.iter().zip(&ppm) {
        assert!((s - C64::from_polar(1.0, 0.5 * (x - 3.0))).norm() < 1e-12);
    }
}

#[test]
fn referencing_moves_the_peak_and_the_peak_search_finds_it() {
    let (m, dwell) = (4096, 2.5e-4);
    let ppm = ppm_axis(m, dwell, CARRIER, F0);
    let f = 0.027 * F0; // Cr at 3.027 ppm
    let mut fid = line(m, dwell, C64::new(3.0, 0.0), f + 7.3, 3.0); // 7.3 Hz mis-set
    let found = peak_ppm(&spectrum(&fid), &ppm, 2.9, 3.2).unwrap();
    assert!((found - (3.027 + 7.3 / F0)).abs() < 0.002, "{found}");
    shift_frequency(&mut fid, dwell, (found - 3.027) * F0).unwrap();
    let after = peak_ppm(&spectrum(&fid), &ppm, 2.9, 3.2).unwrap();
    assert!((after - 3.027).abs() < 0.002, "{after}");
}

#[test]
fn noise_statistics_and_snr() {
    let (m, dwell) = (4096, 2.5e-4);
    let ppm = ppm_axis(m, dwell, CARRIER, F0);
    let sigma = 0.01;
    let mut fid = vec![C64::new(0.0, 0.0); m];
    NoiseSource::new(11).add_to(&mut fid, sigma).unwrap();
    // Unnormalized FFT of white noise: each spectral point's real part has variance M·σ².
    let sd = noise_std(&spectrum(&fid), &ppm, 6.0, 9.0).unwrap();
    let expected = sigma * (m as f64).sqrt();
    assert!(
        (sd / expected - 1.0).abs() < 0.07,
        "noise sd {sd} vs {expected}"
    );

    let lw = 4.0;
    let mut sig = line(m, dwell, C64::new(1.0, 0.0), 0.0, lw);
    NoiseSource::new(12).add_to(&mut sig, sigma).unwrap();
    let s = snr(&spectrum(&sig), &ppm, (2.9, 3.1), (6.0, 9.0)).unwrap();
    // Peak of the sampled Lorentzian: Σ_m e^{−π lw t_m} − 1/2 = 1/(1 − e^{−π lw dwell}) − 1/2.
    let peak = 1.0 / (1.0 - (-std::f64::consts::PI * lw * dwell).exp()) - 0.5;
    let want = peak / expected;
    assert!((s / want - 1.0).abs() < 0.08, "SNR {s} vs {want}");
}

#[test]
fn noise_source_is_seeded_and_has_the_requested_variance() {
    let mut a = NoiseSource::new(5);
    let mut b = NoiseSource::new(5);
    let xs: Vec<C64> = (0..20000).map(|_| a.sample(2.0)).collect();
    let ys: Vec<C64> = (0..20000).map(|_| b.sample(2.0)).collect();
    assert_eq!(xs, ys);
    let var_re = xs.iter().map(|z| z.re * z.re).sum::<f64>() / xs.len() as f64;
    let var_im = xs.iter().map(|z| z.im * z.im).sum::<f64>() / xs.len() as f64;
    // Standard error of a variance estimate from n samples: σ²·√(2/n) = 0.04 here; allow 4 of them.
    assert!(
        (var_re - 4.0).abs() < 0.16 && (var_im - 4.0).abs() < 0.16,
        "{var_re} {var_im}"
    );
}

#[test]
fn bad_input_is_rejected_with_the_parameter_named() {
    let mut fid = vec![C64::new(1.0, 0.0); 8];
    let e = apodize_exponential(&mut fid, 0.0, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dwell"), "{e}");
    let e = apodize_gaussian(&mut fid, 1e-3, f64::NAN)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gb_hz"), "{e}");
    let e = zero_fill(&fid, 4).unwrap_err().to_string();
    assert!(e.contains("zero_fill"), "{e}");
    let ppm = ppm_axis(8, 1e-3, CARRIER, F0);
    let e = integral(&fid, &ppm, 10.0, 11.0).unwrap_err().to_string();
    assert!(e.contains("window"), "{e}");
    assert!(integral(&fid[..4], &ppm, 2.0, 4.0).is_err());
    assert!(NoiseSource::new(1).add_to(&mut fid, -1.0).is_err());
}
