//! Bruker TopSpin raw data: an experiment directory (`<name>/<expno>/`) holding the parameter
//! file `acqus` and the raw FID `fid` (1D) or `ser` (nD). This module owns [`Acqus`] (the
//! parsed parameter file), [`BrukerFid`] and its reader [`read_experiment`] (in memory:
//! [`BrukerFid::from_bytes`]), the raw decoder [`decode_fid`], the digital-filter correction
//! [`remove_digital_filter`] with the DECIM/DSPFVS group-delay table
//! ([`dsp_table_group_delay`], [`group_delay_from_acqus`]), and the writer
//! [`write_experiment`] used by the tests and by `spinloop simulate --bruker`.
//!
//! # Format facts and their sources
//! Sources: `shared/reference/interop.md` §2b; jjhelmus/nmrglue `nmrglue/fileio/bruker.py`
//! (developer notes, `read`, `guess_shape`, `read_jcamp`, `rm_dig_filter`, `bruker_dsp_table`;
//! the behaviour of nmrglue 0.12 was checked by running it); the Dmfit Bruker file-format page
//! <https://nmr.cemhti.cnrs-orleans.fr/Dmfit/Help/FileFormat/BrukerFileFormat.aspx>.
//! - `fid`: interleaved real, imaginary values (re = values 0, 2, 4…; im = 1, 3, 5…). Value
//!   type from `##$DTYPA=`: 0 = int32, 1 = float32 (defined, rarely used; nmrglue 0.12 refuses
//!   it), 2 = float64. Byte order from `##$BYTORDA=`: 0 = little-endian, 1 = big-endian.
//! - `##$TD=` counts **real** values: complex points = TD/2.
//! - Every FID starts on a 1024-byte boundary: TopSpin pads a `fid` file, and every FID of a
//!   `ser` file, with zeros to the next multiple of 1024 bytes (256 int32 or 128 float64 values;
//!   Bruker acquisition reference manual, parameter NBL, as quoted in nmrglue `guess_shape`,
//!   which notes that it holds for 1D `fid` files too and reads them that way).
//! - `acqus` is Bruker JCAMP-DX: `##TITLE=`, `##JCAMP-DX=`, `##DATATYPE=`, `##ORIGIN=`,
//!   `##OWNER=`, `$$` comment lines, then `##$KEY= value` lines in alphabetical order, strings
//!   in `<...>`, arrays as `##$P= (0..63)` with the values on the following lines, and a final
//!   `##END=`.
//! - Keys used here: `TD`, `DTYPA`, `BYTORDA`, `AQ_mod` (0 qf = real only, 1 qsim, 2 qseq,
//!   3 DQD), `SW_h` (Hz), `SFO1` (MHz, = BF1 + O1·10⁻⁶), `BF1` (MHz), `O1` (Hz), `NUC1`,
//!   `NS`, `GRPDLY`, `DECIM`, `DSPFVS`, `DIGMOD`. Dwell per complex point = 1/SW_h (Bruker's
//!   `DW` is per real value, 1/(2·SW_h)).
//! - Digital filter: the oversampling digital filter of AVANCE consoles delays the signal by a
//!   (usually fractional) number of points, the *group delay*: the raw FID is ~0 for about
//!   `GRPDLY` points (≈ 67–76 typically) before the signal starts. Current data record it in
//!   `GRPDLY`; older data (XWIN-NMR era: `GRPDLY` absent or −1) need the DECIM/DSPFVS table
//!   of W. M. Westler and F. Abildgaard, in nmrglue's un-rounded form (nmrglue: firmware with
//!   DSPFVS ≥ 14 needs no table correction).
//!
//! # Reader rules
//! - [`Acqus::parse`]: blank lines are skipped; lines starting with `$$` are comments; every
//!   other line is a `##LABEL= value` line or the continuation of an array or string. Labels
//!   without `$` (`##TITLE=`, …) are the core header (kept, in order, in [`Acqus::core`]);
//!   `##$KEY= value` lines are parameters. Keys must be ASCII letters, digits and `_`; lookups
//!   ignore case, and two keys that differ only in case are a duplicate (an error, like any
//!   repeated key). Values: `<text>` is a string (it may span lines; stored without the
//!   brackets), `(a..b)` declares an array of b−a+1 values read from the rest of the line and
//!   the following lines (strings in `<...>` may contain blanks), anything else is a scalar kept
//!   as text with a trailing `$$` comment removed. `##END=` is required (a file without it is
//!   truncated); text after it is ignored. Errors name the file and the line.
//! - Required parameters: `TD` (even, > 0), `BYTORDA` (0 or 1), `SW_h` (finite, > 0), `SFO1`
//!   (finite, > 0), `NUC1` (non-empty), and `BF1` or `O1` (the other is derived from
//!   SFO1 = BF1 + O1·10⁻⁶; when both are given they must agree with SFO1 within 1 Hz).
//!   `DTYPA` defaults to 0 (int32, nmrglue's default) and must be 0, 1 or 2. `AQ_mod`, when present, must be 1 (qsim) or 3 (DQD): 0 (qf) and 2
//!   (qseq) are real-valued acquisitions, refused. `NS`, when present, must be an integer ≥ 0.
//! - Binary: `<dir>/fid` if it exists, else `<dir>/ser`, whose **first FID** is read (it starts
//!   at byte 0; the following FIDs, each starting on the next 1024-byte boundary, are ignored).
//!   The bytes needed are TD × (4 or 8); a shorter file is an error ([`PhysicsError::SizeMismatch`]),
//!   a `fid` may be longer only by its padding to the next multiple of 1024 bytes (the padding's
//!   content is ignored), a longer `fid` is an error (TD does not describe the file). No buffer is
//!   sized from a header value before that value has been checked against the file length.
//! - Every decoded value must be finite (float data). Values are returned as stored: no scaling
//!   by NS, RG or NC.
//! - Group delay ([`group_delay_from_acqus`]): `GRPDLY` if present and > 0; else 0 if
//!   `DIGMOD` = 0 (analog filtering); else, with `DSPFVS` and `DECIM`, nmrglue's rule (DSPFVS
//!   ≥ 14 → 0, otherwise the table; a pair missing from the table is an error); else 0 if
//!   `GRPDLY` = 0 is given explicitly (files written by [`write_experiment`]); otherwise an
//!   error (the group delay cannot be determined, and ignoring it would leave a first-order
//!   phase of ~70·2π across the spectrum).
//! - Errors: syntax → [`PhysicsError::Parse`] naming the file (and line); out-of-domain
//!   values → [`PhysicsError::InvalidParameter`] with field `"<file> ##$KEY"` (or
//!   `"<file> value i …"` for samples); wrong lengths → [`PhysicsError::SizeMismatch`].
//!
//! # Digital-filter removal
//! [`remove_digital_filter`] advances the FID by G = group delay points and drops the ⌊G⌋
//! trailing points whose source time lies past the end of the acquisition: with X = FFT(s)
//! (numpy's sign), X_k ← X_k·e^{+2πi·G·k/N} where k is the **signed** frequency index
//! (numpy `fftfreq` order: 0…⌈N/2⌉−1, then −⌊N/2⌋…−1), then s' = IFFT(X), whose point m
//! is the band-limited (periodic) interpolation of s at m + G; points m ≥ N − G come from the
//! wrapped filter rise and are dropped, so the result has N − ⌊G⌋ points. For integral G this
//! is exactly s\[G..\], which is what is computed (no FFT, bit-exact); G = 0 returns s unchanged.
//! Differences from nmrglue's default `rm_dig_filter` (written to match NMRPipe), on purpose:
//! nmrglue truncates G to ⌊G⌋ (leaving a first-order phase of 2π·frac(G)·k/N, which a fit would
//! have to absorb), uses the unsigned index k = 0…N−1 (for fractional G this puts a phase step of
//! 2π·frac(G) between the positive and negative halves of the spectrum), and drops ⌊G⌋ + 2
//! trailing points after adding reversed trailing points onto the first ⌊G⌋ − 4 (an empirical
//! NMRPipe match). Here the fraction is kept, the phase ramp is continuous across the spectrum
//! (an on-grid or off-grid line keeps its amplitude and phase), and exactly the wrapped points go.
//!
//! # Sign and phase convention of the returned FID
//! spinloop's convention is NIfTI-MRS's: a resonance at a positive offset f from the carrier
//! (higher ppm) appears at +f in S = fftshift(fft(s)) (numpy's sign, e^{−2πi·kn/N}), with
//! ppm = carrier + f/f0. A TopSpin raw FID read as re + i·im (nmrglue's `complexify_data`)
//! **already follows it: no conjugation and no spectrum reversal is applied.** Evidence:
//! 1. nmrglue `examples/bruker_processed_1d/dig_filter_remove.py` (PR #67, compared against
//!    TopSpin 3.5pl7 and NMRPipe on one dataset) plots `ng.proc_base.fft(raw fid)` — which is
//!    fftshift(fft(s)) — next to TopSpin's own processed spectrum `pdata/1/1r` **reversed**
//!    (`[::-1]`). TopSpin stores `1r` from the highest ppm (procs `OFFSET`) downwards, so the
//!    reversed spectrum has ppm increasing with index; the two agreeing means fftshift(fft(s))
//!    of the raw FID puts higher ppm at higher (more positive) frequency.
//! 2. nmrglue's Bruker recipe (`examples/bruker_data/process_and_plot_nmrglue.py`, confirmed by a
//!    maintainer in nmrglue issue #176) is `proc_base.fft` then `proc_base.rev`, to match
//!    nmrglue's ppm scale, which *decreases* with index (`fileiobase.unit_conversion`:
//!    delta = −sw/size): before the reversal, ppm increases with frequency index — again positive
//!    offset ↔ positive frequency.
//!
//! Counter-indication, recorded but not followed: FID-A's `io_loadspec_brukNMR.m` reads TopSpin
//! data as −i·(re + i·im) (a 90° phase, no conjugation) into FID-A's convention (spectrum =
//! fftshift(ifft(s)), ppm decreasing with index), which would imply the opposite sense; that
//! function hard-codes a 4.65 ppm centre and was not compared with TopSpin output. ParaVision
//! `fid` files (a different acquisition and reconstruction chain, not read here) are conjugated
//! by spec2nii for NIfTI-MRS (`spec2nii/bruker.py`, `_prep_data_svs`).
//!
//! The zero-order phase is the receiver's (TopSpin's PHC0/PHC1 live in `procs` and are not
//! applied) and is left to the fit. [`BrukerFid::carrier_ppm`] = O1/BF1 places the carrier on
//! the ppm scale referenced to BF1 (TopSpin's SR, a processing parameter, is not applied).
//!
//! # Writer
//! [`write_experiment`] writes `acqus` (core header, a `$$` comment, then AQ_mod = 3, BF1,
//! BYTORDA = 0, DTYPA = 2, GRPDLY, NUC1, O1, SFO1, SW, SW_h, TD in alphabetical order, numbers in
//! Rust's shortest round-trip form, `##END=`) and `fid` (float64 little-endian, padded with
//! zeros to a multiple of 1024 bytes, as TopSpin does and as nmrglue 0.12's reader expects). An
//! existing `acqus`/`fid` in `dir` is overwritten. The FID is written as given: a group delay
//! recorded in GRPDLY describes data that already contain that delay.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use num_complex::Complex64 as C64;
use rustfft::FftPlanner;

