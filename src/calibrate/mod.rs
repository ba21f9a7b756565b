//! Calibration: the hardware model (B1 scale, B0 offset, phases, linewidth, amplitude, amplifier compression) and its fit to measured spectra.
