//! A session's export: every FID as NIfTI-MRS, every waveform as Pulseq `.seq`, Bruker shape
//! and JSON, and the session, acquisitions, fits and events as JSON — the files
//! `spinloop sessions export` writes. Built from the store only (no live state).

use num_complex::Complex64 as C64;
use serde_json::json;

use crate::design::problem::WaveformFile;
use crate::formats::bruker::{BrukerShape, ExMode, write_shape};
use crate::formats::nifti_mrs::NiftiMrs;
use crate::formats::pulseq::{Adc, PulseqExport, PulseqSystem, RfPulse, RfUse};
use crate::physics::PhysicsError;
use crate::sequence::shapes::Shape;
use crate::store::{Store, StoreError};

/// Bytes per streamed chunk.
pub const CHUNK: usize = 1 << 20;

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing a file format failed.
    #[error("{what}: {source}")]
    Format {
        /// Which file.
        what: String,
        /// Why.
        source: PhysicsError,
    },
}

fn fmt_err(what: impl Into<String>) -> impl FnOnce(PhysicsError) -> ExportError {
    let what = what.into();
    move |source| ExportError::Format { what, source }
}

fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s.into_bytes()
}

/// Every file of a session's export, `(relative path, bytes)`, in a fixed order.
pub fn session_files(store: &Store, id: &str) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    let session = store.get_session(id)?;
    let console = store.get_console(&session.console_id)?;
    let profile = super::runner::profile_of(&console).ok();
    let acquisitions = store.list_acquisitions(id)?;
    let waveforms = store.list_waveforms(id)?;
    let fits = store.list_fits(id)?;
    let events = store.events_since(Some(id), 0, usize::MAX >> 1)?;
    let mut files = Vec::new();
    files.push((
        "session.json".to_string(),
        json_bytes(&json!({
            "id": session.id,
            "console_id": session.console_id,
            "state": session.state.as_str(),
            "spec": session.spec,
            "created_ms": session.created_ms,
            "updated_ms": session.updated_ms,
            "console": console.info.limits,
        })),
    ));
    let mut index = Vec::new();
    for (k, a) in acquisitions.iter().enumerate() {
        let name = format!("acquisitions/{:04}.nii", k + 1);
        let mut nifti = NiftiMrs::single_voxel(
            a.data.samples.clone(),
            a.data.dwell_s,
            a.data.f0_hz * 1e-6,
            "1H",
        )
        .map_err(fmt_err(name.clone()))?;
        // User-defined keys take the standard's {Value, Description} form.
        for (key, value, description) in [
            (
                "spinloop_acquisition_id",
                json!(a.id),
                "spinloop store id of the acquisition",
            ),
            (
                "spinloop_waveform_id",
                json!(a.data.waveform_id),
                "id of the waveform played",
            ),
            (
                "spinloop_idempotency_key",
                json!(a.data.idempotency_key),
                "console's idempotency key",
            ),
            (
                "spinloop_averages",
                json!(a.data.averages),
                "averages summed in the FID",
            ),
        ] {
            nifti.set(key, json!({"Value": value, "Description": description}));
        }
        files.push((
            name.clone(),
            nifti.to_bytes().map_err(fmt_err(name.clone()))?,
        ));
        index.push(json!({
            "file": name,
            "id": a.id,
            "idempotency_key": a.data.idempotency_key,
            "waveform_id": a.data.waveform_id,
            "dwell_s": a.data.dwell_s,
            "f0_hz": a.data.f0_hz,
            "averages": a.data.averages,
            "coil": a.data.coil,
            "points": a.data.n_samples,
            "received_ms": a.received_ms,
        }));
    }
    files.push(("acquisitions.json".into(), json_bytes(&json!(index))));
    for w in &waveforms {
        let ux: Vec<f64> = w.data.samples.iter().map(|c: &C64| c.re).collect();
        let uy: Vec<f64> = w.data.samples.iter().map(|c: &C64| c.im).collect();
        let dt = w.data.dt_s;
        let base = format!("waveforms/{}", w.data.id);
        let file = WaveformFile {
            dt,
            ux: ux.clone(),
            uy: uy.clone(),
            peak_b1_hz: profile.as_ref().map(|p| p.limits.peak_b1_hz),
            name: Some(w.data.id.clone()),
        };
        let v = serde_json::to_value(&file).unwrap_or_default();
        files.push((format!("{base}.json"), json_bytes(&v)));
        let mut rf = RfPulse::new(ux.clone(), uy.clone(), dt);
        rf.rf_use = RfUse::Excitation;
        let adc = profile
            .as_ref()
            .map(|p| Adc::new(p.sample_count, p.dwell_s));
        let seq =
            PulseqExport::pulse_acquire(w.data.id.clone(), PulseqSystem::default(), rf, 0.0, adc);
        let text = seq
            .to_seq_string()
            .map_err(fmt_err(format!("{base}.seq")))?;
        files.push((format!("{base}.seq"), text.into_bytes()));
        let (shape, _) = Shape::from_controls(w.data.id.clone(), dt, &ux, &uy)
            .map_err(fmt_err(format!("{base}.bruker.shape")))?;
        let bruker = BrukerShape::from_shape(&shape, &w.data.id, ExMode::Excitation, 90.0)
            .map_err(fmt_err(format!("{base}.bruker.shape")))?;
        files.push((
            format!("{base}.bruker.shape"),
            write_shape(&bruker).into_bytes(),
        ));
    }
    let fits_v: Vec<_> = fits
        .iter()
        .map(|f| {
            json!({"id": f.id, "acquisition_id": f.data.acquisition_id,
                   "params": f.data.params, "created_ms": f.created_ms})
        })
        .collect();
    files.push(("fits.json".into(), json_bytes(&json!(fits_v))));
    let events_v: Vec<_> = events
        .iter()
        .map(|e| json!({"seq": e.seq, "kind": e.kind, "payload": e.payload, "at_ms": e.at_ms}))
        .collect();
    files.push(("events.json".into(), json_bytes(&json!(events_v))));
    Ok(files)
}
