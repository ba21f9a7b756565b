#!/usr/bin/env python3
"""Peer for tests/bruker_fid.rs: nmrglue 0.12 writes and reads Bruker TopSpin experiments.

Usage (run by `cargo test --test bruker_fid` with the Python named by SPINLOOP_PEER_PYTHON):

  bruker_fid_peer.py write <dir>
      Writes experiments with nmrglue.bruker.write under <dir>/<case>/ and the values a reader
      must return in <dir>/expected.json. Cases (deterministic formula, see `signal`):
        int32_le      DTYPA=0 little-endian fid, TD not a multiple of 256 (no padding),
                      GRPDLY=-1 with DSPFVS=20 (modern firmware: no table delay) -> delay 0
        int32_be_ser  DTYPA=0 big-endian 2D `ser`, 3 FIDs each padded to 1024 bytes; the
                      reader must return the first one; GRPDLY=0
        float64       DTYPA=2 little-endian fid padded to 1024 bytes; GRPDLY=0
        fractional    DTYPA=2 fid holding the formula delayed by 71.625 points (band-limited
                      delay); GRPDLY=71.625, DECIM=16, DSPFVS=12 (the table agrees); the
                      expected FID is numpy's fractional advance (fftfreq-signed linear phase)
                      with the 71 trailing points dropped
      int32 data are the formula scaled by 2**26 and rounded, so nmrglue's cast to int32
      (truncation) is exact.

  bruker_fid_peer.py check <dir> <expected.json>
      Reads <dir> (written by spinloop's write_experiment) with nmrglue.bruker.read and checks
      TD, DTYPA, BYTORDA, AQ_mod, SW_h (= 1/dwell), SFO1, BF1, O1, NUC1, GRPDLY, the file
      padding and every complex value (bit-exact), plus guess_udic's sw/obs/car/label.
      Exits 1 with a list of mismatches on stderr.
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import nmrglue as ng

SW_H = 5000.0
BF1 = 400.13
O1 = 2471.0552
SFO1 = 400.1324710552
LINES = [  # amplitude, frequency (Hz), phase (rad), decay rate (1/s)
    (1.0, 312.5, 0.3, 8.0),
    (0.5, -1187.5, -1.1, 15.0),
    (0.25, 2031.25, 2.0, 5.0),
]
INT_SCALE = 2.0**26


def signal(n_points):
    t = np.arange(n_points) / SW_H
    s = np.zeros(n_points, dtype=np.complex128)
    for a, f, ph, r in LINES:
        s += a * np.exp(1j * ph) * np.exp((2j * np.pi * f - r) * t)
    return s


def acqus(td, dtypa, bytorda, grpdly, extra=None):
    d = {
        "_coreheader": [
            "##TITLE= Parameter file, nmrglue peer for spinloop",
            "##JCAMP-DX= 5.0",
            "##DATATYPE= Parameter Values",
            "##ORIGIN= nmrglue",
            "##OWNER= peer",
        ],
        "_comments": ["$$ written by tests/peers/bruker_fid_peer.py", "$$ /peer/acqus"],
        "AQ_mod": 3,
        "BF1": BF1,
        "BYTORDA": bytorda,
        "DTYPA": dtypa,
        "GRPDLY": grpdly,
        "NS": 16,
        "NUC1": "1H",
        "O1": O1,
        "P": [float(k) * 0.5 for k in range(32)],
        "PULPROG": "zg30",
        "SFO1": SFO1,
        "SW": SW_H / SFO1,
        "SW_h": SW_H,
        "TD": td,
    }
    if extra:
        d.update(extra)
    return {"acqus": d}


def pairs(z):
    return [[float(v.real), float(v.imag)] for v in z]


def case_entry(name, td, grpdly, fid, dic):
    return {
        "name": name,
        "td": td,
        "sw_h": SW_H,
        "sfo1": SFO1,
        "bf1": BF1,
        "o1": O1,
        "nuc1": "1H",
        "ns": 16,
        "group_delay": grpdly,
        "p": dic["acqus"]["P"],
        "fid": pairs(fid),
    }


def write(root):
    os.makedirs(root, exist_ok=True)
    cases = []

    # int32, little-endian, unpadded fid.
    n = 1000
    s = np.round(signal(n) * INT_SCALE)
    dic = acqus(2 * n, 0, 0, -1, {"DSPFVS": 20, "DECIM": 16})
    d = os.path.join(root, "int32_le")
    os.makedirs(d, exist_ok=True)
    ng.bruker.write(d, dic, s, overwrite=True, write_prog=False)
    cases.append(case_entry("int32_le", 2 * n, 0.0, s, dic))

    # int32, big-endian ser: 3 FIDs, each padded to 1024 bytes (256 int32 = 128 points).
    n = 1000
    stride = 1024  # points per padded FID: 1000 complex = 8000 bytes -> 8192 bytes
    s = np.round(signal(n) * INT_SCALE)
    data = np.zeros((3, stride), dtype=np.complex128)
    data[0, :n] = s
    data[1, :n] = -2.0 * s
    data[2, :n] = np.round(1j * s)
    dic = acqus(2 * n, 0, 1, 0)
    d = os.path.join(root, "int32_be_ser")
    os.makedirs(d, exist_ok=True)
    ng.bruker.write(d, dic, data, overwrite=True, write_prog=False)
    assert os.path.exists(os.path.join(d, "ser"))
    cases.append(case_entry("int32_be_ser", 2 * n, 0.0, s, dic))

    # float64, little-endian, fid padded to 1024 bytes.
    n = 1000
    s = signal(n) * 1.0e3
    padded = np.zeros(1024, dtype=np.complex128)
    padded[:n] = s
    dic = acqus(2 * n, 2, 0, 0)
    d = os.path.join(root, "float64")
    os.makedirs(d, exist_ok=True)
    ng.bruker.write(d, dic, padded, overwrite=True, write_prog=False)
    cases.append(case_entry("float64", 2 * n, 0.0, s, dic))

    # float64 with a fractional digital-filter delay.
    n = 1024
    g = 71.625
    s = signal(n)
    freq = np.fft.fftfreq(n)  # signed k/N
    raw = np.fft.ifft(np.fft.fft(s) * np.exp(-2j * np.pi * g * freq))
    corrected = np.fft.ifft(np.fft.fft(raw) * np.exp(2j * np.pi * g * freq))[: n - math.floor(g)]
    dic = acqus(2 * n, 2, 0, g, {"DSPFVS": 12, "DECIM": 16})
    d = os.path.join(root, "fractional")
    os.makedirs(d, exist_ok=True)
    ng.bruker.write(d, dic, raw, overwrite=True, write_prog=False)
    cases.append(case_entry("fractional", 2 * n, g, corrected, dic))

    with open(os.path.join(root, "expected.json"), "w") as f:
        json.dump({"cases": cases, "lines": LINES, "int_scale": INT_SCALE}, f)
    print("wrote %d cases under %s" % (len(cases), root))


def check(root, expected_path):
    with open(expected_path) as f:
        exp = json.load(f)
    errors = []

    def expect(what, got, want):
        if got != want:
            errors.append("%s: nmrglue read %r, expected %r" % (what, got, want))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no pulseprogram, no procs: nmrglue warns
        dic, data = ng.bruker.read(root)
        udic = ng.bruker.guess_udic(dic, data)
    a = dic["acqus"]
    n = len(exp["fid"])
    expect("TD", a.get("TD"), 2 * n)
    expect("DTYPA", a.get("DTYPA"), 2)
    expect("BYTORDA", a.get("BYTORDA"), 0)
    expect("AQ_mod", a.get("AQ_mod"), 3)
    expect("SW_h", a.get("SW_h"), exp["sw_h"])
    expect("SFO1", a.get("SFO1"), exp["sfo1"])
    expect("BF1", a.get("BF1"), exp["bf1"])
    expect("O1", a.get("O1"), exp["o1"])
    expect("NUC1", a.get("NUC1"), exp["nuc1"])
    expect("GRPDLY", a.get("GRPDLY"), exp["group_delay"])
    sw = a.get("SW_h")
    if isinstance(sw, float) and abs(1.0 / sw - exp["dwell"]) > 1e-15 * exp["dwell"]:
        errors.append("1/SW_h = %r != dwell %r" % (1.0 / sw, exp["dwell"]))
    if dic["FILE_SIZE"] % 1024 != 0:
        errors.append("fid size %d is not a multiple of 1024 bytes" % dic["FILE_SIZE"])
    if dic["FILE_SIZE"] < 16 * n:
        errors.append("fid size %d < 16 * %d points" % (dic["FILE_SIZE"], n))
    if data.ndim != 1 or not np.iscomplexobj(data):
        errors.append("data shape %r dtype %s (expected 1D complex)" % (data.shape, data.dtype))
    else:
        want = np.array([complex(re, im) for re, im in exp["fid"]])
        if data.shape[0] < n:
            errors.append("nmrglue returned %d points, expected >= %d" % (data.shape[0], n))
        else:
            diff = np.nonzero(data[:n] != want)[0]
            if diff.size:
                k = int(diff[0])
                errors.append(
                    "%d of %d points differ; first at %d: %r vs %r"
                    % (diff.size, n, k, data[k], want[k])
                )
            if np.any(data[n:] != 0):
                errors.append("padding after point %d is not zero" % n)
    expect("udic sw", udic[0]["sw"], exp["sw_h"])
    expect("udic obs", udic[0]["obs"], exp["sfo1"])
    expect("udic car", udic[0]["car"], exp["o1"])
    expect("udic label", udic[0]["label"], exp["nuc1"])
    if errors:
        for e in errors:
            print("bruker_fid_peer check %s: %s" % (root, e), file=sys.stderr)
        sys.exit(1)
    print("ok: nmrglue %s read %d points, SW_h %r, SFO1 %r" % (ng.__version__, n, sw, a.get("SFO1")))


def main(argv):
    if len(argv) == 3 and argv[1] == "write":
        write(argv[2])
    elif len(argv) == 4 and argv[1] == "check":
        check(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
