//! The built-in metabolite library: every spin system of `shared/reference/metabolites.md`
//! (Govindaraju et al. 2000 with the 2015 GABA corrigendum, as carried by spant and FID-A).
//!
//! Choices pinned here:
//! - Glu uses the spant/FID-A pairing of the H3–H4 couplings (J24 6.413, J25 8.406, J34 8.478,
//!   J35 6.875).
//! - `GABA` is the corrigendum set; `GABA_Near` the Near et al. (MRM 2013) set.
//! - Exchangeable protons (Gln amide NH2, NAA NH) are omitted, as in water-suppressed in-vivo
//!   spectra.
//! - Equivalent protons inside a coupled fragment (lactate CH3, GABA CH2 pairs) are explicit
//!   spins; uncoupled groups are singlet groups weighted by their proton count.
//! - Citrate's two equivalent CH2 groups are one AB fragment of weight 2.
//! - `NAAG` carries only its acetyl singlet (2.042 ppm, 3H), the part the reference tabulates.

use super::error::PhysicsError;
use super::spin_system::{Fragment, Molecule, Nucleus, SingletGroup};

fn singlet(label: &str, ppm: f64, protons: u32) -> SingletGroup {
    SingletGroup {
        label: label.to_string(),
        shift_ppm: ppm,
        protons,
        nucleus: Nucleus::H1,
    }
}

fn frag(
    name: &str,
    weight: f64,
    spins: &[(&str, f64)],
    couplings: &[(usize, usize, f64)],
) -> Fragment {
    // The tables below are constants checked by the library's tests; construction cannot fail.
    match Fragment::new(name, weight, spins, couplings) {
        Ok(f) => f,
        Err(e) => panic!("built-in fragment {name} is invalid: {e}"),
    }
}

fn molecule(
    name: &str,
    description: &str,
    fragments: Vec<Fragment>,
    singlets: Vec<SingletGroup>,
) -> Molecule {
    Molecule {
        name: name.to_string(),
        description: description.to_string(),
        fragments,
        singlets,
    }
}

/// Glutamate: one 5-spin fragment.
pub fn glutamate() -> Molecule {
    molecule(
        "Glu",
        "glutamate; Govindaraju 2000, spant/FID-A H3-H4 coupling pairing",
        vec![frag(
            "glutamate",
            1.0,
            &[
                ("H2", 3.7433),
                ("H3", 2.0375),
                ("H3'", 2.1200),
                ("H4", 2.3378),
                ("H4'", 2.3520),
            ],
            &[
                (1, 2, 7.331),
                (1, 3, 4.651),
                (2, 3, -14.849),
                (2, 4, 6.413),
                (2, 5, 8.406),
                (3, 4, 8.478),
                (3, 5, 6.875),
                (4, 5, -15.915),
            ],
        )],
        vec![],
    )
}

/// Glutamine: the 5-spin fragment (amide NH2 omitted).
pub fn glutamine() -> Molecule {
    molecule(
        "Gln",
        "glutamine; Govindaraju 2000 (amide NH2 omitted)",
        vec![frag(
            "glutamine",
            1.0,
            &[
                ("H2", 3.7530),
                ("H3", 2.1290),
                ("H3'", 2.1090),
                ("H4", 2.4320),
                ("H4'", 2.4540),
            ],
            &[
                (1, 2, 5.847),
                (1, 3, 6.500),
                (2, 3, -14.504),
                (2, 4, 9.165),
                (2, 5, 6.347),
                (3, 4, 6.324),
                (3, 5, 9.209),
                (4, 5, -15.371),
            ],
        )],
        vec![],
    )
}

/// GABA, 6 spins, corrigendum parameters (Govind et al. 2015).
pub fn gaba() -> Molecule {
    molecule(
        "GABA",
        "gamma-aminobutyric acid; Govind et al. 2015 corrigendum",
        vec![frag(
            "GABA",
            1.0,
            &[
                ("H4", 3.0128),
                ("H4'", 3.0128),
                ("H3", 1.889),
                ("H3'", 1.889),
                ("H2", 2.284),
                ("H2'", 2.284),
            ],
            &[
                (1, 2, -12.021),
                (1, 3, 5.372),
                (1, 4, 7.127),
                (2, 3, 10.578),
                (2, 4, 6.982),
                (3, 4, -13.121),
                (3, 5, 7.755),
                (3, 6, 7.432),
                (4, 5, 6.173),
                (4, 6, 7.933),
                (5, 6, -10.744),
            ],
        )],
        vec![],
    )
}

/// GABA, 6 spins, Near et al. (MRM 2013) parameters.
pub fn gaba_near() -> Molecule {
    molecule(
        "GABA_Near",
        "gamma-aminobutyric acid; Near et al. MRM 2013",
        vec![frag(
            "GABA",
            1.0,
            &[
                ("H2", 2.2840),
                ("H2'", 2.2840),
                ("H3", 1.8880),
                ("H3'", 1.8880),
                ("H4", 3.0130),
                ("H4'", 3.0130),
            ],
            &[
                (1, 2, -15.938),
                (1, 3, 7.678),
                (1, 4, 6.980),
                (2, 3, 6.980),
                (2, 4, 7.678),
                (3, 4, -15.000),
                (3, 5, 8.510),
                (3, 6, 6.503),
                (4, 5, 6.503),
                (4, 6, 8.510),
                (5, 6, -14.062),
            ],
        )],
        vec![],
    )
}

