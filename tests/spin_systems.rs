//! The spin-system model, its file formats and the built-in library:
//!
//! - the library holds every metabolite of `shared/reference/metabolites.md` with exactly the
//!   tabulated shifts, couplings, proton counts and fragment weights; lookup by name is
//!   case-insensitive and unknown names are typed errors;
//! - TOML round-trips (`to_toml` → `from_toml` is the identity for every library molecule), the
//!   documented TOML example and a hand-written JSON file load from disk;
//! - bad input (too many spins, non-finite shifts, bad coupling indices, duplicate pairs,
//!   non-positive weights, unknown keys, zero protons, bad fields, bad experiments and ensembles)
//!   gives typed errors whose message names the offending field and value.

use std::f64::consts::PI;
use std::path::PathBuf;

use num_complex::Complex64 as C64;
use spinloop::physics::library;
use spinloop::physics::{
    Acquisition, Block, Experiment, Field, Fragment, Member, Molecule, Nucleus, PhysicsError,
    SimOptions, Simulator, SingletGroup, Spin,
};

// ---------------------------------------------------------------------------------------------
// Reference tables transcribed from shared/reference/metabolites.md
// ---------------------------------------------------------------------------------------------

/// (shifts ppm, couplings as 1-based (i, j, J Hz)) of one coupled fragment.
type Table = (&'static [f64], &'static [(usize, usize, f64)]);

const GLU: Table = (
    &[3.7433, 2.0375, 2.1200, 2.3378, 2.3520],
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
);

const GLN: Table = (
    &[3.7530, 2.1290, 2.1090, 2.4320, 2.4540],
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
);

const GABA: Table = (
    &[3.0128, 3.0128, 1.889, 1.889, 2.284, 2.284],
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
);

const GABA_NEAR: Table = (
    &[2.2840, 2.2840, 1.8880, 1.8880, 3.0130, 3.0130],
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
);

/// NAA aspartyl: H2, H3, H3'; J(2,3), J(2,3'), J(3,3').
const NAA_ASPARTYL: Table = (
    &[4.3817, 2.6727, 2.4863],
    &[(1, 2, 3.861), (1, 3, 9.821), (2, 3, -15.592)],
);

const CITRATE: Table = (&[2.54, 2.65], &[(1, 2, -15.1)]);

const LACTATE: Table = (
    &[4.0974, 1.3142, 1.3142, 1.3142],
    &[(1, 2, 6.933), (1, 3, 6.933), (1, 4, 6.933)],
);

const MYO_INOSITOL: Table = (
    &[3.5217, 4.0538, 3.5217, 3.6144, 3.2690, 3.6144],
    &[
        (1, 2, 2.889),
        (1, 6, 9.998),
        (2, 3, 3.006),
        (3, 4, 9.997),
        (4, 5, 9.485),
        (5, 6, 9.482),
    ],
);

/// GSH cysteinyl: H2, H3, H3'.
const GSH_CYSTEINYL: Table = (
    &[4.5608, 2.9264, 2.9747],
    &[(1, 2, 7.09), (1, 3, 4.71), (2, 3, -14.06)],
);

/// GSH glutamyl, spins H2 H3 H3' H4 H4': J(3,4) = spins (2,4), J(3,4') = (2,5), J(3',4) = (3,4),
/// J(3',4') = (3,5).
const GSH_GLUTAMYL: Table = (
    &[3.769, 2.159, 2.146, 2.510, 2.560],
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
);

/// Asserts a fragment has exactly the tabulated shifts and couplings (each pair once, in either
/// order) and weight.
fn assert_fragment(frag: &Fragment, table: Table, weight: f64) {
    let (shifts, couplings) = table;
    let got: Vec<f64> = frag.spins.iter().map(|s| s.shift_ppm).collect();
    assert_eq!(got, shifts, "{}: shifts", frag.name);
    assert!(frag.spins.iter().all(|s| s.nucleus == Nucleus::H1));
    assert_eq!(frag.weight, weight, "{}: weight", frag.name);
    assert_eq!(
        frag.couplings.len(),
        couplings.len(),
        "{}: number of couplings",
        frag.name
    );
    for &(i, j, hz) in couplings {
        let found: Vec<f64> = frag
            .couplings
            .iter()
            .filter(|c| (c.i, c.j) == (i, j) || (c.i, c.j) == (j, i))
            .map(|c| c.hz)
            .collect();
        assert_eq!(found, vec![hz], "{}: J({i},{j})", frag.name);
    }
}

