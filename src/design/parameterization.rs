//! Waveform parameterizations with a hard peak-B1 limit.
