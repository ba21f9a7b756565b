//! Spin-system model: molecules made of independent coupled fragments and singlet groups,
//! the static field, and the documented TOML/JSON file format that loads them.
//!
//! # File format
//! A molecule file (TOML or JSON, same structure) looks like:
//! ```toml
//! name = "Lac"
//! description = "lactate, A3X"
//!
//! [[fragments]]
//! name = "lactate"
//! weight = 1.0                      # optional, default 1
//! spins = [
//!   { label = "CH",  shift_ppm = 4.0974 },
//!   { label = "CH3", shift_ppm = 1.3142 },
//!   { label = "CH3", shift_ppm = 1.3142 },
//!   { label = "CH3", shift_ppm = 1.3142 },
//! ]
//! couplings = [                     # 1-based spin numbers, J in Hz
//!   { i = 1, j = 2, hz = 6.933 }, { i = 1, j = 3, hz = 6.933 }, { i = 1, j = 4, hz = 6.933 },
//! ]
//!
//! [[singlets]]                      # optional; k equivalent protons = one spin-1/2 of weight k
//! label = "CH3"
//! shift_ppm = 2.008
//! protons = 3
//! ```
//! `nucleus` (per spin, default `"1H"`) may be `1H`, `13C`, `15N`, `19F` or `31P`; the
//! simulator is homonuclear and rejects a fragment whose spins are not all the RF nucleus.
//! Unknown keys are rejected, so a typo never silently changes a molecule.

use serde::{Deserialize, Serialize};

use super::error::{PhysicsError, finite, positive};

/// Largest coupled fragment the dense Hilbert-space simulator accepts (dimension 2^8 = 256).
pub const MAX_SPINS: usize = 8;

/// Nuclear species with its gyromagnetic ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Nucleus {
    /// Proton.
    #[default]
    #[serde(rename = "1H")]
    H1,
    /// Carbon-13.
    #[serde(rename = "13C")]
    C13,
    /// Nitrogen-15.
    #[serde(rename = "15N")]
    N15,
    /// Fluorine-19.
    #[serde(rename = "19F")]
    F19,
    /// Phosphorus-31.
    #[serde(rename = "31P")]
    P31,
}

impl Nucleus {
    /// Gyromagnetic ratio γ/2π in MHz/T (CODATA / IUPAC values).
    pub fn gamma_mhz_per_t(self) -> f64 {
        match self {
            Nucleus::H1 => 42.577_478_5,
            Nucleus::C13 => 10.708_4,
            Nucleus::N15 => -4.316_4,
            Nucleus::F19 => 40.078_0,
            Nucleus::P31 => 17.235_1,
        }
    }
}

/// Static field, stored as the Larmor frequency f0 of the observed nucleus in MHz.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// Larmor frequency in MHz.
    pub f0_mhz: f64,
}

impl Field {
    /// The clinical "3 T" preset: 123.2 MHz (2.89 T for 1H).
    pub const THREE_T: Field = Field { f0_mhz: 123.2 };
    /// The 11.7 T spectrometer preset: 500.13 MHz.
    pub const ELEVEN_SEVEN_T: Field = Field { f0_mhz: 500.13 };

    /// Field from a Larmor frequency in MHz.
    pub fn from_mhz(f0_mhz: f64) -> Result<Field, PhysicsError> {
        positive("field.f0_mhz", f0_mhz)?;
        Ok(Field { f0_mhz })
    }

    /// Field from B0 in tesla for the given nucleus.
    pub fn from_tesla(b0_t: f64, nucleus: Nucleus) -> Result<Field, PhysicsError> {
        positive("field.b0_tesla", b0_t)?;
        Field::from_mhz(b0_t * nucleus.gamma_mhz_per_t().abs())
    }

    /// Parses `"3T"`, `"11.7T"` (the presets), `"123.2MHz"`, `"123.2"` (MHz) or `"2.89 T"`
    /// (converted with the 1H gyromagnetic ratio).
    pub fn parse(s: &str) -> Result<Field, PhysicsError> {
        let t = s.trim().to_ascii_lowercase().replace(' ', "");
        match t.as_str() {
            "3t" => return Ok(Field::THREE_T),
            "11.7t" => return Ok(Field::ELEVEN_SEVEN_T),
            _ => {}
        }
        let bad = || PhysicsError::invalid("field", s, "expected 3T, 11.7T, <MHz>MHz or <T>T");
        if let Some(v) = t.strip_suffix("mhz") {
            Field::from_mhz(v.parse().map_err(|_| bad())?)
        } else if let Some(v) = t.strip_suffix('t') {
            Field::from_tesla(v.parse().map_err(|_| bad())?, Nucleus::H1)
        } else {
            Field::from_mhz(t.parse().map_err(|_| bad())?)
        }
    }

