//! Plots of spectra and waveforms (in progress).
