//! Flat f64 kernels of the per-segment hot loop (Horner sweeps over coefficient tables, dot
//! products against them, elementwise phase rotation), compiled for AVX-512 and AVX2+FMA and
//! chosen at run time; a portable fallback covers other CPUs. Summation orders are fixed, so a
//! given machine always produces bit-identical results.

use num_complex::Complex64 as C64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512,
    Avx2,
    Portable,
}

#[inline]
fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Portable
}

#[inline(always)]
fn fmadd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Lanes per chunk of the interleaved coefficient layout.
pub const LANES: usize = 8;

/// Offset of coefficient `j` of flat element `i` in a table of `degree` coefficient matrices
/// laid out chunk-major: `[i / 8][j][i % 8]`, so a Horner sweep over one 8-lane chunk reads
/// `degree` consecutive 64-byte lines (no cache-set aliasing between coefficient matrices).
#[inline(always)]
pub fn table_index(i: usize, j: usize, degree: usize) -> usize {
    (i / LANES) * LANES * degree + j * LANES + (i % LANES)
}

/// Chunks processed together so that their Horner chains interleave (FMA latency hiding).
const GROUP: usize = 4;

/// Horner values of `G` consecutive chunks: Σ_j t^j C_j[chunk] (8 lanes each); the G chains
/// are independent, so their FMAs overlap.
#[inline(always)]
fn group_horner<const FMA: bool, const G: usize>(
    c: &[f64],
    degree: usize,
    t: f64,
) -> [[f64; LANES]; G] {
    let block = LANES * degree;
    let mut acc = [[0.0f64; LANES]; G];
    for g in 0..G {
        acc[g].copy_from_slice(&c[g * block + (degree - 1) * LANES..g * block + degree * LANES]);
    }
    for j in (0..degree - 1).rev() {
        for g in 0..G {
            let cj = &c[g * block + j * LANES..g * block + (j + 1) * LANES];
            for l in 0..LANES {
                acc[g][l] = fmadd::<FMA>(acc[g][l], t, cj[l]);
            }
        }
    }
    acc
}

/// out = Σ_j t^j C_j for a chunk-major table (see [`table_index`]); out.len() % 8 == 0.
#[inline(always)]
fn horner_impl<const FMA: bool>(coeffs: &[f64], degree: usize, t: f64, out: &mut [f64]) {
    let block = LANES * degree;
    let mut o = out.chunks_exact_mut(LANES * GROUP);
    let mut c = coeffs.chunks_exact(block * GROUP);
    for (og, cg) in (&mut o).zip(&mut c) {
        let h = group_horner::<FMA, GROUP>(cg, degree, t);
        for g in 0..GROUP {
            og[g * LANES..(g + 1) * LANES].copy_from_slice(&h[g]);
        }
    }
    for (o1, c1) in o
        .into_remainder()
        .chunks_exact_mut(LANES)
        .zip(c.remainder().chunks_exact(block))
    {
        o1.copy_from_slice(&group_horner::<FMA, 1>(c1, degree, t)[0]);
    }
}

/// Σ over chunks of k·h for Horner values h of `tables` (one accumulator set per table).
#[inline(always)]
fn poly_dots<const FMA: bool, const T: usize>(
    tables: [&[f64]; T],
    degree: usize,
    t: f64,
    k: &[f64],
) -> [f64; T] {
    let block = LANES * degree;
    let mut s = [[0.0f64; LANES]; T];
    let nchunks = k.len() / LANES;
    let groups = nchunks / GROUP;
    for gi in 0..groups {
        let kk = &k[gi * GROUP * LANES..(gi + 1) * GROUP * LANES];
        for (ti, tab) in tables.iter().enumerate() {
            let h = group_horner::<FMA, GROUP>(
                &tab[gi * GROUP * block..(gi + 1) * GROUP * block],
                degree,
                t,
            );
            for g in 0..GROUP {
                for l in 0..LANES {
                    s[ti][l] = fmadd::<FMA>(kk[g * LANES + l], h[g][l], s[ti][l]);
                }
            }
        }
    }
    for ci in groups * GROUP..nchunks {
        let kk = &k[ci * LANES..(ci + 1) * LANES];
        for (ti, tab) in tables.iter().enumerate() {
            let h = group_horner::<FMA, 1>(&tab[ci * block..(ci + 1) * block], degree, t);
            for l in 0..LANES {
                s[ti][l] = fmadd::<FMA>(kk[l], h[0][l], s[ti][l]);
            }
        }
    }
    let mut out = [0.0; T];
    for ti in 0..T {
        out[ti] = lane_sum(&s[ti]);
    }
    out
}

