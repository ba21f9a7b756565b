//! Owns the sans-IO **simulated instrument**: an arbitrary-waveform generator (and, through an
//! [`AcquisitionHook`], a receiver) that speaks the dialogue of the crate documentation. It is
//! fed bytes with [`SimInstrument::handle_input`] and polled for output with
//! [`SimInstrument::poll_transmit`] and [`SimInstrument::poll_event`]; it does no I/O and
//! reads no clock.
//!
//! It keeps a SCPI error queue (capacity [`InstrumentConfig::error_queue_capacity`]; when
//! full, the newest entry is replaced by `-350,"Queue overflow"`), answers queries in order
//! (several queries in one message are answered in one line joined by `;`), stores waveforms
//! as DAC codes, and on `INIT` calls the [`AcquisitionHook`] to produce the FID of the played
//! waveform. A query that fails produces an error queue entry and **no response** (IEEE 488.2
//! behaviour), so a controller times out; the rest of a message after a failing unit is
//! discarded.
//!
//! Error codes used: -102 syntax error, -104 data type error, -108 parameter not allowed,
//! -109 missing parameter, -113 undefined header, -151 invalid string data, -161 invalid block
//! data, -221 settings conflict, -222 data out of range, -223 too much data, -224 illegal
//! parameter value, -225 out of memory, -230 data corrupt or stale, -240 hardware error, -350
//! queue overflow, -363 input buffer overrun.
//!
//! Fault injection ([`SimInstrument::corrupt_next_blocks`],
//! [`SimInstrument::drop_next_responses`], [`SimInstrument::corrupt_next_fids`],
//! [`SimInstrument::inject_error`]) simulates line corruption, lost responses and device
//! errors. `*RST` restores byte order `NORMal`, clears the selection and the acquisition id;
//! stored waveforms and FIDs survive it (as arbitrary waveforms in volatile memory do on common
//! AWGs until `WAV:DEL`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use spinloop_firmware::crc32c;

use crate::block::encode_block;
use crate::command::{Param, Unit, header_matches, parse_program_message};
use crate::dac::{DacConfig, IqCode, IqHz, decode_codes, encode_f32_pairs, unscale};
use crate::framer::Framer;
use crate::response::{ErrorEntry, Idn, quote};

/// An acquired FID: complex points and the dwell time.
#[derive(Debug, Clone, PartialEq)]
pub struct Fid {
    /// Complex points `[re, im]` (arbitrary units).
    pub points: Vec<[f32; 2]>,
    /// Dwell time (sample spacing) in seconds.
    pub dwell_s: f64,
}

/// What the hook gets when a waveform is played (`INIT`).
#[derive(Debug, Clone)]
pub struct AcquisitionRequest<'a> {
    /// Name of the selected waveform (upper case).
    pub waveform_name: &'a str,
    /// Acquisition id set with `ACQ:ID` (0 after `*RST`).
    pub acquisition: u64,
    /// The stored DAC codes.
    pub codes: &'a [IqCode],
    /// The instrument's DAC configuration (to convert codes to Hz).
    pub dac: &'a DacConfig,
    /// The instant passed to the [`SimInstrument::handle_input`] call that carried `INIT`.
    pub now: Instant,
}

impl AcquisitionRequest<'_> {
    /// The played waveform in Hz of B1 (`code · lsb`).
    pub fn waveform_hz(&self) -> Vec<IqHz> {
        unscale(self.dac, self.codes)
    }
}

