//! Writes the seed corpora under `tests/fuzz/corpus/<target>/seed-*` from spinloop's own
//! writers (NIfTI-MRS, Bruker acqus/fid/ser and shape files, firmware frames; SCPI responses
//! as an instrument sends them), so the fuzzers
//! start from valid inputs. Deterministic; run from anywhere with
//! `cargo run --manifest-path tests/fuzz/Cargo.toml --example make_seeds` (stable Rust, no
//! fuzzing flags needed). Existing `seed-*` files are overwritten.

use std::path::{Path, PathBuf};

use num_complex::Complex64 as C64;
use serde_json::{Map, json};
use spinloop::formats::bruker::{BrukerShape, ExMode, write_shape};
use spinloop::formats::bruker_fid::{write_experiment, write_experiment_with_offset};
use spinloop::formats::nifti_mrs::NiftiMrs;
use spinloop::sequence::shapes::Shape;
use spinloop_firmware::{Frame, FrameType};

/// A damped tone of `n` points.
fn tone(n: usize, f_hz: f64, dwell: f64) -> Vec<C64> {
    (0..n)
        .map(|k| {
            let t = k as f64 * dwell;
            C64::from_polar(
                1000.0 * (-t / 0.05).exp(),
                2.0 * std::f64::consts::PI * f_hz * t,
            )
        })
        .collect()
}

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn put(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spinloop-seeds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `bruker_fid` input layout: acqus, 0x00, flag (bit 0: ser), binary.
fn fid_input(acqus: &[u8], ser: bool, binary: &[u8]) -> Vec<u8> {
    let mut v = acqus.to_vec();
    v.push(0);
    v.push(u8::from(ser));
    v.extend_from_slice(binary);
    v
}

fn frames() -> Vec<Frame> {
    let mut with_flags = Frame::new(FrameType::WaveformChunk, 7, (0u8..=255).collect());
    with_flags.flags = 0x01;
    vec![
        Frame::new(FrameType::Hello, 0, b"spinloop v1".to_vec()),
        Frame::new(FrameType::Ack, 0, Vec::new()),
        Frame::new(FrameType::Nak, 3, Vec::new()),
        Frame::new(FrameType::Heartbeat, 0, Vec::new()),
        with_flags,
        Frame::new(FrameType::FidChunk, 65535, vec![0; 300]),
        Frame::new(FrameType::Play, 1, vec![0xAA; 1024]),
    ]
}

fn firmware_seeds() {
    let all = frames();
    let mut stream = vec![0u8];
    for f in &all {
        stream.extend(f.encode().unwrap());
    }
    put("frame_decoder", "stream", &stream);
    put("frame_decoder", "raw-hello", &all[0].to_raw().unwrap());
    let wire = all[4].encode().unwrap();
    put("frame_decoder", "stuffed-chunk", &wire[..wire.len() - 1]);
    put("frame_decoder", "max-payload", &all[6].encode().unwrap());

    // link_input scripts: bytes arrive in chunks of at most 128 (opcode 0x7F), sends (0xA0 +
    // payload length, type code, payload), clock ticks (0x80 + n·50 ms), loop-back (0xC0).
    let mut script = Vec::new();
    for f in &all[..6] {
        for chunk in f.encode().unwrap().chunks(128) {
            script.push(u8::try_from(chunk.len() - 1).unwrap());
            script.extend_from_slice(chunk);
        }
    }
    put("link_input", "receive", &script);
    let mut script = vec![0xA3, FrameType::Play.code(), 1, 2, 3];
    script.extend([0xA1, FrameType::WaveformBegin.code(), 9]);
    script.extend([0x84, 0xC0, 0x84, 0xC0, 0x9F, 0x9F, 0x9F]);
    let ack = Frame::new(FrameType::Ack, 0, Vec::new()).encode().unwrap();
    script.push(u8::try_from(ack.len() - 1).unwrap());
    script.extend_from_slice(&ack);
    put("link_input", "send-ack-timeout", &script);
}

fn nifti_seeds() {
    let dwell = 2.5e-4;
    let m = NiftiMrs::single_voxel(tone(32, 120.0, dwell), dwell, 123.2, "1H").unwrap();
    put("nifti_mrs", "single-c128.nii", &m.to_bytes().unwrap());
    let mut m64 = m.clone();
    m64.double_precision = false;
    m64.set("EchoTime", json!(0.03));
    put("nifti_mrs", "single-c64.nii", &m64.to_bytes().unwrap());
    let mut dim_header = Map::new();
    dim_header.insert("Metabolite".into(), json!(["NAA", "Cr"]));
    let stacked = NiftiMrs::stacked(
        vec![tone(16, 50.0, dwell), tone(16, -80.0, dwell)],
        dwell,
        297.2,
        "1H",
        "DIM_USER_0",
        Some(dim_header),
    )
    .unwrap();
    put("nifti_mrs", "stacked.nii", &stacked.to_bytes().unwrap());
    let dir = scratch("nifti");
    let gz = dir.join("single.nii.gz");
    m64.write(&gz).unwrap();
    put("nifti_mrs", "single.nii.gz", &std::fs::read(&gz).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

fn bruker_seeds() {
    let dwell = 1.0 / 5000.0;
    let dir = scratch("bruker");
    write_experiment(&dir, &tone(64, 300.0, dwell), dwell, 400.13, "1H", 0.0).unwrap();
    let acqus = std::fs::read(dir.join("acqus")).unwrap();
    let fid = std::fs::read(dir.join("fid")).unwrap();
    put("bruker_acqus", "written", &acqus);
    put("bruker_fid", "f64-le", &fid_input(&acqus, false, &fid));
    let mut ser = fid.clone();
    ser.extend_from_slice(&fid);
    put("bruker_fid", "ser", &fid_input(&acqus, true, &ser));

    write_experiment_with_offset(
        &dir,
        &tone(48, -200.0, dwell),
        dwell,
        600.2,
        1800.0,
        "13C",
        2.5,
    )
    .unwrap();
    let acqus = std::fs::read(dir.join("acqus")).unwrap();
    let fid = std::fs::read(dir.join("fid")).unwrap();
    put(
        "bruker_fid",
        "fractional-delay",
        &fid_input(&acqus, false, &fid),
    );
    let _ = std::fs::remove_dir_all(&dir);

    // A hand-written TopSpin-style acqus: int32 big-endian, arrays, strings, the DSP table.
    let text = "##TITLE= Parameter file, TOPSPIN\t\tVersion 3.6.2\n##JCAMP-DX= 5.0\n\
        ##DATATYPE= Parameter Values\n##ORIGIN= Bruker BioSpin GmbH\n##OWNER= nmrsu\n\
        $$ 2021-03-04 10:11:12.123 +0100  nmrsu@spectro\n\
        ##$AQ_mod= 3\n##$BF1= 400.13\n##$BYTORDA= 1\n##$DECIM= 16\n##$DIGMOD= 1\n\
        ##$DSPFVS= 12\n##$DTYPA= 0\n##$NS= 16\n##$NUC1= <1H>\n##$O1= 1880.611\n\
        ##$P= (0..3)\n10.5 0 0 20\n##$PULPROG= <zg30>\n##$SFO1= 400.131880611\n\
        ##$SW_h= 8012.82\n##$TD= 512\n##$USERA= (0..1)\n<a b> <multi\n##END=\n";
    put("bruker_acqus", "topspin", text.as_bytes());
    let mut int32 = Vec::new();
    for k in 0..512i32 {
        int32.extend_from_slice(&(k * 1000 - 250_000).to_be_bytes());
    }
    put(
        "bruker_fid",
        "i32-be-table",
        &fid_input(text.as_bytes(), false, &int32),
    );
}

fn shape_seeds() {
    let shape = Shape::gaussian(1e-3, 64, 0.01).unwrap();
    let b = BrukerShape::from_shape(&shape, "gauss64", ExMode::Excitation, 90.0).unwrap();
    put("bruker_shape", "gauss", write_shape(&b).as_bytes());
    let shape = Shape::hyperbolic_secant(4e-3, 40, 5.0, 1000.0);
    if let Ok(shape) = shape {
        let b = BrukerShape::from_shape(&shape, "hs40", ExMode::Inversion, 180.0).unwrap();
        put("bruker_shape", "hsec", write_shape(&b).as_bytes());
    }
}

/// `scpi_response` inputs: a kind selector (index into the target's `KINDS`), then the bytes.
fn scpi_seeds() {
    let seeds: [(&str, u8, &[u8]); 7] = [
        ("integer", 0, b"+1234\n"),
        ("number", 1, b"-2.50000E-03\r\n"),
        ("quoted", 2, b"\"say \"\"hi\"\"\"\n"),
        (
            "idn",
            4,
            b"Keysight Technologies,33522B,MY12345678,4.00-1.19-2.00-58-00\n",
        ),
        (
            "syst-err",
            5,
            b"-113,\"Undefined header\"\n0,\"No error\"\n",
        ),
        ("opc", 6, b"1\n"),
        ("block", 7, b"#18\x01\x00\xff\x7f\n\x00\x80\x00\n"),
    ];
    for (name, kind, bytes) in seeds {
        let mut input = vec![kind];
        input.extend_from_slice(bytes);
        put("scpi_response", name, &input);
    }
}

fn main() {
    scpi_seeds();
    firmware_seeds();
    nifti_seeds();
    bruker_seeds();
    shape_seeds();
    println!("seeds written under {}", corpus("").display());
}
