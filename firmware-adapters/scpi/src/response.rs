//! Owns parsing of instrument responses: numbers (NR1, NR2, NR3 and the `#H`/`#Q`/`#B`
//! non-decimal forms), quoted strings, `*IDN?`, `SYST:ERR?`, `*OPC?` and binary block
//! responses, through one pure entry point, [`parse_response`], which never panics on any
//! input (it is proptested with arbitrary bytes and suitable for fuzzing).
//!
//! Every parser accepts the response with or without its terminator (`\n` or `\r\n`) and
//! ignores white space around text responses. Block responses are taken byte-exact (only a
//! terminator after the block is allowed).

use std::fmt;

use crate::block::decode_exact_block;
use crate::error::ScpiError;

/// What response a query expects; selects the parser in [`parse_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// An integer: NR1 (`+12`, `-3`) or `#H1F`, `#Q17`, `#B101` → [`Response::Integer`].
    Integer,
    /// Any decimal number, NR1/NR2/NR3 (`+1.00000E+00`, `-2.5`, `9.9E37`) → [`Response::Number`].
    Number,
    /// A quoted string (`"text"` or `'text'`, doubled quotes inside) → [`Response::Text`].
    QuotedString,
    /// Unquoted text (e.g. `NORM`) → [`Response::Text`].
    Text,
    /// `*IDN?`: four comma-separated fields → [`Response::Idn`].
    Idn,
    /// `SYST:ERR?`: `<code>,"<message>"` → [`Response::Error`].
    SystemError,
    /// `*OPC?`: `1` → [`Response::OperationComplete`].
    Opc,
    /// A definite-length binary block → [`Response::Block`].
    Block,
}

/// The identification returned by `*IDN?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Idn {
    /// Field 1, e.g. `Keysight Technologies`.
    pub manufacturer: String,
    /// Field 2, e.g. `33522B`.
    pub model: String,
    /// Field 3, serial number (`0` if not available).
    pub serial: String,
    /// Field 4, firmware revision (may itself contain commas).
    pub firmware: String,
}

impl fmt::Display for Idn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.manufacturer, self.model, self.serial, self.firmware
        )
    }
}

/// One entry of the SCPI error queue, as returned by `SYST:ERR?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorEntry {
    /// Error code: 0 = no error, negative = SCPI standard, positive = device specific.
    pub code: i32,
    /// The message text (without quotes).
    pub message: String,
}

impl ErrorEntry {
    /// Whether this is the "queue empty" entry (code 0).
    pub fn is_no_error(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for ErrorEntry {
    /// The wire form, `<code>,"<message>"` with inner quotes doubled.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.code, quote(&self.message))
    }
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// From [`ResponseKind::Integer`].
    Integer(i64),
    /// From [`ResponseKind::Number`].
    Number(f64),
    /// From [`ResponseKind::QuotedString`] (unquoted) or [`ResponseKind::Text`].
    Text(String),
    /// From [`ResponseKind::Idn`].
    Idn(Idn),
    /// From [`ResponseKind::SystemError`].
    Error(ErrorEntry),
    /// From [`ResponseKind::Opc`].
    OperationComplete,
    /// From [`ResponseKind::Block`]: the block's data bytes.
    Block(Vec<u8>),
}

/// Parses one response of the given kind. Pure, total: returns an error, never panics, for any
/// `bytes`.
pub fn parse_response(kind: ResponseKind, bytes: &[u8]) -> Result<Response, ScpiError> {
    if kind == ResponseKind::Block {
        return decode_exact_block(bytes).map(|d| Response::Block(d.to_vec()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ScpiError::NotUtf8)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ScpiError::Empty);
    }
    match kind {
        ResponseKind::Integer => parse_integer(text).map(Response::Integer),
        ResponseKind::Number => parse_number(text).map(Response::Number),
        ResponseKind::QuotedString => parse_quoted(text).map(Response::Text),
        ResponseKind::Text => Ok(Response::Text(text.to_string())),
        ResponseKind::Idn => parse_idn(text).map(Response::Idn),
        ResponseKind::SystemError => parse_error_entry(text).map(Response::Error),
        ResponseKind::Opc => {
            if matches!(parse_integer(text), Ok(1)) {
                Ok(Response::OperationComplete)
            } else {
                Err(ScpiError::BadOpc(text.to_string()))
            }
        }
        ResponseKind::Block => decode_exact_block(bytes).map(|d| Response::Block(d.to_vec())),
    }
}

/// Parses an integer: NR1 (`[+-]digits`) or a non-decimal form `#H<hex>`, `#Q<octal>`,
/// `#B<binary>` (as IEEE 488.2 §7.7.4). Surrounding white space is ignored.
pub fn parse_integer(text: &str) -> Result<i64, ScpiError> {
    let t = text.trim();
    let bad = || ScpiError::BadNumber(t.to_string());
    if let Some(rest) = t.strip_prefix('#') {
        let mut chars = rest.chars();
        let radix = match chars.next().map(|c| c.to_ascii_uppercase()) {
            Some('H') => 16,
            Some('Q') => 8,
            Some('B') => 2,
            _ => return Err(bad()),
        };
        let digits = chars.as_str();
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(bad());
        }
        return i64::from_str_radix(digits, radix)
            .map_err(|_| ScpiError::NumberOutOfRange(t.to_string()));
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Rust's parser rejects a leading '+' only in old versions; strip it for clarity.
    let signed = t.strip_prefix('+').unwrap_or(t);
    signed
        .parse::<i64>()
        .map_err(|_| ScpiError::NumberOutOfRange(t.to_string()))
}

/// Parses a decimal number in NR1, NR2 or NR3 form (`12`, `-1.5`, `+1.00000E+00`, `.5e-3`),
/// also accepting a non-decimal integer (`#H..`). Rejects `inf`, `nan` and everything else
/// that is not SCPI numeric response data.
pub fn parse_number(text: &str) -> Result<f64, ScpiError> {
    let t = text.trim();
    if t.starts_with('#') {
        return parse_integer(t).map(|v| v as f64);
    }
    let bad = || ScpiError::BadNumber(t.to_string());
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        mantissa_digits += i - frac_start;
    }
    if mantissa_digits == 0 {
        return Err(bad());
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return Err(bad());
        }
    }
    if i != b.len() {
        return Err(bad());
    }
    let v: f64 = t.parse().map_err(|_| bad())?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ScpiError::NumberOutOfRange(t.to_string()))
    }
}

