"""WFDB records (PhysioNet): header, format-212/16 signal files verified against the header's checksums,
MIT-format annotation files, and beat windows around annotated R peaks with the AAMI EC57 class mapping."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataFileError

# AAMI EC57 classes; the mapping follows de Chazal et al. 2004, plus the beat codes MIT-BIH does not use.
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
AAMI_MAP = {"N": 0, "L": 0, "R": 0, "e": 0, "j": 0, "B": 0, "n": 0,
            "A": 1, "a": 1, "J": 1, "S": 1,
            "V": 2, "E": 2, "r": 2,
            "F": 3,
            "/": 4, "f": 4, "Q": 4, "?": 4}

# Annotation codes 0..41 of the WFDB library's ecgcodes.h, indexed by code ("" where the code is unused).
_CODE_SYMBOLS = (" ", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "", "|", "", "s",
                 "T", "*", "D", '"', "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]", "e", "n", "@", "x",
                 "f", "(", ")", "r")
_SKIP, _NUM, _SUB, _CHN, _AUX = 59, 60, 61, 62, 63
_FORMAT = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+]?[\d.]+(?:[eE][-+]?\d+)?)(?:\((-?\d+)\))?(?:/(\S+))?$")
_INVALID_212 = -2048


@dataclass
class SignalSpec:
    file_name: str
    fmt: int
    byte_offset: int
    gain: float
    baseline: int
    units: str
    adc_zero: int
    initial_value: int | None
    checksum: int | None
    description: str


@dataclass
class Header:
    path: Path
    record: str
    fs: float
    n_samples: int | None
    signals: list[SignalSpec] = field(default_factory=list)


@dataclass
class Annotations:
    path: Path
    sample: np.ndarray        # int64 sample index of each annotation
    symbol: list[str]
    aux: list[str]            # auxiliary text ("(N" rhythm labels and the like), "" where none


@dataclass
class Record:
    header: Header
    digital: np.ndarray       # (n_samples, n_signals) int32 ADC units
    physical: np.ndarray      # (n_samples, n_signals) float32 in each signal's units (mV for ECG), NaN if invalid


def record_stem(record_path) -> Path:
    """``.../100``, ``.../100.hea``, ``.../100.dat`` or ``.../100.atr`` -> ``.../100``."""
    path = Path(record_path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat", ".atr") else path


def read_header(path) -> Header:
    path = Path(str(record_stem(path)) + ".hea")
    try:
        lines = path.read_text(errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFileError(path, f"cannot read the header ({e})") from e
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataFileError(path, "no record line")
    rec = lines[0].split()
    try:
        if "/" in rec[0]:
            raise DataFileError(path, "multi-segment records are not supported")
        n_signals = int(rec[1])
        fs = float(rec[2].split("/")[0].split("(")[0]) if len(rec) > 2 else 250.0
        n_samples = int(rec[3]) if len(rec) > 3 else None
    except (IndexError, ValueError) as e:
        raise DataFileError(path, f"bad record line {lines[0]!r} ({e})") from e
    if len(lines) - 1 < n_signals:
        raise DataFileError(path, f"record line announces {n_signals} signals but {len(lines) - 1} signal lines follow")
    header = Header(path, rec[0], fs, n_samples)
    for line in lines[1:1 + n_signals]:
        header.signals.append(_signal_spec(path, line))
    return header


def _signal_spec(path: Path, line: str) -> SignalSpec:
    f = line.split()
    fmt = _FORMAT.match(f[1]) if len(f) > 1 else None
    if fmt is None:
        raise DataFileError(path, f"bad signal line {line!r}: no storage format")
    code, per_frame, skew, offset = fmt.groups()
    if int(code) not in (212, 16) or (per_frame and int(per_frame) != 1) or (skew and int(skew) != 0):
        raise DataFileError(path, f"signal format {f[1]!r} is not supported (only 212 and 16, one sample per frame, "
                                  "no skew)")
    try:
        gain_m = _GAIN.match(f[2]) if len(f) > 2 else None
        if len(f) > 2 and gain_m is None:
            raise ValueError(f"bad gain {f[2]!r}")
        gain = float(gain_m.group(1)) if gain_m else 0.0
        adc_zero = int(f[4]) if len(f) > 4 else 0
        baseline = int(gain_m.group(2)) if gain_m and gain_m.group(2) is not None else adc_zero
        units = gain_m.group(3) if gain_m and gain_m.group(3) else "mV"
        initial = int(f[5]) if len(f) > 5 else None
        checksum = int(f[6]) if len(f) > 6 else None
    except ValueError as e:
        raise DataFileError(path, f"bad signal line {line!r} ({e})") from e
    return SignalSpec(file_name=f[0], fmt=int(code), byte_offset=int(offset or 0),
                      gain=gain if gain != 0.0 else 200.0,  # WFDB: a zero gain means the default, 200 per unit
                      baseline=baseline, units=units, adc_zero=adc_zero, initial_value=initial, checksum=checksum,
                      description=" ".join(f[8:]) if len(f) > 8 else f"signal {f[0]}")


def read_record(record_path, verify: bool = True) -> Record:
    """All signals of a single-segment record; with ``verify`` each one's first sample and 16-bit checksum
    must match the header."""
    header = read_header(record_path)
    if not header.signals:
        raise DataFileError(header.path, "the record has no signals")
    columns: dict[int, np.ndarray] = {}
    # Signals that share a file are interleaved sample by sample within it.
    by_file: dict[tuple[str, int, int], list[int]] = {}
    for i, s in enumerate(header.signals):
        by_file.setdefault((s.file_name, s.fmt, s.byte_offset), []).append(i)
    names = [k[0] for k in by_file]
    if len(set(names)) != len(names):
        raise DataFileError(header.path, "signals sharing a file must share its format and byte offset")
    n_samples = header.n_samples
    for (name, fmt, offset), idx in by_file.items():
        data = _read_file(header.path.parent / name, fmt, offset, len(idx), n_samples, header.path)
        n_samples = data.shape[0]
        for j, i in enumerate(idx):
            columns[i] = data[:, j]
    digital = np.stack([columns[i] for i in range(len(header.signals))], axis=1)
    if verify:
        for i, s in enumerate(header.signals):
            _verify(header, i, s, digital[:, i])
    gains = np.array([s.gain for s in header.signals])
    baselines = np.array([s.baseline for s in header.signals])
    physical = ((digital - baselines) / gains).astype(np.float32)
    is_212 = np.array([s.fmt == 212 for s in header.signals])
    physical[(digital == _INVALID_212) & is_212] = np.nan  # WFDB's "no valid sample here" code
    return Record(header, digital, physical)


def _read_file(path: Path, fmt: int, offset: int, n_signals: int, n_samples: int | None, header_path: Path):
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataFileError(path, f"cannot read the signal file named in {header_path} ({e})") from e
    raw = raw[offset:]
    bits = 12 if fmt == 212 else 16
    available = raw.size * 8 // (bits * n_signals)
    if n_samples is None:
        n_samples = available
    elif available < n_samples:
        need = -(-n_samples * n_signals * bits // 8) + offset
        raise DataFileError(path, f"truncated: {raw.size + offset} bytes, but {header_path.name} announces "
                                  f"{n_samples} samples of {n_signals} signal(s) in format {fmt} ({need} bytes)")
    total = n_samples * n_signals
    if fmt == 16:
        flat = raw[:2 * total].view("<i2").astype(np.int32)
    else:
        # Format 212: each 3 bytes hold two 12-bit two's-complement samples; the second byte carries the
        # high nibble of both (low nibble -> first sample, high nibble -> second).
        n_pairs = -(-total // 2)
        b = raw[:3 * n_pairs].astype(np.int32).reshape(n_pairs, 3)
        flat = np.empty(2 * n_pairs, dtype=np.int32)
        flat[0::2] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
        flat[1::2] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
        flat[flat >= 2048] -= 4096
        flat = flat[:total]
    return flat.reshape(n_samples, n_signals)


def _verify(header: Header, i: int, spec: SignalSpec, samples: np.ndarray) -> None:
    dat = header.path.parent / spec.file_name
    what = f"signal {i} ({spec.description})"
    if spec.initial_value is not None and samples.size and samples[0] != spec.initial_value:
        raise DataFileError(dat, f"{what}: first sample {samples[0]} does not match the initial value "
                                 f"{spec.initial_value} in {header.path.name}")
    if spec.checksum is not None:
        # WFDB checksum: the sum of all samples kept to 16 bits, as a signed number.
        got = (int(samples.sum(dtype=np.int64)) + 32768) % 65536 - 32768
        if got != spec.checksum:
            raise DataFileError(dat, f"{what}: checksum mismatch: the samples sum to {got} (16-bit) but "
                                     f"{header.path.name} says {spec.checksum}; the file is corrupt or not this "
                                     "record's")


def read_annotations(path, annotator: str = "atr") -> Annotations:
    """An MIT-format annotation file (``<record>.<annotator>``): 16-bit little-endian words, 6-bit code
    over a 10-bit time step, with SKIP/NUM/SUB/CHN/AUX pseudo-codes; ends with a zero word."""
    path = Path(path)
    if path.suffix != "." + annotator:
        path = Path(str(record_stem(path)) + "." + annotator)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataFileError(path, f"cannot read the annotation file ({e})") from e
    samples, symbols, aux = [], [], []
    t, pos, ended = 0, 0, False
    while pos + 2 <= len(data):
        word = data[pos] | (data[pos + 1] << 8)
        pos += 2
        code, step = word >> 10, word & 0x3FF
        if code == 0 and step == 0:
            ended = True
            break
        if code == _SKIP:
            if pos + 4 > len(data):
                break
            # The skip interval is a PDP-11 long: high 16-bit word first, each word little-endian.
            hi = data[pos] | (data[pos + 1] << 8)
            lo = data[pos + 2] | (data[pos + 3] << 8)
            t += int(np.int32(np.uint32((hi << 16) | lo)))
            pos += 4
        elif code == _AUX:
            if pos + step > len(data):
                break
            if symbols:
                aux[-1] = data[pos:pos + step].split(b"\0")[0].decode("latin-1")
            pos += step + (step & 1)
        elif code in (_NUM, _SUB, _CHN):
            continue  # per-annotation fields this reader does not use
        else:
            t += step
            samples.append(t)
            symbols.append(_CODE_SYMBOLS[code] if code < len(_CODE_SYMBOLS) and _CODE_SYMBOLS[code] else f"[{code}]")
            aux.append("")
    if not ended:
        raise DataFileError(path, f"truncated: no end-of-annotations marker after {len(symbols)} annotations "
                                  f"({len(data)} bytes)")
    sample = np.asarray(samples, dtype=np.int64)
    if sample.size and sample.min() < 0:
        raise DataFileError(path, f"annotation at negative sample {int(sample.min())}")
    return Annotations(path, sample, symbols, aux)


def beat_annotations(ann: Annotations) -> tuple[np.ndarray, list[str]]:
    """The samples and symbols of the beat annotations (those with an AAMI class), in order; rhythm, noise
    and other non-beat annotations are left out."""
    keep = np.array([s in AAMI_MAP for s in ann.symbol], dtype=bool)
    return ann.sample[keep], [s for s, k in zip(ann.symbol, keep) if k]


def wfdb_beats(record_path, before: int = 90, after: int = 110, lead=0, annotator: str = "atr",
               edge: str = "pad") -> tuple[np.ndarray, list[str], np.ndarray]:
    """Windows of ``before + after`` samples (float32, the lead's physical units, mV for MIT-BIH) around every
    beat annotation, the R peak at index ``before``; the beat symbols; and their AAMI classes
    (N, S, V, F, Q -> 0..4). Non-beat annotations (rhythm changes, noise) are skipped. ``edge="pad"`` keeps
    beats near either end of the record by repeating the edge sample; ``"drop"`` leaves them out."""
    if int(before) < 0 or int(after) < 1:
        raise ValueError(f"before must be >= 0 and after >= 1, got before={before}, after={after}")
    if edge not in ("pad", "drop"):
        raise ValueError(f"edge must be 'pad' or 'drop', got {edge!r}")
    record = read_record(record_path)
    descriptions = [s.description for s in record.header.signals]
    if isinstance(lead, str):
        if lead not in descriptions:
            raise ValueError(f"lead {lead!r} is not in record {record.header.record} (leads {descriptions})")
        lead = descriptions.index(lead)
    if not 0 <= int(lead) < len(descriptions):
        raise ValueError(f"lead must be in [0, {len(descriptions)}), got {lead}")
    signal = record.physical[:, int(lead)]
    ann = read_annotations(record_path, annotator)
    if ann.sample.size and ann.sample.max() >= signal.size:
        raise DataFileError(ann.path, f"annotation at sample {int(ann.sample.max())} lies beyond the record's "
                                      f"{signal.size} samples")
    peaks, symbols = beat_annotations(ann)
    if edge == "drop":
        inside = (peaks >= before) & (peaks + after <= signal.size)
        peaks = peaks[inside]
        symbols = [s for s, k in zip(symbols, inside) if k]
    padded = np.pad(signal, (before, after), mode="edge")
    index = peaks[:, None] + np.arange(before + after)[None, :]
    windows = padded[index].astype(np.float32)
    classes = np.array([AAMI_MAP[s] for s in symbols], dtype=np.int64)
    return windows, symbols, classes
