#!/usr/bin/env python3
"""Peer check of spinloop's NIfTI-MRS reader and writer against the reference package
`nifti-mrs` (pinned in tests/peers/requirements.txt). Driven by the Rust test
`peer_nifti_mrs` in tests/nifti_mrs.rs.

    nifti_mrs_peer.py validate FILE...
        For each FILE (written by spinloop) and its expectation FILE.expect.json (written by the
        Rust test): load it with nifti_mrs.nifti_mrs.NIFTI_MRS (which validates the header
        extension), run nifti_mrs.validator.validate_nifti_mrs, and compare shape, data type,
        dwell time, spectrometer frequency, nucleus, dimension tags, header keys and the listed
        samples with the expectation. Samples are compared exactly, on NIFTI_MRS(file)[:], the
        package's user-facing (FSL-MRS) phase convention, which is spinloop's. If the
        expectation has "peak_hz", the largest line of the first FID must sit at that frequency
        on the package's own frequency axis and at SpecFreqChemShift + peak_hz / MHz on its ppm
        axis.

    nifti_mrs_peer.py write OUT2 [OUT1]
        Writes a dataset with nifti_mrs.create_nmrs.gen_nifti_mrs(..., no_conj=True), NIfTI-2 to
        OUT2 and (if given) NIfTI-1 to OUT1: shape (2, 1, 1, 64, 3), complex64, dwell 2.5e-4 s,
        297.2 MHz, 1H, dim_5 = DIM_DYN, EchoTime 0.03 s, SequenceName "peer-write", with the
        stored samples
            stored[x, y, z, t, d] = (t + 1000 d + 100 x) + 1j * (-0.5 t + 0.25 d)
        (all exact in float32). no_conj=True stores the array unchanged, so the package's own
        accessor NIFTI_MRS(file)[:] returns the conjugate, which is what spinloop must read.

Exit status 0 when every check passes; failures are printed to stderr.
"""
import json
import sys

import numpy as np
from nifti_mrs.create_nmrs import gen_nifti_mrs
from nifti_mrs.nifti_mrs import NIFTI_MRS
from nifti_mrs.validator import validate_nifti_mrs

WRITE_SHAPE = (2, 1, 1, 64, 3)
WRITE_DWELL = 2.5e-4
WRITE_MHZ = 297.2


def formula(shape):
    """The stored samples of `write`: (t + 1000 d + 100 x) + 1j (-0.5 t + 0.25 d)."""
    x, _y, _z, t, d = np.indices(shape)
    return (t + 1000.0 * d + 100.0 * x) + 1j * (-0.5 * t + 0.25 * d)