/// N-acetylaspartate: acetyl singlet (3H) plus the aspartyl 3-spin fragment.
pub fn naa() -> Molecule {
    molecule(
        "NAA",
        "N-acetylaspartate; Govindaraju 2000 (NH omitted)",
        vec![frag(
            "aspartyl",
            1.0,
            &[("H2", 4.3817), ("H3", 2.6727), ("H3'", 2.4863)],
            &[(1, 2, 3.861), (1, 3, 9.821), (2, 3, -15.592)],
        )],
        vec![singlet("CH3", 2.0080, 3)],
    )
}

/// N-acetylaspartylglutamate: acetyl singlet only.
pub fn naag() -> Molecule {
    molecule(
        "NAAG",
        "N-acetylaspartylglutamate, acetyl singlet only",
        vec![],
        vec![singlet("CH3", 2.042, 3)],
    )
}

/// Creatine: CH3 and CH2 singlets.
pub fn creatine() -> Molecule {
    molecule(
        "Cr",
        "creatine",
        vec![],
        vec![singlet("CH3", 3.027, 3), singlet("CH2", 3.913, 2)],
    )
}

/// Phosphocreatine: CH3 and CH2 singlets.
pub fn phosphocreatine() -> Molecule {
    molecule(
        "PCr",
        "phosphocreatine",
        vec![],
        vec![singlet("CH3", 3.029, 3), singlet("CH2", 3.930, 2)],
    )
}

/// Citrate: strongly coupled AB fragment of weight 2 (FID-A / NMR-ScopeB, pH about 7).
pub fn citrate() -> Molecule {
    molecule(
        "Cit",
        "citrate; AB, two equivalent CH2 groups (weight 2); pH ~7",
        vec![frag(
            "CH2",
            2.0,
            &[("HA", 2.54), ("HB", 2.65)],
            &[(1, 2, -15.1)],
        )],
        vec![],
    )
}

/// Lactate: A3X, 4 spins.
pub fn lactate() -> Molecule {
    molecule(
        "Lac",
        "lactate; A3X",
        vec![frag(
            "lactate",
            1.0,
            &[
                ("CH", 4.0974),
                ("CH3", 1.3142),
                ("CH3", 1.3142),
                ("CH3", 1.3142),
            ],
            &[(1, 2, 6.933), (1, 3, 6.933), (1, 4, 6.933)],
        )],
        vec![],
    )
}

/// myo-Inositol: 6 spins.
pub fn myo_inositol() -> Molecule {
    molecule(
        "mI",
        "myo-inositol",
        vec![frag(
            "myo-inositol",
            1.0,
            &[
                ("H1", 3.5217),
                ("H2", 4.0538),
                ("H3", 3.5217),
                ("H4", 3.6144),
                ("H5", 3.2690),
                ("H6", 3.6144),
            ],
            &[
                (1, 2, 2.889),
                (1, 6, 9.998),
                (2, 3, 3.006),
                (3, 4, 9.997),
                (4, 5, 9.485),
                (5, 6, 9.482),
            ],
        )],
        vec![],
    )
}

/// Glutathione: glycine singlet, cysteinyl 3-spin and glutamyl 5-spin fragments.
pub fn glutathione() -> Molecule {
    molecule(
        "GSH",
        "glutathione",
        vec![
            frag(
                "cysteinyl",
                1.0,
                &[("H2", 4.5608), ("H3", 2.9264), ("H3'", 2.9747)],
                &[(1, 2, 7.09), (1, 3, 4.71), (2, 3, -14.06)],
            ),
            frag(
                "glutamyl",
                1.0,
                &[
                    ("H2", 3.769),
                    ("H3", 2.159),
                    ("H3'", 2.146),
                    ("H4", 2.510),
                    ("H4'", 2.560),
                ],
                &[
                    (1, 2, 6.34),
                    (1, 3, 6.36),
                    (2, 3, -15.48),
                    (2, 4, 6.7),
                    (2, 5, 7.6),
                    (3, 4, 7.6),
                    (3, 5, 6.7),
                    (4, 5, -15.92),
                ],
            ),
        ],
        vec![singlet("glycine CH2", 3.769, 2)],
    )
}

fn singlet_molecule(name: &str, description: &str, label: &str, ppm: f64, h: u32) -> Molecule {
    molecule(name, description, vec![], vec![singlet(label, ppm, h)])
}

/// Every built-in molecule, in a fixed order.
pub fn all() -> Vec<Molecule> {
    vec![
        glutamate(),
        glutamine(),
        gaba(),
        gaba_near(),
        naa(),
        naag(),
        creatine(),
        phosphocreatine(),
        citrate(),
        lactate(),
        myo_inositol(),
        glutathione(),
        singlet_molecule("PCh", "phosphocholine N(CH3)3", "N(CH3)3", 3.208, 9),
        singlet_molecule("GPC", "glycerophosphocholine N(CH3)3", "N(CH3)3", 3.212, 9),
        singlet_molecule("Suc", "succinate", "CH2", 2.392, 4),
        singlet_molecule("Gly", "glycine", "CH2", 3.548, 2),
        singlet_molecule("sI", "scyllo-inositol", "CH", 3.34, 6),
        singlet_molecule("Ace", "acetate", "CH3", 1.904, 3),
    ]
}

/// Names of the built-in molecules.
pub fn names() -> Vec<String> {
    all().into_iter().map(|m| m.name).collect()
}

/// Looks up a built-in molecule by name (case-insensitive).
pub fn by_name(name: &str) -> Result<Molecule, PhysicsError> {
    all()
        .into_iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| PhysicsError::UnknownMetabolite {
            name: name.to_string(),
            known: names().join(", "),
        })
}