/// Parses a quoted string (`"..."` or `'...'`, the quote character doubled inside) and returns
/// its content. Surrounding white space is ignored; anything else around it is an error.
pub fn parse_quoted(text: &str) -> Result<String, ScpiError> {
    let t = text.trim();
    match take_quoted(t) {
        Some((s, rest)) if rest.trim().is_empty() => Ok(s),
        _ => Err(ScpiError::BadString(t.to_string())),
    }
}

/// Takes a quoted string from the start of `text`: its content and the text after the closing
/// quote. `None` if `text` does not start with a complete quoted string.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let mut chars = text.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let mut out = String::new();
    let mut chars = chars.peekable();
    while let Some((idx, c)) = chars.next() {
        if c == q {
            if matches!(chars.peek(), Some(&(_, c2)) if c2 == q) {
                chars.next();
                out.push(q);
            } else {
                return Some((out, &text[idx + c.len_utf8()..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// `s` as a double-quoted SCPI string, inner `"` doubled.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Parses an `*IDN?` response: manufacturer, model, serial, firmware separated by commas (the
/// firmware field takes the rest of the line). Fields are trimmed; empty fields are allowed.
pub fn parse_idn(text: &str) -> Result<Idn, ScpiError> {
    let t = text.trim();
    let fields: Vec<&str> = t.splitn(4, ',').map(str::trim).collect();
    match fields.as_slice() {
        [manufacturer, model, serial, firmware] => Ok(Idn {
            manufacturer: manufacturer.to_string(),
            model: model.to_string(),
            serial: serial.to_string(),
            firmware: firmware.to_string(),
        }),
        _ => Err(ScpiError::BadIdn {
            fields: fields.len(),
            text: t.to_string(),
        }),
    }
}

/// Parses a `SYST:ERR?` response, `<NR1 code>,"<message>"` (e.g. `-113,"Undefined header"`,
/// `+0,"No error"`). An unquoted message is accepted as is; a missing message is an error.
pub fn parse_error_entry(text: &str) -> Result<ErrorEntry, ScpiError> {
    let t = text.trim();
    let bad = || ScpiError::BadErrorEntry(t.to_string());
    let (code, message) = t.split_once(',').ok_or_else(bad)?;
    let code = parse_integer(code).map_err(|_| bad())?;
    let code = i32::try_from(code).map_err(|_| bad())?;
    let message = message.trim();
    let message = if message.starts_with(['"', '\'']) {
        match take_quoted(message) {
            Some((m, rest)) if rest.trim().is_empty() => m,
            _ => return Err(bad()),
        }
    } else {
        message.to_string()
    };
    Ok(ErrorEntry { code, message })
}