use super::bruker::excerpt;
use crate::physics::PhysicsError;

/// Every FID in a `fid` or `ser` file starts on a multiple of this many bytes.
pub const FID_BLOCK_BYTES: usize = 1024;

/// nmrglue's un-rounded DECIM → group delay (points) tables for DSPFVS 10–13 (Westler and
/// Abildgaard's table; nmrglue `bruker_dsp_table`).
const DSP_TABLE: [(i64, &[(i64, f64)]); 4] = [
    (
        10,
        &[
            (2, 44.75),
            (3, 33.5),
            (4, 66.625),
            (6, 59.083333333333336),
            (8, 68.5625),
            (12, 60.375),
            (16, 69.53125),
            (24, 61.020833333333336),
            (32, 70.015625),
            (48, 61.34375),
            (64, 70.2578125),
            (96, 61.505208333333336),
            (128, 70.37890625),
            (192, 61.5859375),
            (256, 70.439453125),
            (384, 61.626302083333336),
            (512, 70.4697265625),
            (768, 61.646484375),
            (1024, 70.48486328125),
            (1536, 61.656575520833336),
            (2048, 70.492431640625),
        ],
    ),
    (
        11,
        &[
            (2, 46.0),
            (3, 36.5),
            (4, 48.0),
            (6, 50.166666666666664),
            (8, 53.25),
            (12, 69.5),
            (16, 72.25),
            (24, 70.16666666666667),
            (32, 72.75),
            (48, 70.5),
            (64, 73.0),
            (96, 70.66666666666667),
            (128, 72.5),
            (192, 71.33333333333333),
            (256, 72.25),
            (384, 71.66666666666667),
            (512, 72.125),
            (768, 71.83333333333333),
            (1024, 72.0625),
            (1536, 71.91666666666667),
            (2048, 72.03125),
        ],
    ),
    (
        12,
        &[
            (2, 46.0),
            (3, 36.5),
            (4, 48.0),
            (6, 50.166666666666664),
            (8, 53.25),
            (12, 69.5),
            (16, 71.625),
            (24, 70.16666666666667),
            (32, 72.125),
            (48, 70.5),
            (64, 72.375),
            (96, 70.66666666666667),
            (128, 72.5),
            (192, 71.33333333333333),
            (256, 72.25),
            (384, 71.66666666666667),
            (512, 72.125),
            (768, 71.83333333333333),
            (1024, 72.0625),
            (1536, 71.91666666666667),
            (2048, 72.03125),
        ],
    ),
    (
        13,
        &[
            (2, 2.75),
            (3, 2.8333333333333335),
            (4, 2.875),
            (6, 2.9166666666666665),
            (8, 2.9375),
            (12, 2.9583333333333335),
            (16, 2.96875),
            (24, 2.9791666666666665),
            (32, 2.984375),
            (48, 2.9895833333333335),
            (64, 2.9921875),
            (96, 2.9947916666666665),
        ],
    ),
];