/// Produces the FID for a played waveform: where simulated consoles plug their physics in.
/// An `Err(text)` puts `-240,"Hardware error;<text>"` in the error queue and stores no FID.
pub trait AcquisitionHook: Send {
    /// Acquires the FID for `request`.
    fn acquire(&mut self, request: &AcquisitionRequest<'_>) -> Result<Fid, String>;
}

impl<F> AcquisitionHook for F
where
    F: FnMut(&AcquisitionRequest<'_>) -> Result<Fid, String> + Send,
{
    fn acquire(&mut self, request: &AcquisitionRequest<'_>) -> Result<Fid, String> {
        self(request)
    }
}

/// A hook that returns the played waveform itself (in Hz, as `f32`) as the FID, with a fixed
/// dwell time: a loopback for tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoHook {
    /// Dwell time reported for every FID, seconds.
    pub dwell_s: f64,
}

impl AcquisitionHook for EchoHook {
    fn acquire(&mut self, request: &AcquisitionRequest<'_>) -> Result<Fid, String> {
        Ok(Fid {
            points: request
                .waveform_hz()
                .into_iter()
                .map(|[i, q]| [i as f32, q as f32])
                .collect(),
            dwell_s: self.dwell_s,
        })
    }
}

/// Simulated instrument configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentConfig {
    /// What `*IDN?` answers.
    pub idn: Idn,
    /// DAC range (codes beyond `±max_code` are refused with -222) and scaling for the hook.
    pub dac: DacConfig,
    /// Most points per waveform (-223 beyond).
    pub max_points: usize,
    /// Most stored waveforms (-225 beyond).
    pub max_waveforms: usize,
    /// Longest waveform name; names are a letter then letters, digits or `_` (-224 otherwise).
    pub max_name_len: usize,
    /// Error queue capacity (≥ 1).
    pub error_queue_capacity: usize,
    /// Longest program message in bytes, blocks included (-363 beyond).
    pub max_message_len: usize,
    /// Most FIDs kept (the oldest is dropped).
    pub max_fids: usize,
}

impl Default for InstrumentConfig {
    /// `spinloop,SIM-AWG,0,1.0`, 16-bit DAC with 1000 Hz full scale, 65536 points, 64
    /// waveforms, 24-character names, error queue of 20, 4 MiB messages, 64 FIDs.
    fn default() -> Self {
        Self {
            idn: Idn {
                manufacturer: "spinloop".into(),
                model: "SIM-AWG".into(),
                serial: "0".into(),
                firmware: "1.0".into(),
            },
            dac: DacConfig::new_16bit(1000.0),
            max_points: 65536,
            max_waveforms: 64,
            max_name_len: 24,
            error_queue_capacity: 20,
            max_message_len: 4 << 20,
            max_fids: 64,
        }
    }
}

/// Something that happened inside the instrument, for tests and simulated consoles.
#[derive(Debug, Clone, PartialEq)]
pub enum InstrumentEvent {
    /// A waveform was stored.
    WaveformStored {
        /// Name (upper case).
        name: String,
        /// Number of points.
        points: usize,
        /// CRC-32C of the block data as received.
        crc: u32,
    },
    /// A waveform was played and its FID stored.
    Played {
        /// Waveform name.
        name: String,
        /// Acquisition id.
        acquisition: u64,
    },
    /// `*RST` was executed.
    Reset,
    /// `*CLS` was executed.
    Cleared,
    /// An entry was added to the error queue.
    ErrorQueued(ErrorEntry),
    /// A response was dropped by fault injection.
    ResponseDropped,
    /// A received block was corrupted by fault injection.
    BlockCorrupted,
}

/// The simulated instrument; see the module docs.
pub struct SimInstrument {
    config: InstrumentConfig,
    hook: Box<dyn AcquisitionHook>,
    framer: Framer,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<InstrumentEvent>,
    errors: VecDeque<ErrorEntry>,
    waveforms: BTreeMap<String, Vec<IqCode>>,
    received_crc: BTreeMap<String, u32>,
    selected: Option<String>,
    acquisition: u64,
    fids: VecDeque<(u64, Fid)>,
    little_endian: bool,
    corrupt_blocks: u32,
    drop_responses: u32,
    corrupt_fids: u32,
}

impl std::fmt::Debug for SimInstrument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimInstrument")
            .field("idn", &self.config.idn)
            .field("errors", &self.errors)
            .field("waveforms", &self.waveforms.keys().collect::<Vec<_>>())
            .field("selected", &self.selected)
            .field("acquisition", &self.acquisition)
            .field("little_endian", &self.little_endian)
            .finish_non_exhaustive()
    }
}

/// Result of executing one unit.
type Exec = Result<Option<Vec<u8>>, ErrorEntry>;

fn err(code: i32, message: impl Into<String>) -> ErrorEntry {
    ErrorEntry {
        code,
        message: message.into(),
    }
}