/// (⟨k, Σ_j t^j A_j⟩, ⟨k, Σ_j t^j B_j⟩) for two chunk-major tables, in one pass over `k`.
#[inline(always)]
fn poly_dot2_impl<const FMA: bool>(
    a: &[f64],
    b: &[f64],
    degree: usize,
    t: f64,
    k: &[f64],
) -> (f64, f64) {
    let [x, y] = poly_dots::<FMA, 2>([a, b], degree, t, k);
    (x, y)
}

/// ⟨k, Σ_j t^j C_j⟩ for a chunk-major table.
#[inline(always)]
fn poly_dot_impl<const FMA: bool>(coeffs: &[f64], degree: usize, t: f64, k: &[f64]) -> f64 {
    poly_dots::<FMA, 1>([coeffs], degree, t, k)[0]
}

#[inline(always)]
fn lane_sum(s: &[f64; LANES]) -> f64 {
    ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

#[inline(always)]
fn dot_impl<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0f64; 16];
    let chunks = a.len() / 16;
    for c in 0..chunks {
        let (x, y) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for l in 0..16 {
            s[l] = fmadd::<FMA>(x[l], y[l], s[l]);
        }
    }
    let mut tail = 0.0;
    for i in chunks * 16..a.len() {
        tail = fmadd::<FMA>(a[i], b[i], tail);
    }
    let mut h = [0.0f64; 8];
    for l in 0..8 {
        h[l] = s[l] + s[l + 8];
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7])) + tail
}

/// Contiguous blocks of equal total M: (first index, length, 2M).
pub type MBlocks = [(usize, usize, i32)];

/// x_pq ← x_pq·phase[m2_p − m2_q + off] for a d×d column-major matrix in an M-ordered basis:
/// the factor is constant on each (row block, column) run, so every run is a contiguous scaling.
#[inline(always)]
fn rotate_impl<const FMA: bool>(
    x: &mut [C64],
    d: usize,
    blocks: &MBlocks,
    phase: &[C64],
    off: i32,
) {
    for &(cs, cl, mc) in blocks {
        for q in cs..cs + cl {
            let col = &mut x[q * d..(q + 1) * d];
            for &(rs, rl, mr) in blocks {
                let z = phase[(mr - mc + off) as usize];
                for v in &mut col[rs..rs + rl] {
                    *v = C64::new(v.re * z.re - v.im * z.im, v.re * z.im + v.im * z.re);
                }
            }
        }
    }
}

/// x_pq ← x_pq·phase[m2_p + off] (left multiplication by a diagonal that is constant on each
/// M block).
#[inline(always)]
fn scale_rows_impl<const FMA: bool>(
    x: &mut [C64],
    d: usize,
    blocks: &MBlocks,
    phase: &[C64],
    off: i32,
) {
    for q in 0..d {
        let col = &mut x[q * d..(q + 1) * d];
        for &(rs, rl, mr) in blocks {
            let z = phase[(mr + off) as usize];
            for v in &mut col[rs..rs + rl] {
                *v = C64::new(v.re * z.re - v.im * z.im, v.re * z.im + v.im * z.re);
            }
        }
    }
}

/// Damped-phasor synthesis: for each output point, out = Σ_tr A_tr·z_tr, then z_tr ← z_tr·s_tr.
/// Split (re, im) arrays whose length is a multiple of 8 (padded with A = 0, s = 1).
#[inline(always)]
fn synth_impl<const FMA: bool>(
    ar: &[f64],
    ai: &[f64],
    sr: &[f64],
    si: &[f64],
    zr: &mut [f64],
    zi: &mut [f64],
    out: &mut [C64],
) {
    for o in out.iter_mut() {
        let mut accr = [0.0f64; LANES];
        let mut acci = [0.0f64; LANES];
        for c in 0..ar.len() / LANES {
            let r = c * LANES..(c + 1) * LANES;
            let (ar, ai, sr, si) = (
                &ar[r.clone()],
                &ai[r.clone()],
                &sr[r.clone()],
                &si[r.clone()],
            );
            let (zr, zi) = (&mut zr[r.clone()], &mut zi[r]);
            for l in 0..LANES {
                let (x, y) = (zr[l], zi[l]);
                accr[l] = fmadd::<FMA>(ar[l], x, fmadd::<FMA>(-ai[l], y, accr[l]));
                acci[l] = fmadd::<FMA>(ar[l], y, fmadd::<FMA>(ai[l], x, acci[l]));
                zr[l] = fmadd::<FMA>(x, sr[l], -y * si[l]);
                zi[l] = fmadd::<FMA>(x, si[l], y * sr[l]);
            }
        }
        *o = C64::new(lane_sum(&accr), lane_sum(&acci));
    }
}