/// The group delay (points) of the DECIM/DSPFVS table for DSPFVS 10–13, or `None` when the pair
/// is not in it. (DSPFVS ≥ 14 firmware records GRPDLY instead; see [`group_delay_from_acqus`].)
pub fn dsp_table_group_delay(dspfvs: i64, decim: i64) -> Option<f64> {
    DSP_TABLE
        .iter()
        .find(|(v, _)| *v == dspfvs)
        .and_then(|(_, rows)| rows.iter().find(|(d, _)| *d == decim))
        .map(|&(_, g)| g)
}

// ---------------------------------------------------------------------------------------------
// acqus
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Key as written (without `##$`).
    key: String,
    /// 1-based line of the `##$KEY=` label.
    line: usize,
    /// Scalar text, string content, or the array's values joined by one blank.
    text: String,
    /// The values of an array parameter.
    array: Option<Vec<String>>,
}

/// Parsed acqus (Bruker JCAMP-DX parameter file): every `##$KEY= value` kept (arrays `(0..n)`
/// with values on following lines too), plus the core header lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Acqus {
    source: String,
    core: Vec<(String, String)>,
    entries: Vec<Entry>,
    /// Upper-case key → index into `entries`.
    index: HashMap<String, usize>,
}

fn acqus_error(source: &str, line: usize, msg: impl std::fmt::Display) -> PhysicsError {
    PhysicsError::Parse(format!("Bruker acqus {source}: line {line}: {msg}"))
}

/// The text without a trailing `$$` comment, trimmed.
fn strip_comment(value: &str) -> &str {
    match value.find("$$") {
        Some(i) => value[..i].trim(),
        None => value.trim(),
    }
}