impl SimInstrument {
    /// A powered-on instrument (byte order `NORMal`, empty error queue, no waveforms).
    pub fn new(config: InstrumentConfig, hook: Box<dyn AcquisitionHook>) -> Self {
        let framer = Framer::new(config.max_message_len, true);
        Self {
            config,
            hook,
            framer,
            out: VecDeque::new(),
            events: VecDeque::new(),
            errors: VecDeque::new(),
            waveforms: BTreeMap::new(),
            received_crc: BTreeMap::new(),
            selected: None,
            acquisition: 0,
            fids: VecDeque::new(),
            little_endian: false,
            corrupt_blocks: 0,
            drop_responses: 0,
            corrupt_fids: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &InstrumentConfig {
        &self.config
    }

    /// Feeds bytes received from the controller; executes every complete message.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.framer.push(bytes);
        while let Some(msg) = self.framer.next_message() {
            match msg {
                Ok(msg) => self.execute_message(&msg, now),
                Err(_) => self.push_error(err(-363, "Input buffer overrun")),
            }
        }
    }

    /// The next response line to send to the controller (terminator included).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next internal event.
    pub fn poll_event(&mut self) -> Option<InstrumentEvent> {
        self.events.pop_front()
    }

    /// The stored codes of waveform `name` (case-insensitive).
    pub fn waveform(&self, name: &str) -> Option<&[IqCode]> {
        self.waveforms
            .get(&name.to_ascii_uppercase())
            .map(Vec::as_slice)
    }

    /// Names of stored waveforms (upper case).
    pub fn waveform_names(&self) -> impl Iterator<Item = &str> {
        self.waveforms.keys().map(String::as_str)
    }

    /// The stored FID of acquisition `id`.
    pub fn fid(&self, acquisition: u64) -> Option<&Fid> {
        self.fids
            .iter()
            .find(|(a, _)| *a == acquisition)
            .map(|(_, f)| f)
    }

    /// The error queue, oldest first.
    pub fn error_queue(&self) -> impl Iterator<Item = &ErrorEntry> {
        self.errors.iter()
    }

    /// Whether blocks are little-endian (`FORM:BORD SWAP`).
    pub fn is_little_endian(&self) -> bool {
        self.little_endian
    }

    /// Fault injection: flip one bit in the data of each of the next `n` received
    /// `WAV:DATA` blocks before the instrument sees them (its CRC is then of the corrupted
    /// bytes, as after line corruption).
    pub fn corrupt_next_blocks(&mut self, n: u32) {
        self.corrupt_blocks = n;
    }

    /// Fault injection: do not send the next `n` responses.
    pub fn drop_next_responses(&mut self, n: u32) {
        self.drop_responses = n;
    }

    /// Fault injection: flip one bit in the data of each of the next `n` `FETC:FID?` responses
    /// (after `FETC:CRC?` would have been computed, as line corruption).
    pub fn corrupt_next_fids(&mut self, n: u32) {
        self.corrupt_fids = n;
    }

    /// Fault injection: add an entry to the error queue (as a device error would).
    pub fn inject_error(&mut self, code: i32, message: &str) {
        self.push_error(err(code, message));
    }

    fn push_error(&mut self, e: ErrorEntry) {
        let cap = self.config.error_queue_capacity.max(1);
        let e = if self.errors.len() >= cap {
            self.errors.pop_back();
            err(-350, "Queue overflow")
        } else {
            e
        };
        self.events
            .push_back(InstrumentEvent::ErrorQueued(e.clone()));
        self.errors.push_back(e);
    }

    fn execute_message(&mut self, msg: &[u8], now: Instant) {
        let mut responses: Vec<Vec<u8>> = Vec::new();
        for unit in parse_program_message(msg) {
            let result = match unit {
                Ok(unit) => self.execute(unit, now),
                Err(e) => Err(err(e.code, e.message)),
            };
            match result {
                Ok(Some(r)) => responses.push(r),
                Ok(None) => {}
                Err(e) => {
                    self.push_error(e);
                    break;
                }
            }
        }
        if responses.is_empty() {
            return;
        }
        if self.drop_responses > 0 {
            self.drop_responses -= 1;
            self.events.push_back(InstrumentEvent::ResponseDropped);
            return;
        }
        let mut line = responses.join(&b';');
        line.push(b'\n');
        self.out.push_back(line);
    }

    fn execute(&mut self, unit: Unit, now: Instant) -> Exec {
        let h = unit.header.as_str();
        let q = unit.query;
        let p = &unit.params;
        let is = |pattern: &str, query: bool| q == query && header_matches(pattern, h);
        if is("*IDN", true) {
            no_params(p)?;
            Ok(Some(self.config.idn.to_string().into_bytes()))
        } else if is("*RST", false) {
            no_params(p)?;
            self.little_endian = false;
            self.selected = None;
            self.acquisition = 0;
            self.events.push_back(InstrumentEvent::Reset);
            Ok(None)
        } else if is("*CLS", false) {
            no_params(p)?;
            self.errors.clear();
            self.events.push_back(InstrumentEvent::Cleared);
            Ok(None)
        } else if is("*OPC", true) {
            no_params(p)?;
            Ok(Some(b"1".to_vec()))
        } else if is("*OPC", false) || is("*WAI", false) {
            no_params(p)?;
            Ok(None)
        } else if is("SYSTem:ERRor[:NEXT]", true) {
            no_params(p)?;
            let e = self
                .errors
                .pop_front()
                .unwrap_or_else(|| err(0, "No error"));
            Ok(Some(e.to_string().into_bytes()))
        } else if is("FORMat:BORDer", false) {
            let v = one_text(p)?.to_ascii_uppercase();
            self.little_endian = match v.as_str() {
                "SWAP" | "SWAPPED" => true,
                "NORM" | "NORMAL" => false,
                _ => return Err(err(-224, format!("Illegal parameter value;{v}"))),
            };
            Ok(None)
        } else if is("FORMat:BORDer", true) {
            no_params(p)?;
            Ok(Some(if self.little_endian {
                b"SWAP".to_vec()
            } else {
                b"NORM".to_vec()
            }))
        } else if is("WAVeform:DATA", false) {
            self.wav_data(unit.params)
        } else if is("WAVeform:CRC", true) {
            let name = self.name_param(p)?;
            match self.received_crc.get(&name) {
                Some(c) => Ok(Some(c.to_string().into_bytes())),
                None => Err(err(
                    -224,
                    format!("Illegal parameter value;no data for {name}"),
                )),
            }
        } else if is("WAVeform:SELect", false) {
            let name = self.name_param(p)?;
            if !self.waveforms.contains_key(&name) {
                return Err(err(
                    -224,
                    format!("Illegal parameter value;no waveform {name}"),
                ));
            }
            self.selected = Some(name);
            Ok(None)
        } else if is("WAVeform:SELect", true) {
            no_params(p)?;
            Ok(Some(
                quote(self.selected.as_deref().unwrap_or("")).into_bytes(),
            ))
        } else if is("WAVeform:DELete", false) {
            let name = self.name_param(p)?;
            if self.waveforms.remove(&name).is_none() {
                return Err(err(
                    -224,
                    format!("Illegal parameter value;no waveform {name}"),
                ));
            }
            self.received_crc.remove(&name);
            if self.selected.as_deref() == Some(name.as_str()) {
                self.selected = None;
            }
            Ok(None)
        } else if is("ACQuire:ID", false) {
            self.acquisition = u64_param(one_text(p)?)?;
            Ok(None)
        } else if is("ACQuire:ID", true) {
            no_params(p)?;
            Ok(Some(self.acquisition.to_string().into_bytes()))
        } else if is("INITiate[:IMMediate]", false) {
            no_params(p)?;
            self.initiate(now)
        } else if is("FETCh:FID", true) {
            let acq = u64_param(one_text(p)?)?;
            let little = self.little_endian;
            let fid = self.find_fid(acq)?;
            let mut data = encode_f32_pairs(&fid.points, little);
            if self.corrupt_fids > 0 && !data.is_empty() {
                self.corrupt_fids -= 1;
                let k = data.len() / 2;
                data[k] ^= 0x01;
            }
            Ok(Some(encode_block(&data)))
        } else if is("FETCh:CRC", true) {
            let acq = u64_param(one_text(p)?)?;
            let little = self.little_endian;
            let fid = self.find_fid(acq)?;
            Ok(Some(
                crc32c(&encode_f32_pairs(&fid.points, little))
                    .to_string()
                    .into_bytes(),
            ))
        } else if is("FETCh:DWELl", true) {
            let acq = u64_param(one_text(p)?)?;
            let fid = self.find_fid(acq)?;
            Ok(Some(nr3(fid.dwell_s).into_bytes()))
        } else {
            Err(err(
                -113,
                format!(
                    "Undefined header;{}{}",
                    unit.header,
                    if q { "?" } else { "" }
                ),
            ))
        }
    }

    fn find_fid(&self, acquisition: u64) -> Result<&Fid, ErrorEntry> {
        self.fid(acquisition).ok_or_else(|| {
            err(
                -230,
                format!("Data corrupt or stale;no acquisition {acquisition}"),
            )
        })
    }

    fn name_param(&self, p: &[Param]) -> Result<String, ErrorEntry> {
        let name = one_text(p)?;
        self.check_name(name)
    }

    fn check_name(&self, name: &str) -> Result<String, ErrorEntry> {
        let ok = name.len() <= self.config.max_name_len
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(name.to_ascii_uppercase())
        } else {
            Err(err(
                -224,
                format!("Illegal parameter value;bad name {name:?}"),
            ))
        }
    }

