//! Owns parsing of *program messages* (what a controller sends an instrument) into program
//! message units, and SCPI header matching with short/long forms. Used by the simulated
//! instrument; usable by any SCPI-speaking device written in Rust.
//!
//! A message is units separated by `;`. A unit is a header (`*IDN?`, `WAV:DATA`,
//! `:SYSTem:ERRor?`, case-insensitive, a leading `:` ignored), then optionally white space and
//! parameters separated by `,`: quoted strings, definite-length blocks or other text
//! (numbers, names, mnemonics). Every unit is taken as a full path from the root (the SCPI
//! "current path" rule for headers without a leading colon is not modelled).

use crate::block::{decode_block, parse_block_header};
use crate::error::ScpiError;

/// One parameter of a program message unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Numbers, names, character data: the text, trimmed.
    Text(String),
    /// A quoted string, unquoted.
    Str(String),
    /// A definite-length block's data.
    Block(Vec<u8>),
}

impl Param {
    /// The text of a [`Param::Text`] or [`Param::Str`].
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Param::Text(t) | Param::Str(t) => Some(t),
            Param::Block(_) => None,
        }
    }
}

/// One program message unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Header without leading `:` and trailing `?`, upper-cased (`WAV:DATA`, `*IDN`).
    pub header: String,
    /// Whether the header ended in `?`.
    pub query: bool,
    /// Parameters in order.
    pub params: Vec<Param>,
}

/// A unit that cannot be parsed: SCPI error code and message for the error queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// SCPI error code (-102 syntax error, -151 invalid string data, -161 invalid block data).
    pub code: i32,
    /// Message for the error queue.
    pub message: String,
}

/// Parses one program message (terminator removed) into units, in order. Parsing stops at the
/// first malformed unit, which is returned as the last element (`Err`); an instrument executes
/// the units before it and discards the rest of the message.
pub fn parse_program_message(msg: &[u8]) -> Vec<Result<Unit, UnitError>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        match parse_unit(msg, &mut pos) {
            Ok(Some(u)) => out.push(Ok(u)),
            Ok(None) => {}
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    out
}

fn syntax(detail: &str) -> UnitError {
    UnitError {
        code: -102,
        message: format!("Syntax error;{detail}"),
    }
}

fn skip_ws(msg: &[u8], pos: &mut usize) {
    while msg
        .get(*pos)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r'))
    {
        *pos += 1;
    }
}

/// Parses the unit at `pos`, leaving `pos` after its `;` (or at the end). `Ok(None)` for an
/// empty unit.
fn parse_unit(msg: &[u8], pos: &mut usize) -> Result<Option<Unit>, UnitError> {
    skip_ws(msg, pos);
    let start = *pos;
    while msg
        .get(*pos)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'*' | b'?' | b'_'))
    {
        *pos += 1;
    }
    let raw = &msg[start..*pos];
    if raw.is_empty() {
        return match msg.get(*pos) {
            Some(b';') => {
                *pos += 1;
                Ok(None)
            }
            None => Ok(None),
            Some(&b) => Err(syntax(&format!("unexpected byte 0x{b:02X}"))),
        };
    }
    // `raw` is ASCII by construction.
    let mut header = String::from_utf8_lossy(raw).to_ascii_uppercase();
    let query = header.ends_with('?');
    if query {
        header.pop();
    }
    let header = header.trim_start_matches(':').to_string();
    if header.is_empty() || header.contains('?') || header.ends_with(':') || header.contains("::") {
        return Err(syntax(&format!(
            "bad header {:?}",
            String::from_utf8_lossy(raw)
        )));
    }
    let mut params = Vec::new();
    match msg.get(*pos) {
        None => {}
        Some(b';') => *pos += 1,
        Some(b' ' | b'\t') => {
            skip_ws(msg, pos);
            if !matches!(msg.get(*pos), None | Some(b';')) {
                loop {
                    skip_ws(msg, pos);
                    params.push(parse_param(msg, pos)?);
                    skip_ws(msg, pos);
                    match msg.get(*pos) {
                        Some(b',') => *pos += 1,
                        Some(b';') | None => break,
                        Some(&b) => {
                            return Err(syntax(&format!(
                                "unexpected byte 0x{b:02X} after parameter"
                            )));
                        }
                    }
                }
            }
            if msg.get(*pos) == Some(&b';') {
                *pos += 1;
            }
        }
        Some(&b) => return Err(syntax(&format!("unexpected byte 0x{b:02X} in header"))),
    }
    Ok(Some(Unit {
        header,
        query,
        params,
    }))
}