def check_file(path):
    """Returns a list of failure messages for one file (empty when it passes)."""
    failures = []

    def check(ok, msg):
        if not ok:
            failures.append(f"{path}: {msg}")

    with open(f"{path}.expect.json", encoding="utf-8") as f:
        exp = json.load(f)
    nmrs = NIFTI_MRS(path)  # validates the header extension and SpectralWidth on creation
    validate_nifti_mrs(nmrs)  # data, NIfTI header (dtype, dwell, intent), header extension

    check(tuple(nmrs.shape) == tuple(exp["shape"]), f"shape {nmrs.shape} != {exp['shape']}")
    dtype = str(nmrs.header.get_data_dtype())
    check(dtype == exp["dtype"], f"dtype {dtype} != {exp['dtype']}")
    check(nmrs.dwelltime == exp["dwell"], f"dwell {nmrs.dwelltime!r} != {exp['dwell']!r}")
    check(nmrs.spectrometer_frequency[0] == exp["mhz"],
          f"SpectrometerFrequency {nmrs.spectrometer_frequency} != {exp['mhz']}")
    check(nmrs.nucleus[0] == exp["nucleus"], f"ResonantNucleus {nmrs.nucleus} != {exp['nucleus']}")
    intent = nmrs.header.get_intent()[2]
    check(intent.startswith("mrs_v"), f"intent {intent!r}")
    tags = nmrs.dim_tags[: len(exp["dim_tags"])]
    check(list(tags) == exp["dim_tags"], f"dim tags {tags} != {exp['dim_tags']}")
    for key, value in exp.get("header", {}).items():
        got = nmrs.hdr_ext[key] if key in nmrs.hdr_ext else "<missing>"
        check(got == value, f"header {key} = {got!r} != {value!r}")

    data = nmrs[:]  # the package's user-facing convention (conjugate of the stored samples)
    stored = nmrs.image[:]
    check(np.array_equal(np.conj(stored), data), "nmrs[:] is not the conjugate of the stored data")
    mismatches = 0
    for sample in exp["samples"]:
        idx = tuple(sample["index"])
        want = complex(sample["value"][0], sample["value"][1])
        got = complex(data[idx])
        if got != want:
            mismatches += 1
            if mismatches <= 5:
                failures.append(f"{path}: sample {idx} = {got!r}, expected {want!r}")
    check(mismatches == 0, f"{mismatches} of {len(exp['samples'])} samples differ")

    peak = ""
    if "peak_hz" in exp:
        fid = data[(0, 0, 0, slice(None)) + (0,) * (data.ndim - 4)]
        spec = np.fft.fftshift(np.fft.fft(fid))
        k = int(np.argmax(np.abs(spec)))
        axes = nmrs.axes
        f_hz = float(axes.frequencyAxis[k])
        ppm = float(axes.ppmAxisShift[k])
        bin_hz = 1.0 / (nmrs.dwelltime * fid.size)
        ref = nmrs.SpecFreqChemShift
        want_ppm = ref + exp["peak_hz"] / nmrs.spectrometer_frequency[0]
        check(abs(f_hz - exp["peak_hz"]) <= bin_hz,
              f"peak at {f_hz} Hz on the package's axis, expected {exp['peak_hz']} Hz")
        check(abs(ppm - want_ppm) <= bin_hz / nmrs.spectrometer_frequency[0],
              f"peak at {ppm} ppm on the package's axis, expected {want_ppm} ppm")
        peak = f"; peak {f_hz:+.1f} Hz = {ppm:.3f} ppm (reference {ref} ppm)"

    if not failures:
        print(f"OK {path}: validate_nifti_mrs passed; {nmrs.nifti_mrs_version and 'mrs_v' + nmrs.nifti_mrs_version.replace('.', '_')} "
              f"shape {tuple(nmrs.shape)} {dtype} dwell {nmrs.dwelltime} s "
              f"{nmrs.spectrometer_frequency[0]} MHz {nmrs.nucleus[0]} tags {list(tags)}; "
              f"{len(exp['samples'])} samples equal, first {complex(data[tuple(exp['samples'][0]['index'])])}"
              f"{peak}")
    return failures


def validate(paths):
    failures = []
    for path in paths:
        try:
            failures += check_file(path)
        except Exception as exc:  # report every file, then fail
            failures.append(f"{path}: {type(exc).__name__}: {exc}")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


def write(out2, out1=None):
    arr = formula(WRITE_SHAPE).astype(np.complex64)
    for path, version in ((out2, 2), (out1, 1)):
        if path is None:
            continue
        nmrs = gen_nifti_mrs(arr, WRITE_DWELL, WRITE_MHZ, "1H",
                             dim_tags=["DIM_DYN", None, None],
                             nifti_version=version, no_conj=True)
        nmrs.add_hdr_field("EchoTime", 0.03)
        nmrs.add_hdr_field("SequenceName", "peer-write")
        nmrs.save(path)
        back = NIFTI_MRS(path)
        validate_nifti_mrs(back)
        if not np.array_equal(back.image[:], arr):
            print(f"FAIL {path}: stored samples are not the array given with no_conj=True",
                  file=sys.stderr)
            return 1
        print(f"wrote {path}: NIfTI-{version} {back.header.get_data_dtype()} shape {back.shape} "
              f"dwell {back.dwelltime} s; stored[x,y,z,t,d] = (t + 1000 d + 100 x) + i(-0.5 t + 0.25 d), "
              f"stored[1,0,0,3,2] = {complex(back.image[1, 0, 0, 3, 2])}")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "validate":
        return validate(argv[1:])
    if len(argv) in (2, 3) and argv[0] == "write":
        return write(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