    fn wav_data(&mut self, mut params: Vec<Param>) -> Exec {
        if params.len() < 2 {
            return Err(err(-109, "Missing parameter"));
        }
        if params.len() > 2 {
            return Err(err(-108, "Parameter not allowed"));
        }
        let name = match &params[0] {
            Param::Text(t) | Param::Str(t) => self.check_name(t)?,
            Param::Block(_) => return Err(err(-104, "Data type error;name expected")),
        };
        let Param::Block(mut data) = params.remove(1) else {
            return Err(err(-104, "Data type error;block expected"));
        };
        if self.corrupt_blocks > 0 && !data.is_empty() {
            self.corrupt_blocks -= 1;
            let k = data.len() / 2;
            data[k] ^= 0x01;
            self.events.push_back(InstrumentEvent::BlockCorrupted);
        }
        let crc = crc32c(&data);
        self.received_crc.insert(name.clone(), crc);
        if data.is_empty() {
            return Err(err(-161, "Invalid block data;empty waveform"));
        }
        let Some(codes) = decode_codes(&data, self.little_endian) else {
            return Err(err(
                -161,
                "Invalid block data;length not a multiple of 4 (int16 I/Q pairs)",
            ));
        };
        if codes.len() > self.config.max_points {
            return Err(err(-223, "Too much data"));
        }
        let max = self.config.dac.max_code;
        if let Some(k) = codes.iter().position(|&[i, q]| {
            i.unsigned_abs() > max.unsigned_abs() || q.unsigned_abs() > max.unsigned_abs()
        }) {
            return Err(err(-222, format!("Data out of range;point {k}")));
        }
        if !self.waveforms.contains_key(&name) && self.waveforms.len() >= self.config.max_waveforms
        {
            return Err(err(-225, "Out of memory"));
        }
        let points = codes.len();
        self.waveforms.insert(name.clone(), codes);
        self.events
            .push_back(InstrumentEvent::WaveformStored { name, points, crc });
        Ok(None)
    }