fn singlets(m: &Molecule) -> Vec<(f64, u32)> {
    m.singlets
        .iter()
        .map(|s| (s.shift_ppm, s.protons))
        .collect()
}

fn invalid_parts(e: &PhysicsError) -> (String, String) {
    match e {
        PhysicsError::InvalidParameter { field, value, .. } => (field.clone(), value.clone()),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

/// The error is `InvalidParameter` for a field whose path ends with `field_suffix`, with the
/// given value, and its Display names both.
fn assert_invalid(e: &PhysicsError, field_suffix: &str, value: &str) {
    let (field, got) = invalid_parts(e);
    assert!(
        field.ends_with(field_suffix),
        "field {field:?} should end with {field_suffix:?}"
    );
    assert_eq!(got, value);
    let msg = e.to_string();
    assert!(
        msg.contains(&field) && msg.contains(value),
        "message {msg:?} should name {field} and {value}"
    );
}

// ---------------------------------------------------------------------------------------------
// Library contents
// ---------------------------------------------------------------------------------------------

#[test]
fn library_holds_every_reference_metabolite() {
    let expected = [
        "Glu",
        "Gln",
        "GABA",
        "GABA_Near",
        "NAA",
        "NAAG",
        "Cr",
        "PCr",
        "Cit",
        "Lac",
        "mI",
        "GSH",
        "PCh",
        "GPC",
        "Suc",
        "Gly",
        "sI",
        "Ace",
    ];
    let names = library::names();
    for name in expected {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    assert_eq!(names.len(), expected.len());
    let all = library::all();
    assert_eq!(all.len(), names.len());
    for m in &all {
        m.validate().unwrap();
        assert!(!m.description.is_empty(), "{} has no description", m.name);
        assert_eq!(&library::by_name(&m.name).unwrap(), m);
    }
}

#[test]
fn coupled_fragments_carry_the_tabulated_numbers() {
    let cases: [(Molecule, &[(Table, f64)]); 10] = [
        (library::glutamate(), &[(GLU, 1.0)]),
        (library::glutamine(), &[(GLN, 1.0)]),
        (library::gaba(), &[(GABA, 1.0)]),
        (library::gaba_near(), &[(GABA_NEAR, 1.0)]),
        (library::naa(), &[(NAA_ASPARTYL, 1.0)]),
        (library::citrate(), &[(CITRATE, 2.0)]),
        (library::lactate(), &[(LACTATE, 1.0)]),
        (library::myo_inositol(), &[(MYO_INOSITOL, 1.0)]),
        (
            library::glutathione(),
            &[(GSH_CYSTEINYL, 1.0), (GSH_GLUTAMYL, 1.0)],
        ),
        (library::by_name("Glu").unwrap(), &[(GLU, 1.0)]),
    ];
    for (mol, tables) in &cases {
        assert_eq!(mol.fragments.len(), tables.len(), "{}", mol.name);
        for (frag, &(table, weight)) in mol.fragments.iter().zip(tables.iter()) {
            assert_fragment(frag, table, weight);
        }
    }
    // Labels where the reference names them.
    let glu = library::glutamate();
    let labels: Vec<&str> = glu.fragments[0]
        .spins
        .iter()
        .map(|s| s.label.as_str())
        .collect();
    assert_eq!(labels, ["H2", "H3", "H3'", "H4", "H4'"]);
}

#[test]
fn singlets_proton_counts_and_weights() {
    let expect = [
        ("Glu", vec![], 5.0),
        ("Gln", vec![], 5.0),
        ("GABA", vec![], 6.0),
        ("GABA_Near", vec![], 6.0),
        ("NAA", vec![(2.0080, 3)], 6.0),
        ("NAAG", vec![(2.042, 3)], 3.0),
        ("Cr", vec![(3.027, 3), (3.913, 2)], 5.0),
        ("PCr", vec![(3.029, 3), (3.930, 2)], 5.0),
        ("Cit", vec![], 4.0),
        ("Lac", vec![], 4.0),
        ("mI", vec![], 6.0),
        ("GSH", vec![(3.769, 2)], 10.0),
        ("PCh", vec![(3.208, 9)], 9.0),
        // GPC N(CH3)3, glycine CH2 and acetate CH3: shift from the table, proton count from the
        // group (the table gives none).
        ("GPC", vec![(3.212, 9)], 9.0),
        ("Suc", vec![(2.392, 4)], 4.0),
        ("Gly", vec![(3.548, 2)], 2.0),
        ("sI", vec![(3.34, 6)], 6.0),
        ("Ace", vec![(1.904, 3)], 3.0),
    ];
    for (name, s, protons) in expect {
        let m = library::by_name(name).unwrap();
        assert_eq!(singlets(&m), s, "{name} singlets");
        assert_eq!(m.proton_count(), protons, "{name} protons");
    }
    // Structure notes of the reference.
    assert_eq!(library::lactate().fragments[0].n_spins(), 4);
    assert_eq!(library::citrate().fragments[0].weight, 2.0);
    let gsh = library::glutathione();
    assert_eq!(
        gsh.fragments.len() + gsh.singlets.len(),
        3,
        "GSH: glycine + cysteinyl + glutamyl"
    );
    // NAA: acetyl 3 protons : aspartyl 3 protons.
    let naa = library::naa();
    let parts = naa.simulation_fragments();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].name, "aspartyl");
    assert_eq!(parts[0].weight * parts[0].n_spins() as f64, 3.0);
    assert_eq!(
        (
            parts[1].weight,
            parts[1].n_spins(),
            parts[1].spins[0].shift_ppm
        ),
        (3.0, 1, 2.0080)
    );
}

#[test]
fn naa_acetyl_and_aspartyl_integrate_three_to_three() {
    // After an ideal 90°, the line lists of NAA's two simulation fragments integrate to 3 and 3.
    let mut sim = Simulator::new(
        vec![library::naa()],
        Field::THREE_T,
        3.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .unwrap();
    let exp = Experiment {
        blocks: vec![Block::Hard {
            flip: PI / 2.0,
            phase: PI / 2.0,
        }],
        acquisition: Acquisition {
            points: 1,
            dwell: 1e-3,
            linewidth_hz: 0.0,
        },
    };
    sim.simulate(&exp).unwrap();
    assert_eq!(sim.fragment_count(), 2);
    let integral = |f: usize| -> C64 { sim.lines(0, f).unwrap().iter().map(|l| l.amplitude).sum() };
    let (aspartyl, acetyl) = (integral(0), integral(1));
    assert!(
        (aspartyl - C64::new(3.0, 0.0)).norm() < 1e-12,
        "aspartyl {aspartyl}"
    );
    assert!(
        (acetyl - C64::new(3.0, 0.0)).norm() < 1e-12,
        "acetyl {acetyl}"
    );
    // The acetyl singlet sits at 2.008 ppm.
    let acetyl_lines = sim.lines(0, 1).unwrap();
    assert_eq!(acetyl_lines.len(), 1);
    let ppm = 3.0 + acetyl_lines[0].freq_hz / Field::THREE_T.f0_mhz;
    assert!((ppm - 2.008).abs() < 1e-12);
}

#[test]
fn by_name_is_case_insensitive_and_unknown_names_are_errors() {
    for name in ["glu", "GLU", "Glu", "gaba_near", "naa", "cit", "LAC", "mi"] {
        let m = library::by_name(name).unwrap();
        assert!(m.name.eq_ignore_ascii_case(name));
    }
    assert_eq!(library::by_name("gaba").unwrap().name, "GABA");
    assert_eq!(library::by_name("GABA_NEAR").unwrap().name, "GABA_Near");
    let err = library::by_name("Taurine").unwrap_err();
    match &err {
        PhysicsError::UnknownMetabolite { name, known } => {
            assert_eq!(name, "Taurine");
            assert!(known.contains("Glu") && known.contains("GABA_Near"));
        }
        other => panic!("expected UnknownMetabolite, got {other:?}"),
    }
    assert!(err.to_string().contains("Taurine"));
    assert!(matches!(
        library::by_name(""),
        Err(PhysicsError::UnknownMetabolite { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// File formats
// ---------------------------------------------------------------------------------------------

/// A fresh path in the system temp directory (removed by the caller).
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("spinloop-test-{}-{name}", std::process::id()))
}

#[test]
fn toml_round_trips_every_library_molecule() {
    for m in library::all() {
        let text = m.to_toml().unwrap();
        let back = Molecule::from_toml(&text).unwrap();
        assert_eq!(back, m, "{} does not round-trip:\n{text}", m.name);
    }
    // Shifts and couplings that are not short decimals survive too (bit-exact).
    let odd = Molecule {
        name: "odd".into(),
        description: "π-ish numbers".into(),
        fragments: vec![
            Fragment::new(
                "f",
                0.1 + 0.2,
                &[("a", PI), ("b", -1.0 / 3.0)],
                &[(1, 2, 1e-7 + 1.0 / 7.0)],
            )
            .unwrap(),
        ],
        singlets: vec![],
    };
    assert_eq!(Molecule::from_toml(&odd.to_toml().unwrap()).unwrap(), odd);
}

/// The TOML example of the `spin_system` module documentation, extracted from the source so
/// that the documented format is the tested one.
fn doc_example() -> String {
    let source = include_str!("../src/physics/spin_system.rs");
    let mut inside = false;
    let mut out = String::new();
    for line in source.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        match (inside, doc.trim()) {
            (false, "```toml") => inside = true,
            (true, "```") => break,
            (true, _) => {
                out.push_str(doc);
                out.push('\n');
            }
            _ => {}
        }
    }
    assert!(
        out.contains("[[fragments]]"),
        "no TOML example found in the module docs"
    );
    out
}

#[test]
fn documented_toml_example_loads_from_a_file() {
    let path = temp_path("lac.toml");
    std::fs::write(&path, doc_example()).unwrap();
    let loaded = Molecule::from_path(&path);
    std::fs::remove_file(&path).unwrap();
    let m = loaded.unwrap();
    assert_eq!(m.fragments, library::lactate().fragments);
    assert_eq!(m.singlets.len(), 1);
    assert_eq!(singlets(&m), vec![(2.008, 3)]);
    assert_eq!(m.proton_count(), 7.0);
    // Simulation order: coupled fragments first, then singlets with weight = protons.
    let parts = m.simulation_fragments();
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[1].weight, parts[1].n_spins()), (3.0, 1));
}

#[test]
fn hand_written_json_loads() {
    let json = r#"{
        "name": "Cit",
        "description": "citrate written by hand",
        "fragments": [
            {
                "name": "CH2",
                "weight": 2,
                "spins": [
                    {"label": "HA", "shift_ppm": 2.54},
                    {"label": "HB", "shift_ppm": 2.65, "nucleus": "1H"}
                ],
                "couplings": [{"i": 1, "j": 2, "hz": -15.1}]
            }
        ]
    }"#;
    let m = Molecule::from_json(json).unwrap();
    assert_eq!(m.fragments, library::citrate().fragments);
    assert!(m.singlets.is_empty());
    let path = temp_path("cit.json");
    std::fs::write(&path, json).unwrap();
    let loaded = Molecule::from_path(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), m);
    // Defaults: weight 1, no couplings, no singlets, 1H.
    let minimal = Molecule::from_json(
        r#"{"name": "X", "fragments": [{"name": "x", "spins": [{"label": "a", "shift_ppm": 1}]}]}"#,
    )
    .unwrap();
    assert_eq!(minimal.fragments[0].weight, 1.0);
    assert_eq!(minimal.fragments[0].spins[0].nucleus, Nucleus::H1);
    assert!(minimal.fragments[0].couplings.is_empty());
}

