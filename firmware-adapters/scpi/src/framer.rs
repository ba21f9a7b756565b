//! Owns message framing on a byte stream: splitting what arrives from a serial line into
//! messages ended by LF (`\n`, a preceding `\r` is dropped), while carrying definite-length
//! blocks — which may contain any byte, LF included — through whole.
//!
//! In *block-aware* mode a `#` followed by a digit `1..=9` starts a block when it is the first
//! byte of the message or follows `,`, `;`, a space or a tab, and is not inside a quoted
//! string; its data is skipped by length. In *line* mode (used for responses that are never
//! blocks, such as `*IDN?`) only LF matters. `#0` is not a block here (the parser rejects it
//! later with [`ScpiError::IndefiniteBlock`]).
//!
//! A message longer than the configured maximum is discarded with
//! [`ScpiError::MessageTooLong`]; the framer then drops input up to the next LF (skipping an
//! announced block's data by count without buffering it) and carries on.

use crate::block::parse_block_header;
use crate::error::ScpiError;

/// Splits a byte stream into LF-terminated messages; see the module docs.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: Vec<u8>,
    /// Scan position in `buf`.
    pos: usize,
    /// Quote character of an open quoted string.
    quote: Option<u8>,
    /// End (index in `buf`) of a block whose data is being received.
    block_end: Option<usize>,
    /// Discarding input after an oversize message: block bytes still to skip, then until LF.
    discard: Option<usize>,
    blocks: bool,
    max_len: usize,
}

impl Framer {
    /// A framer for messages of at most `max_len` bytes (terminator excluded); `blocks`
    /// selects block-aware mode.
    pub fn new(max_len: usize, blocks: bool) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            quote: None,
            block_end: None,
            discard: None,
            blocks,
            max_len,
        }
    }

    /// Switches between block-aware and line mode; takes effect for the next message that
    /// starts (not for one partly received).
    pub fn set_blocks(&mut self, blocks: bool) {
        self.blocks = blocks;
    }

    /// Drops everything buffered (partial message, discard state).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.quote = None;
        self.block_end = None;
        self.discard = None;
    }

    /// Bytes of a partial message currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes. Call [`Framer::next_message`] until it returns `None`.
    pub fn push(&mut self, mut bytes: &[u8]) {
        // Discarding an oversize message: drop without buffering.
        while let Some(skip) = self.discard {
            if bytes.is_empty() {
                return;
            }
            if skip > 0 {
                let n = skip.min(bytes.len());
                bytes = &bytes[n..];
                self.discard = Some(skip - n);
            } else if let Some(lf) = bytes.iter().position(|&b| b == b'\n') {
                bytes = &bytes[lf + 1..];
                self.discard = None;
            } else {
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message (without its terminator), an error for a discarded one, or
    /// `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, ScpiError>> {
        loop {
            if let Some(end) = self.block_end {
                if self.buf.len() < end {
                    return None;
                }
                self.pos = end;
                self.block_end = None;
            }
            let Some(&b) = self.buf.get(self.pos) else {
                if self.buf.len() > self.max_len {
                    return Some(self.overflow(0, self.pos));
                }
                return None;
            };
            if b == b'\n' {
                let mut msg: Vec<u8> = self.buf.drain(..=self.pos).collect();
                msg.pop();
                if msg.last() == Some(&b'\r') {
                    msg.pop();
                }
                self.pos = 0;
                self.quote = None;
                if msg.len() > self.max_len {
                    return Some(Err(ScpiError::MessageTooLong { max: self.max_len }));
                }
                return Some(Ok(msg));
            }
            if self.pos >= self.max_len {
                return Some(self.overflow(0, self.pos));
            }
            if let Some(q) = self.quote {
                if b == q {
                    self.quote = None;
                }
                self.pos += 1;
                continue;
            }
            if !self.blocks {
                self.pos += 1;
                continue;
            }
            match b {
                b'"' | b'\'' => {
                    self.quote = Some(b);
                    self.pos += 1;
                }
                b'#' if self.pos == 0
                    || matches!(self.buf[self.pos - 1], b',' | b';' | b' ' | b'\t') =>
                {
                    match parse_block_header(&self.buf[self.pos..]) {
                        Ok(None) => return None,
                        Ok(Some(h)) => {
                            let end = self.pos + h.total_len();
                            if end > self.max_len {
                                // Skip the block data that has not arrived yet.
                                let start = self.pos + h.header_len;
                                let have = self.buf.len().saturating_sub(start);
                                let skip = h.data_len.saturating_sub(have);
                                let rest_from = self.buf.len().min(start + h.data_len);
                                return Some(self.overflow(skip, rest_from));
                            }
                            self.block_end = Some(end);
                        }
                        // Not a definite block (`#0`, `#H1F`, ...): ordinary text.
                        Err(_) => self.pos += 1,
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Discards the buffered message and enters discard mode: skip `skip` more bytes (block
    /// data not yet received), then drop up to the next LF. Buffered bytes from `rest_from` on
    /// are unscanned text and are fed back through the discard logic.
    fn overflow(&mut self, skip: usize, rest_from: usize) -> Result<Vec<u8>, ScpiError> {
        let rest: Vec<u8> = self
            .buf
            .get(rest_from..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.buf.clear();
        self.pos = 0;
        self.quote = None;
        self.block_end = None;
        self.discard = Some(skip);
        self.push(&rest);
        Err(ScpiError::MessageTooLong { max: self.max_len })
    }
}