    fn initiate(&mut self, now: Instant) -> Exec {
        let Some(name) = self.selected.clone() else {
            return Err(err(-221, "Settings conflict;no waveform selected"));
        };
        let Some(codes) = self.waveforms.get(&name) else {
            return Err(err(-221, "Settings conflict;selected waveform deleted"));
        };
        let request = AcquisitionRequest {
            waveform_name: &name,
            acquisition: self.acquisition,
            codes,
            dac: &self.config.dac,
            now,
        };
        match self.hook.acquire(&request) {
            Ok(fid) => {
                let acq = self.acquisition;
                self.fids.retain(|(a, _)| *a != acq);
                if self.fids.len() >= self.config.max_fids.max(1) {
                    self.fids.pop_front();
                }
                self.fids.push_back((acq, fid));
                self.events.push_back(InstrumentEvent::Played {
                    name,
                    acquisition: acq,
                });
                Ok(None)
            }
            Err(text) => Err(err(-240, format!("Hardware error;{text}"))),
        }
    }
}

/// `v` in NR3 form with the shortest mantissa that round-trips: `+1.0E-6`, `-2.5E3`.
fn nr3(v: f64) -> String {
    let s = format!("{v:+E}");
    match s.split_once('E') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0E{e}"),
        _ => s,
    }
}

fn no_params(p: &[Param]) -> Result<(), ErrorEntry> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(err(-108, "Parameter not allowed"))
    }
}

fn one_text(p: &[Param]) -> Result<&str, ErrorEntry> {
    match p {
        [] => Err(err(-109, "Missing parameter")),
        [one] => one
            .as_text()
            .ok_or_else(|| err(-104, "Data type error;block not allowed")),
        _ => Err(err(-108, "Parameter not allowed")),
    }
}

fn u64_param(text: &str) -> Result<u64, ErrorEntry> {
    let t = text.strip_prefix('+').unwrap_or(text);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(
            -104,
            format!("Data type error;integer expected, got {text:?}"),
        ));
    }
    t.parse()
        .map_err(|_| err(-222, format!("Data out of range;{text}")))
}