fn parse_param(msg: &[u8], pos: &mut usize) -> Result<Param, UnitError> {
    let rest = &msg[(*pos).min(msg.len())..];
    match rest.first() {
        Some(&q @ (b'"' | b'\'')) => {
            let mut out = Vec::new();
            let mut i = 1;
            loop {
                match rest.get(i) {
                    None => {
                        return Err(UnitError {
                            code: -151,
                            message: "Invalid string data;unterminated string".into(),
                        });
                    }
                    Some(&b) if b == q => {
                        if rest.get(i + 1) == Some(&q) {
                            out.push(q);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&b) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            *pos += i;
            String::from_utf8(out)
                .map(Param::Str)
                .map_err(|_| UnitError {
                    code: -151,
                    message: "Invalid string data;not UTF-8".into(),
                })
        }
        Some(b'#') if matches!(rest.get(1), Some(b'0'..=b'9')) => {
            let bad = |e: ScpiError| UnitError {
                code: -161,
                message: format!("Invalid block data;{e}"),
            };
            // Distinguish a cut-short header from other errors for a precise message.
            if let Ok(None) = parse_block_header(rest) {
                return Err(bad(ScpiError::BadBlockHeader("header cut short".into())));
            }
            let (data, used) = decode_block(rest).map_err(bad)?;
            *pos += used;
            Ok(Param::Block(data.to_vec()))
        }
        _ => {
            let len = rest
                .iter()
                .position(|&b| b == b',' || b == b';')
                .unwrap_or(rest.len());
            *pos += len;
            let text = String::from_utf8_lossy(&rest[..len]).trim().to_string();
            if text.is_empty() {
                return Err(syntax("empty parameter"));
            }
            Ok(Param::Text(text))
        }
    }
}

/// Whether `header` (upper-case, as in [`Unit::header`]) matches `pattern`, a SCPI header
/// pattern in the usual notation: each node in mixed case, its upper-case part being the short
/// form (`WAVeform` matches `WAV` and `WAVEFORM`); optional nodes in brackets
/// (`INITiate[:IMMediate]`, `[SOURce:]FUNCtion`). Common commands match literally (`*IDN`).
pub fn header_matches(pattern: &str, header: &str) -> bool {
    let pnodes = pattern_nodes(pattern);
    let hnodes: Vec<&str> = header.split(':').collect();
    match_nodes(&pnodes, &hnodes)
}

/// (node, optional) pairs of a pattern.
fn pattern_nodes(pattern: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            for n in r[..end].split(':').filter(|n| !n.is_empty()) {
                out.push((n, true));
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['[', ':']).unwrap_or(rest.len());
            if end > 0 {
                out.push((&rest[..end], false));
            }
            rest = &rest[end..];
            rest = rest.strip_prefix(':').unwrap_or(rest);
        }
    }
    out
}

fn match_nodes(p: &[(&str, bool)], h: &[&str]) -> bool {
    match (p.first(), h.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(&(node, optional)), hn) => {
            let here = hn.is_some_and(|hn| node_matches(node, hn)) && match_nodes(&p[1..], &h[1..]);
            here || (optional && match_nodes(&p[1..], h))
        }
    }
}

fn node_matches(node: &str, header_node: &str) -> bool {
    let long = node.to_ascii_uppercase();
    let short: String = node
        .chars()
        .take_while(|c| !c.is_ascii_lowercase())
        .collect();
    header_node == long || header_node == short
}