    /// Offset in Hz of a shift `ppm` in the rotating frame at `carrier_ppm`.
    pub fn offset_hz(&self, ppm: f64, carrier_ppm: f64) -> f64 {
        (ppm - carrier_ppm) * self.f0_mhz
    }
}

/// One spin-1/2 of a coupled fragment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spin {
    /// Label, e.g. `H4'`.
    pub label: String,
    /// Chemical shift in ppm.
    pub shift_ppm: f64,
    /// Nucleus (default 1H).
    #[serde(default)]
    pub nucleus: Nucleus,
}

/// Scalar coupling between two spins of a fragment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coupling {
    /// First spin, 1-based.
    pub i: usize,
    /// Second spin, 1-based.
    pub j: usize,
    /// J in Hz (sign matters under strong coupling).
    pub hz: f64,
}

/// An independent coupled fragment, simulated with the full strong-coupling Hamiltonian.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    /// Name, e.g. `glutamyl`.
    pub name: String,
    /// Weight of the fragment's normalized signal (citrate's AB fragment: 2).
    #[serde(default = "one")]
    pub weight: f64,
    /// The spins.
    pub spins: Vec<Spin>,
    /// The couplings (each pair at most once).
    #[serde(default)]
    pub couplings: Vec<Coupling>,
}

fn one() -> f64 {
    1.0
}

/// A group of k magnetically equivalent, uncoupled protons: one spin-1/2 of weight k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingletGroup {
    /// Label, e.g. `CH3`.
    pub label: String,
    /// Shift in ppm.
    pub shift_ppm: f64,
    /// Number of equivalent protons (the weight).
    pub protons: u32,
    /// Nucleus (default 1H).
    #[serde(default)]
    pub nucleus: Nucleus,
}

/// A molecule: coupled fragments plus singlet groups, simulated independently and summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Molecule {
    /// Short name, e.g. `Glu`.
    pub name: String,
    /// Free text: full name and parameter source.
    #[serde(default)]
    pub description: String,
    /// Coupled fragments.
    #[serde(default)]
    pub fragments: Vec<Fragment>,
    /// Singlet groups.
    #[serde(default)]
    pub singlets: Vec<SingletGroup>,
}

impl Fragment {
    /// Builds a fragment from (label, ppm) spins and 1-based (i, j, J) couplings, validated.
    pub fn new(
        name: &str,
        weight: f64,
        spins: &[(&str, f64)],
        couplings: &[(usize, usize, f64)],
    ) -> Result<Fragment, PhysicsError> {
        let f = Fragment {
            name: name.to_string(),
            weight,
            spins: spins
                .iter()
                .map(|&(l, s)| Spin {
                    label: l.to_string(),
                    shift_ppm: s,
                    nucleus: Nucleus::H1,
                })
                .collect(),
            couplings: couplings
                .iter()
                .map(|&(i, j, hz)| Coupling { i, j, hz })
                .collect(),
        };
        f.validate(name)?;
        Ok(f)
    }

    /// Number of spins.
    pub fn n_spins(&self) -> usize {
        self.spins.len()
    }

    /// Checks sizes, finiteness and coupling indices; `path` prefixes field names in errors.
    pub fn validate(&self, path: &str) -> Result<(), PhysicsError> {
        let n = self.spins.len();
        if n == 0 {
            return Err(PhysicsError::invalid(
                format!("{path}.spins"),
                0,
                "a fragment needs at least one spin",
            ));
        }
        if n > MAX_SPINS {
            return Err(PhysicsError::TooManySpins {
                fragment: path.to_string(),
                spins: n,
                max: MAX_SPINS,
            });
        }
        positive(format!("{path}.weight"), self.weight)?;
        for (k, s) in self.spins.iter().enumerate() {
            finite(format!("{path}.spins[{k}].shift_ppm"), s.shift_ppm)?;
        }
        let mut seen = std::collections::HashSet::new();
        for (k, c) in self.couplings.iter().enumerate() {
            let f = format!("{path}.couplings[{k}]");
            for (name, idx) in [("i", c.i), ("j", c.j)] {
                if idx == 0 || idx > n {
                    return Err(PhysicsError::invalid(
                        format!("{f}.{name}"),
                        idx,
                        format!("no such spin: spins are numbered 1..={n}"),
                    ));
                }
            }
            if c.i == c.j {
                return Err(PhysicsError::invalid(
                    format!("{f}.j"),
                    c.j,
                    "a spin cannot couple to itself",
                ));
            }
            finite(format!("{f}.hz"), c.hz)?;
            if !seen.insert((c.i.min(c.j), c.i.max(c.j))) {
                return Err(PhysicsError::invalid(
                    f,
                    format!("({}, {})", c.i, c.j),
                    "pair coupled twice",
                ));
            }
        }
        Ok(())
    }
}