#[test]
fn missing_file_and_malformed_text_are_parse_errors() {
    let path = temp_path("does-not-exist.toml");
    match Molecule::from_path(&path) {
        Err(PhysicsError::Parse(msg)) => assert!(msg.contains("does-not-exist.toml"), "{msg}"),
        other => panic!("expected Parse, got {other:?}"),
    }
    assert!(matches!(
        Molecule::from_toml("name = "),
        Err(PhysicsError::Parse(_))
    ));
    assert!(matches!(
        Molecule::from_json("{\"name\": \"x\","),
        Err(PhysicsError::Parse(_))
    ));
    // A parse error in a file names the file.
    let path = temp_path("broken.json");
    std::fs::write(&path, "{ not json").unwrap();
    let loaded = Molecule::from_path(&path);
    std::fs::remove_file(&path).unwrap();
    match loaded {
        Err(PhysicsError::Parse(msg)) => assert!(msg.contains("broken.json"), "{msg}"),
        other => panic!("expected Parse, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Invalid spin systems
// ---------------------------------------------------------------------------------------------

#[test]
fn nine_spins_is_too_many() {
    let spins: Vec<(&str, f64)> = (0..9).map(|k| ("H", 1.0 + 0.1 * k as f64)).collect();
    let err = Fragment::new("big", 1.0, &spins, &[]).unwrap_err();
    assert_eq!(
        err,
        PhysicsError::TooManySpins {
            fragment: "big".into(),
            spins: 9,
            max: 8
        }
    );
    assert!(err.to_string().contains("big") && err.to_string().contains('9'));
    // Eight is fine.
    Fragment::new("eight", 1.0, &spins[..8], &[]).unwrap();
    // The same from a file.
    let spins_toml: String = (0..9)
        .map(|k| {
            format!(
                "{{ label = \"H{k}\", shift_ppm = {} }},",
                1.0 + 0.1 * k as f64
            )
        })
        .collect();
    let text = format!("name = \"Big\"\n[[fragments]]\nname = \"f\"\nspins = [{spins_toml}]\n");
    match Molecule::from_toml(&text).unwrap_err() {
        PhysicsError::TooManySpins {
            fragment,
            spins,
            max,
        } => {
            assert!(fragment.contains("Big.fragments[0]"));
            assert_eq!((spins, max), (9, 8));
        }
        other => panic!("expected TooManySpins, got {other:?}"),
    }
}

#[test]
fn non_finite_shifts_are_rejected() {
    let err = Fragment::new("f", 1.0, &[("a", 1.0), ("b", f64::NAN)], &[]).unwrap_err();
    assert_invalid(&err, "f.spins[1].shift_ppm", "NaN");
    let err = Fragment::new("f", 1.0, &[("a", f64::INFINITY)], &[]).unwrap_err();
    assert_invalid(&err, "f.spins[0].shift_ppm", "inf");
    let err = Fragment::new("f", 1.0, &[("a", f64::NEG_INFINITY)], &[]).unwrap_err();
    assert_invalid(&err, "f.spins[0].shift_ppm", "-inf");
    // TOML has nan and inf literals; validation catches them with the molecule's path.
    let text =
        "name = \"M\"\n[[fragments]]\nname = \"f\"\nspins = [{ label = \"a\", shift_ppm = nan }]\n";
    assert_invalid(
        &Molecule::from_toml(text).unwrap_err(),
        "M.fragments[0].spins[0].shift_ppm",
        "NaN",
    );
    let text = "name = \"M\"\n[[singlets]]\nlabel = \"s\"\nshift_ppm = inf\nprotons = 3\n";
    assert_invalid(
        &Molecule::from_toml(text).unwrap_err(),
        "M.singlets[0].shift_ppm",
        "inf",
    );
    // And a non-finite J.
    let err = Fragment::new("f", 1.0, &[("a", 1.0), ("b", 2.0)], &[(1, 2, f64::NAN)]).unwrap_err();
    assert_invalid(&err, "f.couplings[0].hz", "NaN");
}

#[test]
fn bad_coupling_indices_are_rejected() {
    let three = [("a", 1.0), ("b", 2.0), ("c", 3.0)];
    // Coupling to spin 7 of a 3-spin fragment.
    let err = Fragment::new("f", 1.0, &three, &[(1, 2, 5.0), (2, 7, 5.0)]).unwrap_err();
    assert_invalid(&err, "f.couplings[1].j", "7");
    assert!(err.to_string().contains("1..=3"));
    // Spin 0 (numbering is 1-based).
    let err = Fragment::new("f", 1.0, &three, &[(0, 2, 5.0)]).unwrap_err();
    assert_invalid(&err, "f.couplings[0].i", "0");
    // A spin coupled to itself.
    let err = Fragment::new("f", 1.0, &three, &[(2, 2, 5.0)]).unwrap_err();
    assert_invalid(&err, "f.couplings[0].j", "2");
    // The same pair twice, in either order.
    let err =
        Fragment::new("f", 1.0, &three, &[(1, 2, 5.0), (2, 3, 1.0), (2, 1, 5.0)]).unwrap_err();
    assert_invalid(&err, "f.couplings[2]", "(2, 1)");
    let err = Fragment::new("f", 1.0, &three, &[(1, 3, 5.0), (1, 3, 6.0)]).unwrap_err();
    assert_invalid(&err, "f.couplings[1]", "(1, 3)");
}

#[test]
fn non_positive_weight_zero_protons_and_empty_parts_are_rejected() {
    for w in [0.0, -2.0] {
        let err = Fragment::new("f", w, &[("a", 1.0)], &[]).unwrap_err();
        assert_invalid(&err, "f.weight", &w.to_string());
    }
    let err = Fragment::new("f", f64::NAN, &[("a", 1.0)], &[]).unwrap_err();
    assert_invalid(&err, "f.weight", "NaN");
    let text = "name = \"M\"\n[[fragments]]\nname = \"f\"\nweight = -1.5\nspins = [{ label = \"a\", shift_ppm = 1.0 }]\n";
    assert_invalid(
        &Molecule::from_toml(text).unwrap_err(),
        "M.fragments[0].weight",
        "-1.5",
    );
    // Zero protons in a singlet group.
    let m = Molecule {
        name: "Z".into(),
        description: String::new(),
        fragments: vec![],
        singlets: vec![SingletGroup {
            label: "CH3".into(),
            shift_ppm: 2.0,
            protons: 0,
            nucleus: Nucleus::H1,
        }],
    };
    assert_invalid(&m.validate().unwrap_err(), "Z.singlets[0].protons", "0");
    let text = "name = \"Z\"\n[[singlets]]\nlabel = \"s\"\nshift_ppm = 2.0\nprotons = 0\n";
    assert_invalid(
        &Molecule::from_toml(text).unwrap_err(),
        "Z.singlets[0].protons",
        "0",
    );
    // A fragment without spins, a molecule without parts, a molecule without a name.
    assert_invalid(
        &Fragment::new("f", 1.0, &[], &[]).unwrap_err(),
        "f.spins",
        "0",
    );
    let empty = Molecule {
        name: "E".into(),
        description: String::new(),
        fragments: vec![],
        singlets: vec![],
    };
    assert_invalid(&empty.validate().unwrap_err(), "E.fragments", "[]");
    let unnamed = Molecule {
        name: " ".into(),
        ..library::naag()
    };
    let (field, _) = invalid_parts(&unnamed.validate().unwrap_err());
    assert_eq!(field, "name");
}

#[test]
fn unknown_keys_are_rejected() {
    // A typo at every level: molecule, fragment, spin, coupling, singlet.
    let cases = [
        (
            "name = \"M\"\ndescriptoin = \"x\"\n[[singlets]]\nlabel = \"s\"\nshift_ppm = 2.0\nprotons = 3\n",
            "descriptoin",
        ),
        (
            "name = \"M\"\n[[fragments]]\nname = \"f\"\nwieght = 2.0\nspins = [{ label = \"a\", shift_ppm = 1.0 }]\n",
            "wieght",
        ),
        (
            "name = \"M\"\n[[fragments]]\nname = \"f\"\nspins = [{ label = \"a\", shift = 1.0 }]\n",
            "shift",
        ),
        (
            "name = \"M\"\n[[fragments]]\nname = \"f\"\nspins = [{ label = \"a\", shift_ppm = 1.0 }, { label = \"b\", shift_ppm = 2.0 }]\ncouplings = [{ i = 1, j = 2, J = 7.0 }]\n",
            "J",
        ),
        (
            "name = \"M\"\n[[singlets]]\nlabel = \"s\"\nshift_ppm = 2.0\nprotons = 3\nmultiplicity = 1\n",
            "multiplicity",
        ),
    ];
    for (text, key) in cases {
        match Molecule::from_toml(text) {
            Err(PhysicsError::Parse(msg)) => {
                assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}")
            }
            other => panic!("{key}: expected Parse, got {other:?}"),
        }
    }
    // JSON too.
    match Molecule::from_json(
        r#"{"name": "M", "singlets": [{"label": "s", "shift_ppm": 2, "protons": 3, "pH": 7}]}"#,
    ) {
        Err(PhysicsError::Parse(msg)) => assert!(msg.contains("pH"), "{msg}"),
        other => panic!("expected Parse, got {other:?}"),
    }
    // An unknown nucleus is a parse error; a known non-1H nucleus loads but cannot be simulated.
    let text = "name = \"M\"\n[[singlets]]\nlabel = \"s\"\nshift_ppm = 2.0\nprotons = 1\nnucleus = \"2H\"\n";
    assert!(matches!(
        Molecule::from_toml(text),
        Err(PhysicsError::Parse(_))
    ));
    let text = "name = \"M\"\n[[fragments]]\nname = \"f\"\nspins = [{ label = \"C1\", shift_ppm = 20.0, nucleus = \"13C\" }]\n";
    let m = Molecule::from_toml(text).unwrap();
    let err = Simulator::new(
        vec![m],
        Field::THREE_T,
        3.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .err()
    .unwrap();
    let (field, value) = invalid_parts(&err);
    assert!(
        field.contains("nucleus") && value == "C13",
        "{field} = {value}"
    );
}

// ---------------------------------------------------------------------------------------------
// Field
// ---------------------------------------------------------------------------------------------

#[test]
fn field_presets_parse_and_conversions() {
    assert_eq!(Field::parse("3T").unwrap(), Field::THREE_T);
    assert_eq!(Field::parse(" 3 t ").unwrap(), Field::THREE_T);
    assert_eq!(Field::parse("11.7T").unwrap(), Field::ELEVEN_SEVEN_T);
    assert_eq!(Field::THREE_T.f0_mhz, 123.2);
    assert_eq!(Field::ELEVEN_SEVEN_T.f0_mhz, 500.13);
    assert_eq!(Field::parse("123.2MHz").unwrap().f0_mhz, 123.2);
    assert_eq!(Field::parse("600 MHz").unwrap().f0_mhz, 600.0);
    assert_eq!(Field::parse("500.13").unwrap().f0_mhz, 500.13);
    let gamma = Nucleus::H1.gamma_mhz_per_t();
    let f = Field::parse("2.89T").unwrap();
    assert!((f.f0_mhz - 2.89 * gamma).abs() < 1e-12);
    assert_eq!(Field::from_tesla(2.89, Nucleus::H1).unwrap(), f);
    // metabolites.md: γ/2π = 42.577 MHz/T; 123.2 MHz is 2.89 T and 11.7464 T is 500.13 MHz, to
    // the printed precision.
    assert!((gamma - 42.577).abs() < 0.0005);
    assert!((Field::THREE_T.f0_mhz / gamma - 2.89).abs() < 0.005);
    assert!((Field::from_tesla(11.7464, Nucleus::H1).unwrap().f0_mhz - 500.13).abs() < 0.005);
    // Offsets: (δ − carrier)·f0.
    assert!((Field::THREE_T.offset_hz(4.7, 3.0) - 1.7 * 123.2).abs() < 1e-12);
}

#[test]
fn bad_fields_are_rejected() {
    for text in ["abc", "3", "T", "MHz", "-3T", "0MHz", "nanT", "3 tesla", ""] {
        let err = Field::parse(text);
        match text {
            // "3" is a valid 3 MHz field, not the 3 T preset.
            "3" => assert_eq!(err.unwrap().f0_mhz, 3.0),
            _ => {
                let err = err.unwrap_err();
                let (field, _) = invalid_parts(&err);
                assert!(field.starts_with("field"), "{text:?}: {field}");
                assert!(err.to_string().contains("field"));
            }
        }
    }
    assert_invalid(&Field::parse("-3T").unwrap_err(), "field.b0_tesla", "-3");
    assert_invalid(&Field::parse("0MHz").unwrap_err(), "field.f0_mhz", "0");
    assert_invalid(&Field::parse("abc").unwrap_err(), "field", "abc");
    assert_invalid(
        &Field::from_mhz(f64::INFINITY).unwrap_err(),
        "field.f0_mhz",
        "inf",
    );
    assert_invalid(
        &Field::from_tesla(-1.0, Nucleus::H1).unwrap_err(),
        "field.b0_tesla",
        "-1",
    );
}

// ---------------------------------------------------------------------------------------------
// Simulator input validation
// ---------------------------------------------------------------------------------------------

fn nominal_sim() -> Simulator {
    Simulator::new(
        vec![library::lactate()],
        Field::THREE_T,
        3.0,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )
    .unwrap()
}

fn exp(blocks: Vec<Block>, points: usize, dwell: f64, linewidth_hz: f64) -> Experiment {
    Experiment {
        blocks,
        acquisition: Acquisition {
            points,
            dwell,
            linewidth_hz,
        },
    }
}

fn pulse(dt: f64, ux: Vec<f64>, uy: Vec<f64>) -> Block {
    Block::Pulse { dt, ux, uy }
}

#[test]
fn simulate_rejects_bad_experiments() {
    let mut sim = nominal_sim();
    let ok = || pulse(1e-5, vec![100.0, 200.0], vec![0.0, 50.0]);
    // dt ≤ 0 or not finite.
    for dt in [0.0, -2.5e-5, f64::NAN] {
        let err = sim
            .simulate(&exp(
                vec![ok(), pulse(dt, vec![1.0], vec![0.0])],
                8,
                1e-3,
                1.0,
            ))
            .unwrap_err();
        assert_invalid(&err, "blocks[1].dt", &dt.to_string());
    }
    // dwell ≤ 0.
    for dwell in [0.0, -1e-4] {
        let err = sim.simulate(&exp(vec![ok()], 8, dwell, 1.0)).unwrap_err();
        assert_invalid(&err, "acquisition.dwell", &dwell.to_string());
    }
    // points = 0.
    let err = sim.simulate(&exp(vec![ok()], 0, 1e-3, 1.0)).unwrap_err();
    assert_invalid(&err, "acquisition.points", "0");
    // Negative or NaN linewidth.
    let err = sim.simulate(&exp(vec![ok()], 8, 1e-3, -1.0)).unwrap_err();
    assert_invalid(&err, "acquisition.linewidth_hz", "-1");
    // NaN and infinite controls name the block and segment.
    let err = sim
        .simulate(&exp(
            vec![pulse(1e-5, vec![1.0, f64::NAN], vec![0.0, 0.0])],
            8,
            1e-3,
            1.0,
        ))
        .unwrap_err();
    assert_invalid(&err, "blocks[0].ux[1]", "NaN");
    let err = sim
        .simulate(&exp(
            vec![
                ok(),
                pulse(1e-5, vec![1.0, 2.0, 3.0], vec![0.0, 0.0, f64::INFINITY]),
            ],
            8,
            1e-3,
            1.0,
        ))
        .unwrap_err();
    assert_invalid(&err, "blocks[1].uy[2]", "inf");
    // Mismatched ux/uy lengths.
    let err = sim
        .simulate(&exp(
            vec![pulse(1e-5, vec![1.0, 2.0, 3.0], vec![0.0, 0.0])],
            8,
            1e-3,
            1.0,
        ))
        .unwrap_err();
    assert_eq!(
        err,
        PhysicsError::SizeMismatch {
            what: "blocks[0] uy".into(),
            expected: 3,
            got: 2
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("blocks[0] uy") && msg.contains('3') && msg.contains('2'),
        "{msg}"
    );
    // An empty shaped pulse, a negative delay, a NaN hard pulse.
    assert_invalid(
        &sim.simulate(&exp(vec![pulse(1e-5, vec![], vec![])], 8, 1e-3, 1.0))
            .unwrap_err(),
        "blocks[0].ux",
        "[]",
    );
    assert_invalid(
        &sim.simulate(&exp(
            vec![ok(), Block::Delay { duration: -1e-3 }],
            8,
            1e-3,
            1.0,
        ))
        .unwrap_err(),
        "blocks[1].duration",
        "-0.001",
    );
    assert_invalid(
        &sim.simulate(&exp(
            vec![Block::Hard {
                flip: f64::NAN,
                phase: 0.0,
            }],
            8,
            1e-3,
            1.0,
        ))
        .unwrap_err(),
        "blocks[0].flip",
        "NaN",
    );
    // After all these rejections the simulator still works.
    let signals = sim.simulate(&exp(vec![ok()], 8, 1e-3, 1.0)).unwrap();
    assert_eq!(
        (signals.members(), signals.molecules(), signals.points()),
        (1, 1, 8)
    );
}

#[test]
fn simulator_new_rejects_bad_ensembles_and_setup() {
    let new = |mols: Vec<Molecule>, field: Field, carrier: f64, members: Vec<Member>| {
        Simulator::new(mols, field, carrier, members, SimOptions::default())
            .err()
            .unwrap()
    };
    let lac = || vec![library::lactate()];
    let err = new(lac(), Field::THREE_T, 3.0, vec![]);
    assert_invalid(&err, "members", "[]");
    for b1 in [0.0, -0.5, f64::NAN] {
        let members = vec![Member::NOMINAL, Member { b1, b0_hz: 0.0 }];
        assert_invalid(
            &new(lac(), Field::THREE_T, 3.0, members),
            "members[1].b1",
            &b1.to_string(),
        );
    }
    let members = vec![Member {
        b1: 1.0,
        b0_hz: f64::INFINITY,
    }];
    assert_invalid(
        &new(lac(), Field::THREE_T, 3.0, members),
        "members[0].b0_hz",
        "inf",
    );
    assert_invalid(
        &new(vec![], Field::THREE_T, 3.0, vec![Member::NOMINAL]),
        "molecules",
        "[]",
    );
    assert_invalid(
        &new(lac(), Field::THREE_T, f64::NAN, vec![Member::NOMINAL]),
        "carrier_ppm",
        "NaN",
    );
    assert_invalid(
        &new(lac(), Field { f0_mhz: -1.0 }, 3.0, vec![Member::NOMINAL]),
        "field.f0_mhz",
        "-1",
    );
    // An invalid molecule built in code is caught at construction.
    let mut bad = library::citrate();
    bad.fragments[0].spins[1] = Spin {
        label: "HB".into(),
        shift_ppm: f64::NAN,
        nucleus: Nucleus::H1,
    };
    assert_invalid(
        &new(vec![bad], Field::THREE_T, 3.0, vec![Member::NOMINAL]),
        "Cit.fragments[0].spins[1].shift_ppm",
        "NaN",
    );
    // Bad option.
    let err = Simulator::new(
        lac(),
        Field::THREE_T,
        3.0,
        vec![Member::NOMINAL],
        SimOptions { family_eta: 0.0 },
    )
    .err()
    .unwrap();
    assert_invalid(&err, "options.family_eta", "0");
}