/// Splits array values: blank-separated tokens, `<...>` strings kept whole (brackets removed).
fn tokenize(text: &str, source: &str, line: usize) -> Result<Vec<String>, PhysicsError> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("$$") {
            break;
        }
        if let Some(body) = rest.strip_prefix('<') {
            let Some(end) = body.find('>') else {
                return Err(acqus_error(
                    source,
                    line,
                    format!("unterminated string in array values: {:?}", excerpt(rest)),
                ));
            };
            out.push(body[..end].to_string());
            rest = body[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

/// Parses `(a..b)` → number of values b − a + 1.
fn array_count(header: &str) -> Option<u64> {
    let inner = header.strip_prefix('(')?.strip_suffix(')')?;
    let (a, b) = inner.split_once("..")?;
    let a: i64 = a.trim().parse().ok()?;
    let b: i64 = b.trim().parse().ok()?;
    let n = (b as i128) - (a as i128) + 1;
    u64::try_from(n).ok()
}

impl Acqus {
    /// Parses the text of an `acqus` file; `source` (a path or name) is used in errors. See the
    /// module's reader rules.
    pub fn parse(text: &str, source: &str) -> Result<Acqus, PhysicsError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.lines().collect();
        let mut acqus = Acqus {
            source: source.to_string(),
            core: Vec::new(),
            entries: Vec::new(),
            index: HashMap::new(),
        };
        let mut ended = false;
        let mut i = 0usize;
        while i < lines.len() {
            let lineno = i + 1;
            let line = lines[i].trim();
            i += 1;
            if line.is_empty() || line.starts_with("$$") {
                continue;
            }
            let Some(rest) = line.strip_prefix("##") else {
                return Err(acqus_error(
                    source,
                    lineno,
                    format!(
                        "unexpected line {:?} (parameters start with ##$, comments with $$)",
                        excerpt(line)
                    ),
                ));
            };
            let Some((label, value)) = rest.split_once('=') else {
                return Err(acqus_error(
                    source,
                    lineno,
                    format!("expected `##LABEL= value`, got {:?}", excerpt(line)),
                ));
            };
            let label = label.trim();
            let Some(key) = label.strip_prefix('$') else {
                let norm: String = label
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '\t' | '-' | '_' | '/'))
                    .flat_map(char::to_uppercase)
                    .collect();
                if norm == "END" {
                    ended = true;
                    break;
                }
                if norm.is_empty() {
                    return Err(acqus_error(source, lineno, "empty label `##=`"));
                }
                acqus
                    .core
                    .push((label.to_string(), strip_comment(value).to_string()));
                continue;
            };
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(acqus_error(
                    source,
                    lineno,
                    format!(
                        "malformed parameter name {:?} (expected letters, digits and _)",
                        excerpt(key)
                    ),
                ));
            }
            let upper = key.to_ascii_uppercase();
            if let Some(&first) = acqus.index.get(&upper) {
                let f = &acqus.entries[first];
                return Err(acqus_error(
                    source,
                    lineno,
                    format!(
                        "duplicate parameter ##${key}= (##${}= on line {}; keys ignore case)",
                        f.key, f.line
                    ),
                ));
            }
            let value = value.trim();
            let entry = if let Some(body) = value.strip_prefix('<') {
                // String, possibly over several lines.
                let content = if let Some(inner) = body.strip_suffix('>') {
                    inner.to_string()
                } else if body.contains('>') {
                    return Err(acqus_error(
                        source,
                        lineno,
                        format!("text after the closing > of ##${key}= {:?}", excerpt(value)),
                    ));
                } else {
                    let mut content = body.to_string();
                    loop {
                        let Some(next) = lines.get(i) else {
                            return Err(acqus_error(
                                source,
                                lineno,
                                format!("unterminated string value of ##${key}= (no closing >)"),
                            ));
                        };
                        let next = next.trim_end();
                        if next.trim_start().starts_with("##") {
                            return Err(acqus_error(
                                source,
                                i + 1,
                                format!(
                                    "unterminated string value of ##${key}= (line {lineno}): \
                                     the next label starts before the closing >"
                                ),
                            ));
                        }
                        i += 1;
                        if let Some(inner) = next.strip_suffix('>') {
                            content.push('\n');
                            content.push_str(inner);
                            break;
                        }
                        if next.contains('>') {
                            return Err(acqus_error(
                                source,
                                i,
                                format!("text after the closing > of ##${key}="),
                            ));
                        }
                        content.push('\n');
                        content.push_str(next);
                    }
                    content
                };
                Entry {
                    key: key.to_string(),
                    line: lineno,
                    text: content,
                    array: None,
                }
            } else if value.starts_with('(') {
                let Some(close) = value.find(')') else {
                    return Err(acqus_error(
                        source,
                        lineno,
                        format!("malformed array header in ##${key}= {:?}", excerpt(value)),
                    ));
                };
                let header = &value[..=close];
                let Some(count) = array_count(header) else {
                    return Err(acqus_error(
                        source,
                        lineno,
                        format!(
                            "malformed array header {:?} in ##${key}= (expected (a..b) with \
                             integers b >= a - 1)",
                            excerpt(header)
                        ),
                    ));
                };
                let mut values = tokenize(&value[close + 1..], source, lineno)?;
                while (values.len() as u64) < count {
                    let Some(next) = lines.get(i) else {
                        return Err(acqus_error(
                            source,
                            lineno,
                            format!(
                                "array ##${key}= {header} declares {count} values, the file \
                                 ends after {}",
                                values.len()
                            ),
                        ));
                    };
                    let next = next.trim();
                    if next.starts_with("##") {
                        return Err(acqus_error(
                            source,
                            i + 1,
                            format!(
                                "array ##${key}= {header} (line {lineno}) declares {count} \
                                 values, only {} before the next label",
                                values.len()
                            ),
                        ));
                    }
                    i += 1;
                    if next.starts_with("$$") {
                        continue;
                    }
                    values.extend(tokenize(next, source, i)?);
                }
                if values.len() as u64 > count {
                    return Err(acqus_error(
                        source,
                        i.max(lineno),
                        format!(
                            "array ##${key}= {header} (line {lineno}) declares {count} values, \
                             got {}",
                            values.len()
                        ),
                    ));
                }
                Entry {
                    key: key.to_string(),
                    line: lineno,
                    text: values.join(" "),
                    array: Some(values),
                }
            } else {
                Entry {
                    key: key.to_string(),
                    line: lineno,
                    text: strip_comment(value).to_string(),
                    array: None,
                }
            };
            acqus.index.insert(upper, acqus.entries.len());
            acqus.entries.push(entry);
        }
        if !ended {
            if lines.iter().all(|l| l.trim().is_empty()) {
                return Err(PhysicsError::Parse(format!(
                    "Bruker acqus {source}: the file is empty"
                )));
            }
            return Err(acqus_error(
                source,
                lines.len(),
                "no ##END= (file truncated?)",
            ));
        }
        Ok(acqus)
    }

    /// The file or name given to [`Acqus::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Core header lines (`##TITLE=` …, labels without `$`), in file order, as (label, value).
    pub fn core(&self) -> &[(String, String)] {
        &self.core
    }

    /// Parameter keys (without `##$`) in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        let key = key.strip_prefix("##").unwrap_or(key);
        let key = key.strip_prefix('$').unwrap_or(key);
        self.index
            .get(&key.to_ascii_uppercase())
            .map(|&i| &self.entries[i])
    }

    /// The value of `##$KEY=` (key without `##$`, case-insensitive): scalar text, string
    /// content without `<>`, or an array's values joined by one blank.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.text.as_str())
    }

    /// 1-based line of `##$KEY=`.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.entry(key).map(|e| e.line)
    }

    /// The values of an array parameter (e.g. `P`, `PLW`); `None` if absent or not an array.
    pub fn get_array(&self, key: &str) -> Option<&[String]> {
        self.entry(key).and_then(|e| e.array.as_deref())
    }

    /// `##$KEY=` as a number: `Ok(None)` if absent, an error naming the file, line and key if
    /// it is not a number (NaN and infinities parse; callers check the domain).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, PhysicsError> {
        self.get_parsed(key, "a number")
    }

    /// `##$KEY=` as an integer: `Ok(None)` if absent, an error naming the file, line and key if
    /// it is not an integer.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, PhysicsError> {
        self.get_parsed(key, "an integer")
    }

    /// `##$KEY=` parsed as `T` (`what` names the expected kind in errors).
    fn get_parsed<T: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, PhysicsError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        if e.array.is_some() {
            return Err(acqus_error(
                &self.source,
                e.line,
                format!("##${}= is an array, expected {what}", e.key),
            ));
        }
        e.text.trim().parse::<T>().map(Some).map_err(|_| {
            acqus_error(
                &self.source,
                e.line,
                format!("##${}= {:?} is not {what}", e.key, excerpt(&e.text)),
            )
        })
    }

    /// Field name used in [`PhysicsError::InvalidParameter`]: `"<file> ##$KEY"`.
    fn field(&self, key: &str) -> String {
        match self.entry(key) {
            Some(e) => format!("{} ##${} (line {})", self.source, e.key, e.line),
            None => format!("{} ##${key}", self.source),
        }
    }

    fn missing(&self, key: &str, what: &str) -> PhysicsError {
        PhysicsError::Parse(format!(
            "Bruker acqus {}: missing ##${key}= ({what})",
            self.source
        ))
    }

    fn require_f64(&self, key: &str, what: &str) -> Result<f64, PhysicsError> {
        self.get_f64(key)?.ok_or_else(|| self.missing(key, what))
    }

    fn require_i64(&self, key: &str, what: &str) -> Result<i64, PhysicsError> {
        self.get_i64(key)?.ok_or_else(|| self.missing(key, what))
    }

    fn positive(&self, key: &str, what: &str) -> Result<f64, PhysicsError> {
        let v = self.require_f64(key, what)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(PhysicsError::invalid(
                self.field(key),
                v,
                "must be finite and > 0",
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw data
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    I32,
    F32,
    F64,
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Real values (TD).
    td: usize,
    ty: ValueType,
    big_endian: bool,
}

impl Layout {
    fn width(&self) -> usize {
        match self.ty {
            ValueType::I32 | ValueType::F32 => 4,
            ValueType::F64 => 8,
        }
    }

    /// Bytes of one FID (checked: TD · width fits in usize).
    fn bytes(&self, acqus: &Acqus) -> Result<usize, PhysicsError> {
        self.td.checked_mul(self.width()).ok_or_else(|| {
            PhysicsError::invalid(acqus.field("TD"), self.td, "too large for this machine")
        })
    }

    fn from_acqus(acqus: &Acqus) -> Result<Layout, PhysicsError> {
        let td = acqus.require_i64("TD", "number of real values of the FID")?;
        if td <= 0 {
            return Err(PhysicsError::invalid(acqus.field("TD"), td, "must be > 0"));
        }
        if td % 2 != 0 {
            return Err(PhysicsError::invalid(
                acqus.field("TD"),
                td,
                "must be even: TD counts real values, re and im interleaved",
            ));
        }
        let td = usize::try_from(td).map_err(|_| {
            PhysicsError::invalid(acqus.field("TD"), td, "too large for this machine")
        })?;
        let ty = match acqus.get_i64("DTYPA")? {
            None | Some(0) => ValueType::I32,
            Some(1) => ValueType::F32,
            Some(2) => ValueType::F64,
            Some(v) => {
                return Err(PhysicsError::invalid(
                    acqus.field("DTYPA"),
                    v,
                    "must be 0 (int32), 1 (float32) or 2 (float64)",
                ));
            }
        };
        let big_endian = match acqus.require_i64("BYTORDA", "byte order: 0 little, 1 big")? {
            0 => false,
            1 => true,
            v => {
                return Err(PhysicsError::invalid(
                    acqus.field("BYTORDA"),
                    v,
                    "must be 0 (little-endian) or 1 (big-endian)",
                ));
            }
        };
        if let Some(m) = acqus.get_i64("AQ_mod")? {
            match m {
                1 | 3 => {}
                0 | 2 => {
                    return Err(PhysicsError::invalid(
                        acqus.field("AQ_mod"),
                        m,
                        "qf (0) and qseq (2) are real-valued acquisitions; only complex \
                         qsim (1) and DQD (3) data are supported",
                    ));
                }
                _ => {
                    return Err(PhysicsError::invalid(
                        acqus.field("AQ_mod"),
                        m,
                        "unknown acquisition mode (expected 1 qsim or 3 DQD)",
                    ));
                }
            }
        }
        Ok(Layout { td, ty, big_endian })
    }
}

/// Rounds `n` up to a multiple of [`FID_BLOCK_BYTES`] (saturating).
fn padded(n: usize) -> usize {
    n.div_ceil(FID_BLOCK_BYTES)
        .saturating_mul(FID_BLOCK_BYTES)
        .max(n)
}

/// The size error for a binary file of `got` bytes that does not fit TD.
fn size_error(
    kind: &str,
    source: &str,
    layout: &Layout,
    acqus: &Acqus,
    got: usize,
) -> PhysicsError {
    let need = layout.td.saturating_mul(layout.width());
    let short = got < need;
    PhysicsError::SizeMismatch {
        what: format!(
            "Bruker {kind} {source}: bytes for TD = {} values of {} bytes{} (##$TD in {})",
            layout.td,
            layout.width(),
            if short {
                "; the file is truncated or TD is too large".to_string()
            } else {
                format!(
                    " padded to a multiple of {FID_BLOCK_BYTES}; the file is longer: TD does not \
                     describe it"
                )
            },
            acqus.source()
        ),
        expected: if short { need } else { padded(need) },
        got,
    }
}

/// Decodes raw fid bytes per DTYPA (0 int32, 2 float64; 1 float32; absent = 0) and BYTORDA (0
/// little, 1 big); TD counts real numbers. `bytes` holds one FID, optionally followed by its
/// padding to the next multiple of 1024 bytes; `source` (the fid file) is named in errors.
/// Every value must be finite.
pub fn decode_fid(bytes: &[u8], acqus: &Acqus, source: &str) -> Result<Vec<C64>, PhysicsError> {
    let layout = Layout::from_acqus(acqus)?;
    let need = layout.bytes(acqus)?;
    let w = layout.width();
    if bytes.len() < need || bytes.len() > padded(need) {
        return Err(size_error("fid", source, &layout, acqus, bytes.len()));
    }
    let value = |i: usize| -> f64 {
        let b = &bytes[i * w..(i + 1) * w];
        match (layout.ty, layout.big_endian) {
            (ValueType::I32, false) => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            (ValueType::I32, true) => f64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            (ValueType::F32, false) => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            (ValueType::F32, true) => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            (ValueType::F64, false) => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            (ValueType::F64, true) => {
                f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
        }
    };
    let points = layout.td / 2;
    let mut fid = Vec::with_capacity(points);
    for k in 0..points {
        let re = value(2 * k);
        let im = value(2 * k + 1);
        for (v, part, i) in [(re, "real", 2 * k), (im, "imaginary", 2 * k + 1)] {
            if !v.is_finite() {
                return Err(PhysicsError::invalid(
                    format!("Bruker fid {source} value {i} ({part} part of point {k})"),
                    v,
                    "must be finite",
                ));
            }
        }
        fid.push(C64::new(re, im));
    }
    Ok(fid)
}

// ---------------------------------------------------------------------------------------------
// Digital filter
// ---------------------------------------------------------------------------------------------

/// The digital-filter group delay (points) described by `acqus`, by the rule of the module doc:
/// GRPDLY > 0; else 0 if DIGMOD = 0; else the DECIM/DSPFVS table (DSPFVS ≥ 14 → 0); else 0 if
/// GRPDLY = 0 is given; else an error.
pub fn group_delay_from_acqus(acqus: &Acqus) -> Result<f64, PhysicsError> {
    let grpdly = acqus.get_f64("GRPDLY")?;
    if let Some(g) = grpdly {
        if g.is_nan() || g.is_infinite() {
            return Err(PhysicsError::invalid(
                acqus.field("GRPDLY"),
                g,
                "must be finite",
            ));
        }
        if g > 0.0 {
            return Ok(g);
        }
    }
    if acqus.get_i64("DIGMOD")? == Some(0) {
        return Ok(0.0);
    }
    if let (Some(dspfvs), Some(decim)) = (acqus.get_i64("DSPFVS")?, acqus.get_i64("DECIM")?) {
        if dspfvs >= 14 {
            return Ok(0.0);
        }
        return dsp_table_group_delay(dspfvs, decim).ok_or_else(|| {
            PhysicsError::invalid(
                acqus.field("DECIM"),
                decim,
                format!(
                    "(DECIM, DSPFVS = {dspfvs}) is not in the group-delay table (DSPFVS 10-13) \
                     and GRPDLY is not given"
                ),
            )
        });
    }
    if grpdly == Some(0.0) {
        return Ok(0.0);
    }
    Err(PhysicsError::Parse(format!(
        "Bruker acqus {}: cannot determine the digital-filter group delay: no ##$GRPDLY= > 0, \
         no ##$DIGMOD= 0, and not both ##$DECIM= and ##$DSPFVS=",
        acqus.source()
    )))
}

/// Removes the digital-filter group delay: advances `fid` by `group_delay` points (FFT →
/// X_k·e^{+2πi·G·k/N} with the signed frequency index k → inverse FFT; for integral G, the
/// exact shift s\[G..\]) and drops the ⌊G⌋ trailing points that came from the wrapped filter
/// rise, so the result has N − ⌊G⌋ points. See the module doc for why this differs from
/// nmrglue's default. `group_delay` must be finite, ≥ 0 and leave at least one point; values
/// so large that the FFT overflows (|value|·N beyond the f64 range) are an error.
pub fn remove_digital_filter(fid: &[C64], group_delay: f64) -> Result<Vec<C64>, PhysicsError> {
    let n = fid.len();
    if n == 0 {
        return Err(PhysicsError::invalid("fid", "[]", "needs at least 1 point"));
    }
    if !group_delay.is_finite() || group_delay < 0.0 {
        return Err(PhysicsError::invalid(
            "group_delay",
            group_delay,
            "must be finite and >= 0",
        ));
    }
    let whole = group_delay.floor();
    if whole >= n as f64 {
        return Err(PhysicsError::invalid(
            "group_delay",
            group_delay,
            format!("must be < the FID length ({n} points) so that a point remains"),
        ));
    }
    let whole = whole as usize;
    if group_delay == whole as f64 {
        return Ok(fid[whole..].to_vec());
    }
    let mut planner = FftPlanner::<f64>::new();
    let mut buf = fid.to_vec();
    planner.plan_fft_forward(n).process(&mut buf);
    let half = n.div_ceil(2); // indices >= half are negative frequencies
    let scale = 1.0 / n as f64;
    for (k, x) in buf.iter_mut().enumerate() {
        let signed = if k < half {
            k as f64
        } else {
            k as f64 - n as f64
        };
        let phase = 2.0 * std::f64::consts::PI * group_delay * signed / n as f64;
        *x *= C64::from_polar(scale, phase);
    }
    planner.plan_fft_inverse(n).process(&mut buf);
    buf.truncate(n - whole);
    // Finite values near f64::MAX overflow in the FFT's sums (found by fuzzing, regression
    // `tests/fuzz/regressions/bruker_fid/`): an error, not a FID of infinities and NaNs.
    if let Some(m) = buf
        .iter()
        .position(|z| !(z.re.is_finite() && z.im.is_finite()))
    {
        return Err(PhysicsError::invalid(
            "fid",
            format!("{n} points"),
            format!(
                "values too large for the digital-filter correction: point {m} overflows \
                 (the FFT sums the points; keep them far below 1e308)"
            ),
        ));
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Experiment
// ---------------------------------------------------------------------------------------------

/// A TopSpin experiment read by [`read_experiment`].
#[derive(Debug, Clone, PartialEq)]
pub struct BrukerFid {
    /// Complex FID in spinloop's convention (see module doc), digital-filter group delay removed.
    pub fid: Vec<C64>,
    /// Dwell per complex point (s) = 1/SW_h.
    pub dwell: f64,
    /// SFO1 (MHz): the carrier frequency.
    pub spectrometer_mhz: f64,
    /// BF1 (MHz).
    pub bf1_mhz: f64,
    /// O1 (Hz).
    pub o1_hz: f64,
    /// Nucleus, e.g. "1H" (from NUC1).
    pub nucleus: String,
    /// Group delay in points that was removed (GRPDLY, or from the DECIM/DSPFVS table; 0 if
    /// none).
    pub group_delay: f64,
    /// Number of scans NS (if present).
    pub scans: Option<u64>,
    /// The parsed parameter file.
    pub acqus: Acqus,
}

impl BrukerFid {
    /// The carrier on the ppm scale referenced to BF1: O1/BF1 (Hz/MHz = ppm). With
    /// [`crate::spectrum::ppm_axis`]`(n, dwell, carrier_ppm, spectrometer_mhz)` this gives
    /// TopSpin's ppm scale when SR = 0.
    pub fn carrier_ppm(&self) -> f64 {
        self.o1_hz / self.bf1_mhz
    }

    /// In-memory form of [`read_experiment`]: `acqus` is the text of the parameter file
    /// (bytes that are not UTF-8 are replaced, as when reading the file), `binary` the whole
    /// `fid` file, or (`ser` = true) a `ser` file or any prefix of it that holds its first FID;
    /// `acqus_source` and `binary_source` name them in errors. Same rules and errors as
    /// [`read_experiment`]; nothing is allocated from a header value before it has been checked
    /// against `binary.len()`.
    pub fn from_bytes(
        acqus: &[u8],
        acqus_source: &str,
        binary: &[u8],
        binary_source: &str,
        ser: bool,
    ) -> Result<BrukerFid, PhysicsError> {
        let acqus = Acqus::parse(&String::from_utf8_lossy(acqus), acqus_source)?;
        experiment_from_parts(acqus, binary, ser, binary_source)
    }
}

fn read_error(path: &Path, what: &str, e: impl std::fmt::Display) -> PhysicsError {
    PhysicsError::Parse(format!(
        "Bruker {what} {}: cannot read: {e}",
        path.display()
    ))
}

/// Reads `<dir>/acqus` and `<dir>/fid`; without a `fid`, a `ser` file is read as its first FID
/// (at byte 0; the next FIDs start on 1024-byte boundaries and are ignored). Validates as the
/// module doc says, removes the digital-filter group delay ([`group_delay_from_acqus`],
/// [`remove_digital_filter`]) and returns the FID in spinloop's convention (raw re + i·im: no
/// conjugation is needed for TopSpin data; see the module doc for the evidence).
pub fn read_experiment(dir: &Path) -> Result<BrukerFid, PhysicsError> {
    if !dir.is_dir() {
        return Err(PhysicsError::Parse(format!(
            "Bruker experiment {}: not a directory",
            dir.display()
        )));
    }
    let acqus_path = dir.join("acqus");
    let acqus_bytes = fs::read(&acqus_path).map_err(|e| read_error(&acqus_path, "acqus", e))?;
    let acqus = Acqus::parse(
        &String::from_utf8_lossy(&acqus_bytes),
        &acqus_path.display().to_string(),
    )?;

    let fid_path = dir.join("fid");
    let ser_path = dir.join("ser");
    let (bin_path, is_ser) = if fid_path.is_file() {
        (fid_path, false)
    } else if ser_path.is_file() {
        (ser_path, true)
    } else {
        return Err(PhysicsError::Parse(format!(
            "Bruker experiment {}: no fid or ser file",
            dir.display()
        )));
    };
    let source = bin_path.display().to_string();

    // Size checks before any buffer is sized from TD; only the first FID of a ser is read.
    let layout = Layout::from_acqus(&acqus)?;
    let need = layout.bytes(&acqus)?;
    let mut file = fs::File::open(&bin_path).map_err(|e| read_error(&bin_path, "fid", e))?;
    let len = file
        .metadata()
        .map_err(|e| read_error(&bin_path, "fid", e))?
        .len();
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len < need || (!is_ser && len > padded(need)) {
        let kind = if is_ser { "ser" } else { "fid" };
        return Err(size_error(kind, &source, &layout, &acqus, len));
    }
    let take = len.min(padded(need));
    let mut bytes = Vec::with_capacity(take);
    (&mut file)
        .take(take as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(&bin_path, "fid", e))?;
    experiment_from_parts(acqus, &bytes, is_ser, &source)
}

/// The part of [`read_experiment`] after the files are read: `binary` is the `fid`, or the
/// start of a `ser` (only its first FID is used).
fn experiment_from_parts(
    acqus: Acqus,
    binary: &[u8],
    is_ser: bool,
    source: &str,
) -> Result<BrukerFid, PhysicsError> {
    let layout = Layout::from_acqus(&acqus)?;
    let need = layout.bytes(&acqus)?;
    let len = binary.len();
    if len < need || (!is_ser && len > padded(need)) {
        let kind = if is_ser { "ser" } else { "fid" };
        return Err(size_error(kind, source, &layout, &acqus, len));
    }
    let raw = decode_fid(&binary[..len.min(padded(need))], &acqus, source)?;

    let sw_h = acqus.positive("SW_h", "spectral width in Hz")?;
    let sfo1 = acqus.positive("SFO1", "carrier frequency in MHz")?;
    let bf1 = acqus.get_f64("BF1")?;
    let o1 = acqus.get_f64("O1")?;
    if let Some(b) = bf1
        && !(b.is_finite() && b > 0.0)
    {
        return Err(PhysicsError::invalid(
            acqus.field("BF1"),
            b,
            "must be finite and > 0",
        ));
    }
    if let Some(o) = o1
        && !o.is_finite()
    {
        return Err(PhysicsError::invalid(
            acqus.field("O1"),
            o,
            "must be finite",
        ));
    }
    let (bf1, o1) = match (bf1, o1) {
        (Some(b), Some(o)) => {
            let mismatch_hz = (b + o * 1e-6 - sfo1) * 1e6;
            if mismatch_hz.abs() > 1.0 {
                return Err(PhysicsError::invalid(
                    acqus.field("SFO1"),
                    sfo1,
                    format!(
                        "must equal BF1 + O1·1e-6 = {b} + {o}·1e-6 MHz (differs by \
                         {mismatch_hz:.3} Hz)"
                    ),
                ));
            }
            (b, o)
        }
        (Some(b), None) => (b, (sfo1 - b) * 1e6),
        (None, Some(o)) => (sfo1 - o * 1e-6, o),
        (None, None) => {
            return Err(acqus.missing("BF1", "basic frequency in MHz; or ##$O1= in Hz"));
        }
    };
    if !(bf1.is_finite() && bf1 > 0.0) {
        return Err(PhysicsError::invalid(
            acqus.field("O1"),
            o1,
            format!("gives BF1 = SFO1 − O1·1e-6 = {bf1} MHz, which must be > 0"),
        ));
    }
    let nucleus = acqus
        .get("NUC1")
        .ok_or_else(|| acqus.missing("NUC1", "observed nucleus, e.g. <1H>"))?
        .trim()
        .to_string();
    if nucleus.is_empty() || nucleus.eq_ignore_ascii_case("off") {
        return Err(PhysicsError::invalid(
            acqus.field("NUC1"),
            format!("{nucleus:?}"),
            "must name the observed nucleus, e.g. 1H",
        ));
    }
    let scans = match acqus.get_i64("NS")? {
        None => None,
        Some(ns) => Some(
            u64::try_from(ns)
                .map_err(|_| PhysicsError::invalid(acqus.field("NS"), ns, "must be >= 0"))?,
        ),
    };
    let group_delay = group_delay_from_acqus(&acqus)?;
    if group_delay.floor() >= raw.len() as f64 {
        return Err(PhysicsError::invalid(
            acqus.field(if acqus.get("GRPDLY").is_some() {
                "GRPDLY"
            } else {
                "DECIM"
            }),
            group_delay,
            format!(
                "the group delay must be shorter than the FID ({} complex points)",
                raw.len()
            ),
        ));
    }
    let fid = remove_digital_filter(&raw, group_delay)?;
    Ok(BrukerFid {
        fid,
        dwell: 1.0 / sw_h,
        spectrometer_mhz: sfo1,
        bf1_mhz: bf1,
        o1_hz: o1,
        nucleus,
        group_delay,
        scans,
        acqus,
    })
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writes an experiment directory (acqus + fid, DTYPA=2 float64 little-endian, GRPDLY as given,
/// O1 = 0 so BF1 = SFO1); see the module doc. Used by tests and by `spinloop simulate --bruker`.
pub fn write_experiment(
    dir: &Path,
    fid: &[C64],
    dwell: f64,
    spectrometer_mhz: f64,
    nucleus: &str,
    group_delay: f64,
) -> Result<(), PhysicsError> {
    write_experiment_with_offset(dir, fid, dwell, spectrometer_mhz, 0.0, nucleus, group_delay)
}

/// [`write_experiment`] with a carrier offset: SFO1 = `spectrometer_mhz`, O1 = `o1_hz`,
/// BF1 = SFO1 − O1·10⁻⁶ (so [`BrukerFid::carrier_ppm`] of the file read back is O1/BF1).
pub fn write_experiment_with_offset(
    dir: &Path,
    fid: &[C64],
    dwell: f64,
    spectrometer_mhz: f64,
    o1_hz: f64,
    nucleus: &str,
    group_delay: f64,
) -> Result<(), PhysicsError> {
    if fid.is_empty() {
        return Err(PhysicsError::invalid("fid", "[]", "needs at least 1 point"));
    }
    let td = fid
        .len()
        .checked_mul(2)
        .filter(|&td| td <= i32::MAX as usize)
        .ok_or_else(|| {
            PhysicsError::invalid(
                "fid",
                format!("{} points", fid.len()),
                "TD = 2·points must fit a TopSpin integer (< 2^31)",
            )
        })?;
    for (k, s) in fid.iter().enumerate() {
        if !(s.re.is_finite() && s.im.is_finite()) {
            return Err(PhysicsError::invalid(
                format!("fid[{k}]"),
                s,
                "must be finite",
            ));
        }
    }
    if !(dwell.is_finite() && dwell > 0.0 && (1.0 / dwell).is_finite()) {
        return Err(PhysicsError::invalid(
            "dwell",
            dwell,
            "must be finite and > 0 (with 1/dwell finite)",
        ));
    }
    if !(spectrometer_mhz.is_finite() && spectrometer_mhz > 0.0) {
        return Err(PhysicsError::invalid(
            "spectrometer_mhz",
            spectrometer_mhz,
            "must be finite and > 0",
        ));
    }
    if !o1_hz.is_finite() {
        return Err(PhysicsError::invalid("o1_hz", o1_hz, "must be finite"));
    }
    let bf1 = spectrometer_mhz - o1_hz * 1e-6;
    if bf1.is_nan() || bf1 <= 0.0 {
        return Err(PhysicsError::invalid(
            "o1_hz",
            o1_hz,
            format!("gives BF1 = {bf1} MHz; must be > 0"),
        ));
    }
    let nuc = nucleus.trim();
    if nuc.is_empty() || nuc.contains(['<', '>', '\r', '\n']) || nuc.eq_ignore_ascii_case("off") {
        return Err(PhysicsError::invalid(
            "nucleus",
            format!("{nucleus:?}"),
            "must be a nucleus name such as 1H (one line, no < or >)",
        ));
    }
    if !(group_delay.is_finite() && group_delay >= 0.0 && group_delay.floor() < fid.len() as f64) {
        return Err(PhysicsError::invalid(
            "group_delay",
            group_delay,
            format!(
                "must be finite, >= 0 and < the FID length ({} points)",
                fid.len()
            ),
        ));
    }
    let sw_h = 1.0 / dwell;

    let mut acqus = String::new();
    let version = env!("CARGO_PKG_VERSION");
    acqus.push_str(&format!("##TITLE= Parameter file, spinloop {version}\n"));
    acqus.push_str("##JCAMP-DX= 5.0\n");
    acqus.push_str("##DATATYPE= Parameter Values\n");
    acqus.push_str("##ORIGIN= spinloop\n");
    acqus.push_str("##OWNER= spinloop\n");
    acqus.push_str(&format!(
        "$$ simulated FID written by spinloop {version}; float64 little-endian\n"
    ));
    let params: [(&str, String); 11] = [
        ("AQ_mod", "3".to_string()),
        ("BF1", format!("{bf1:?}")),
        ("BYTORDA", "0".to_string()),
        ("DTYPA", "2".to_string()),
        ("GRPDLY", format!("{group_delay:?}")),
        ("NUC1", format!("<{nuc}>")),
        ("O1", format!("{o1_hz:?}")),
        ("SFO1", format!("{spectrometer_mhz:?}")),
        ("SW", format!("{:?}", sw_h / spectrometer_mhz)),
        ("SW_h", format!("{sw_h:?}")),
        ("TD", td.to_string()),
    ];
    for (k, v) in &params {
        acqus.push_str(&format!("##${k}= {v}\n"));
    }
    acqus.push_str("##END=\n");

    let need = td * 8;
    let mut bytes = Vec::with_capacity(padded(need));
    for s in fid {
        bytes.extend_from_slice(&s.re.to_le_bytes());
        bytes.extend_from_slice(&s.im.to_le_bytes());
    }
    bytes.resize(padded(need), 0);

    let write_err = |path: &Path, e: std::io::Error| {
        PhysicsError::invalid("path", path.display(), format!("cannot write: {e}"))
    };
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let acqus_path = dir.join("acqus");
    super::write_atomic(&acqus_path, acqus.as_bytes()).map_err(|e| write_err(&acqus_path, e))?;
    let fid_path = dir.join("fid");
    super::write_atomic(&fid_path, &bytes).map_err(|e| write_err(&fid_path, e))?;
    Ok(())
}