impl Molecule {
    /// Checks every fragment and singlet; errors name the offending field.
    pub fn validate(&self) -> Result<(), PhysicsError> {
        if self.name.trim().is_empty() {
            return Err(PhysicsError::invalid("name", "\"\"", "must not be empty"));
        }
        if self.fragments.is_empty() && self.singlets.is_empty() {
            return Err(PhysicsError::invalid(
                format!("{}.fragments", self.name),
                "[]",
                "a molecule needs at least one fragment or singlet",
            ));
        }
        for (k, f) in self.fragments.iter().enumerate() {
            f.validate(&format!("{}.fragments[{k}]", self.name))?;
        }
        for (k, s) in self.singlets.iter().enumerate() {
            let p = format!("{}.singlets[{k}]", self.name);
            finite(format!("{p}.shift_ppm"), s.shift_ppm)?;
            if s.protons == 0 {
                return Err(PhysicsError::invalid(
                    format!("{p}.protons"),
                    0,
                    "must be >= 1",
                ));
            }
        }
        Ok(())
    }

    /// Number of protons (spins of fragments weighted by fragment weight, plus singlet protons).
    pub fn proton_count(&self) -> f64 {
        self.fragments
            .iter()
            .map(|f| f.weight * f.spins.len() as f64)
            .sum::<f64>()
            + self.singlets.iter().map(|s| s.protons as f64).sum::<f64>()
    }

    /// All parts as simulation fragments: coupled fragments first, then each singlet group as a
    /// one-spin fragment whose weight is its proton count.
    pub fn simulation_fragments(&self) -> Vec<Fragment> {
        let mut v = self.fragments.clone();
        for s in &self.singlets {
            v.push(Fragment {
                name: s.label.clone(),
                weight: s.protons as f64,
                spins: vec![Spin {
                    label: s.label.clone(),
                    shift_ppm: s.shift_ppm,
                    nucleus: s.nucleus,
                }],
                couplings: vec![],
            });
        }
        v
    }

    /// Parses a TOML molecule file and validates it.
    pub fn from_toml(text: &str) -> Result<Molecule, PhysicsError> {
        let m: Molecule = toml::from_str(text)
            .map_err(|e| PhysicsError::Parse(format!("spin system (TOML): {e}")))?;
        m.validate()?;
        Ok(m)
    }

    /// Parses a JSON molecule file and validates it.
    pub fn from_json(text: &str) -> Result<Molecule, PhysicsError> {
        let m: Molecule = serde_json::from_str(text)
            .map_err(|e| PhysicsError::Parse(format!("spin system (JSON): {e}")))?;
        m.validate()?;
        Ok(m)
    }

    /// Loads a `.toml` or `.json` molecule file (chosen by extension; anything else is tried as
    /// TOML).
    pub fn from_path(path: &std::path::Path) -> Result<Molecule, PhysicsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PhysicsError::Parse(format!("spin system {}: {e}", path.display())))?;
        let parsed = if path.extension().and_then(|e| e.to_str()) == Some("json") {
            Molecule::from_json(&text)
        } else {
            Molecule::from_toml(&text)
        };
        parsed.map_err(|e| match e {
            PhysicsError::Parse(m) => PhysicsError::Parse(format!("{}: {m}", path.display())),
            // (m already says "spin system (TOML|JSON): …")
            other => other,
        })
    }

    /// Serializes to TOML (the documented format).
    pub fn to_toml(&self) -> Result<String, PhysicsError> {
        toml::to_string_pretty(self)
            .map_err(|e| PhysicsError::Parse(format!("spin system {}: {e}", self.name)))
    }
}
