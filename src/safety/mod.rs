//! The safety interlock every outgoing waveform passes.
