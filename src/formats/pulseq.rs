//! Pulseq open sequence format (.seq v1.4/1.5) writer for designed RF waveforms.
