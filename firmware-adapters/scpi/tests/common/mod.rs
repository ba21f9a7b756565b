//! Back-to-back harness: an `AwgClient` wired to a `SimInstrument` in memory, on a virtual
//! clock.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use spinloop_scpi::{
    AwgClient, ClientConfig, ClientEvent, DacConfig, EchoHook, InstrumentConfig, SimInstrument,
};

pub struct Harness {
    pub client: AwgClient,
    pub inst: SimInstrument,
    pub now: Instant,
    /// Every line the client wrote (for dialogue assertions).
    pub sent: Vec<Vec<u8>>,
    /// Every line the instrument wrote.
    pub received: Vec<Vec<u8>>,
}

pub fn dac() -> DacConfig {
    DacConfig {
        full_scale_hz: 1000.0,
        max_code: 8191,
        amplitude_limit_hz: 800.0,
    }
}

pub fn inst_config() -> InstrumentConfig {
    InstrumentConfig {
        dac: dac(),
        ..InstrumentConfig::default()
    }
}

impl Harness {
    pub fn new(config: ClientConfig) -> Self {
        Self::with_instrument(
            config,
            SimInstrument::new(inst_config(), Box::new(EchoHook { dwell_s: 1e-5 })),
        )
    }

    pub fn with_instrument(config: ClientConfig, inst: SimInstrument) -> Self {
        let now = Instant::now();
        let client = AwgClient::new(config, now).expect("valid config");
        Self {
            client,
            inst,
            now,
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    pub fn default_config() -> ClientConfig {
        ClientConfig::new(dac())
    }

    /// Moves bytes both ways until both sides are quiet.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                self.inst.handle_input(&b, self.now);
                self.sent.push(b);
                moved = true;
            }
            while let Some(b) = self.inst.poll_transmit() {
                self.client.handle_input(&b, self.now);
                self.received.push(b);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Pumps, firing timers on the virtual clock, until the client is idle; returns the
    /// client's events.
    pub fn run(&mut self) -> Vec<ClientEvent> {
        for _ in 0..1000 {
            self.pump();
            if self.client.is_idle() {
                break;
            }
            match self.client.poll_timeout() {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                }
                None => break,
            }
        }
        let mut out = Vec::new();
        while let Some(e) = self.client.poll_event() {
            out.push(e);
        }
        out
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Connected harness with the connect events drained.
    pub fn connected(config: ClientConfig) -> Self {
        let mut h = Self::new(config);
        let ev = h.run();
        assert!(
            matches!(ev.as_slice(), [ClientEvent::Connected { .. }]),
            "connect events: {ev:?}"
        );
        h.sent.clear();
        h.received.clear();
        h
    }

    pub fn sent_text(&self) -> Vec<String> {
        self.sent
            .iter()
            .map(|l| {
                // Abbreviate blocks: keep text up to '#'.
                let s = String::from_utf8_lossy(l).to_string();
                match s.find(",#") {
                    Some(i) => format!("{},#<block>", &s[..i]),
                    None => s.trim_end().to_string(),
                }
            })
            .collect()
    }
}

/// A smooth test waveform (Hz), peak well under 800 Hz.
pub fn waveform(n: usize) -> Vec<[f64; 2]> {
    (0..n)
        .map(|k| {
            let t = k as f64 / n as f64;
            let a = 700.0 * (std::f64::consts::PI * t).sin();
            [a * (6.0 * t).cos(), a * (6.0 * t).sin()]
        })
        .collect()
}