/// Adjoint of [`synth_impl`]: G_tr += Σ_m g_m·conj(z_tr(m)), stepping z the same way. Loops
/// over 8-transition chunks outside and points inside, so z and G stay in registers.
#[inline(always)]
fn correlate_impl<const FMA: bool>(
    g: &[C64],
    sr: &[f64],
    si: &[f64],
    zr: &mut [f64],
    zi: &mut [f64],
    gr: &mut [f64],
    gi: &mut [f64],
) {
    for c in 0..sr.len() / LANES {
        let r = c * LANES..(c + 1) * LANES;
        let (mut xr, mut xi) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (mut ar, mut ai) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (mut stepr, mut stepi) = ([0.0f64; LANES], [0.0f64; LANES]);
        xr.copy_from_slice(&zr[r.clone()]);
        xi.copy_from_slice(&zi[r.clone()]);
        ar.copy_from_slice(&gr[r.clone()]);
        ai.copy_from_slice(&gi[r.clone()]);
        stepr.copy_from_slice(&sr[r.clone()]);
        stepi.copy_from_slice(&si[r.clone()]);
        for gm in g {
            let (a, b) = (gm.re, gm.im);
            for l in 0..LANES {
                let (x, y) = (xr[l], xi[l]);
                // (a + ib)(x − iy) = (ax + by) + i(bx − ay)
                ar[l] = fmadd::<FMA>(a, x, fmadd::<FMA>(b, y, ar[l]));
                ai[l] = fmadd::<FMA>(b, x, fmadd::<FMA>(-a, y, ai[l]));
                xr[l] = fmadd::<FMA>(x, stepr[l], -y * stepi[l]);
                xi[l] = fmadd::<FMA>(x, stepi[l], y * stepr[l]);
            }
        }
        zr[r.clone()].copy_from_slice(&xr);
        zi[r.clone()].copy_from_slice(&xi);
        gr[r.clone()].copy_from_slice(&ar);
        gi[r].copy_from_slice(&ai);
    }
}

macro_rules! dispatch {
    ($name:ident, $impl:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        mod $name {
            use super::*;
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,fma")]
            pub(super) unsafe fn avx512($($arg: $ty),*) -> $ret { $impl::<true>($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn avx2($($arg: $ty),*) -> $ret { $impl::<true>($($arg),*) }
        }
        #[doc = concat!("Runtime-dispatched `", stringify!($impl), "`.")]
        #[inline]
        pub fn $name($($arg: $ty),*) -> $ret {
            match level() {
                // SAFETY: the features were detected at run time.
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => unsafe { $name::avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => unsafe { $name::avx2($($arg),*) },
                _ => $impl::<false>($($arg),*),
            }
        }
    };
}

dispatch!(horner, horner_impl, (coeffs: &[f64], degree: usize, t: f64, out: &mut [f64]) -> ());
dispatch!(dot, dot_impl, (a: &[f64], b: &[f64]) -> f64);
dispatch!(poly_dot, poly_dot_impl, (coeffs: &[f64], degree: usize, t: f64, k: &[f64]) -> f64);
dispatch!(
    poly_dot2,
    poly_dot2_impl,
    (a: &[f64], b: &[f64], degree: usize, t: f64, k: &[f64]) -> (f64, f64)
);

dispatch!(rotate, rotate_impl, (x: &mut [C64], d: usize, blocks: &MBlocks, phase: &[C64], off: i32) -> ());
dispatch!(
    scale_rows_blocks,
    scale_rows_impl,
    (x: &mut [C64], d: usize, blocks: &MBlocks, phase: &[C64], off: i32) -> ()
);
dispatch!(
    synthesize,
    synth_impl,
    (ar: &[f64], ai: &[f64], sr: &[f64], si: &[f64], zr: &mut [f64], zi: &mut [f64], out: &mut [C64]) -> ()
);
dispatch!(
    correlate,
    correlate_impl,
    (g: &[C64], sr: &[f64], si: &[f64], zr: &mut [f64], zi: &mut [f64], gr: &mut [f64], gi: &mut [f64]) -> ()
);
