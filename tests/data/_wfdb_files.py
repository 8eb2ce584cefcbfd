"""Writers for small crafted WFDB records, independent of the reader under test."""
import numpy as np

CODES = {"N": 1, "V": 5, "A": 8, "L": 2, "/": 12, "F": 6, "+": 28, "~": 14, "Q": 13}


def pack_212(samples: np.ndarray) -> bytes:
    """Frame-interleaved (n, nsig) int samples in [-2048, 2047] -> format-212 bytes."""
    flat = (samples.astype(np.int64).ravel() & 0xFFF).tolist()
    if len(flat) % 2:
        flat.append(0)
    out = bytearray()
    for a, b in zip(flat[0::2], flat[1::2]):
        out += bytes([a & 0xFF, ((a >> 8) & 0x0F) | ((b >> 8) << 4), b & 0xFF])
    return bytes(out)


def checksum(column: np.ndarray) -> int:
    total = int(sum(int(v) for v in column)) & 0xFFFF
    return total - 65536 if total >= 32768 else total


def write_record(folder, name, samples, fmt=212, gains=(200.0, 100.0), baselines=(1024, 0), checksums=None,
                 initial=None, fs=360, extra_lines=(), descriptions=None):
    """A record of (n, nsig) digital samples in one signal file, with the header's checksums right unless
    ``checksums``/``initial`` say otherwise; signal j is described as ``descriptions[j]`` (default lead<j>)."""
    samples = np.asarray(samples)
    n, nsig = samples.shape
    data = pack_212(samples) if fmt == 212 else samples.astype("<i2").tobytes()
    (folder / f"{name}.dat").write_bytes(data)
    lines = ["# crafted for a test", f"{name} {nsig} {fs} {n}", *extra_lines]
    for j in range(nsig):
        cs = checksum(samples[:, j]) if checksums is None else checksums[j]
        iv = int(samples[0, j]) if initial is None else initial[j]
        lines.append(f"{name}.dat {fmt} {gains[j]}({baselines[j]})/mV 12 {baselines[j]} {iv} {cs} 0 {descriptions[j] if descriptions else f'lead{j}'}")
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name


def encode_annotations(events, end=True) -> bytes:
    """(sample, symbol[, aux]) events -> MIT annotation bytes; gaps over 1023 samples use a SKIP word."""
    out = bytearray()

    def word(code, value):
        out.extend(((code << 10) | value).to_bytes(2, "little"))

    t = 0
    for sample, symbol, *aux in events:
        gap = sample - t
        if gap > 1023:
            word(59, 0)
            out.extend(((gap >> 16) & 0xFFFF).to_bytes(2, "little"))
            out.extend((gap & 0xFFFF).to_bytes(2, "little"))
            gap = 0
        word(CODES[symbol], gap)
        t = sample
        if aux:
            text = aux[0].encode() + b"\0"
            word(63, len(text))
            out.extend(text + (b"\0" if len(text) % 2 else b""))
        word(60, 0)  # a NUM pseudo-annotation, which the reader must step over
    if end:
        word(0, 0)
    return bytes(out)


def write_beat_record(folder, name, rr, symbols, fs=360, descriptions=None, seed=0):
    """An annotated two-lead record of beats ``symbols`` at intervals ``rr`` (samples; the first beat one
    interval in): a narrow upright spike per N or A beat, a wide inverted one otherwise, in lead 0, inverted
    and twice as tall in lead 1 (so tests can tell the leads apart), over a little noise."""
    peaks = np.cumsum(rr)
    n = int(peaks[-1] + rr[-1])
    t = np.arange(n)
    signal = np.random.default_rng(seed).normal(0, 3, n)
    for p, s in zip(peaks, symbols):
        width, height = (6, 300) if s in ("N", "A") else (18, -400)
        signal += height * np.exp(-0.5 * ((t - p) / width) ** 2)
    samples = np.round(np.stack([signal, -2 * signal], axis=1)).astype(int).clip(-2047, 2047)
    write_record(folder, name, samples, fs=fs, descriptions=descriptions)
    (folder / f"{name}.atr").write_bytes(encode_annotations(list(zip(peaks.tolist(), symbols))))
    return folder / name


def write_beat_folder(folder, n_records=5, beats=40):
    """``n_records`` records r0, r1, ... at different heart rates (a record's mean RR names it), each with a
    ventricular beat in five and a premature atrial beat (A) after its fifth beat, record r1 with MLII as its
    second lead; and a paced record p0, which readers must leave out."""
    for i in range(n_records):
        rr = np.full(beats, 250 + 20 * i)
        rr[5], rr[6] = rr[5] * 0.6, rr[5] * 1.4  # beat 5 comes early, then a compensatory pause
        symbols = ["V" if k % 5 == 2 else "A" if k == 5 else "N" for k in range(beats)]
        write_beat_record(folder, f"r{i}", rr, symbols, descriptions=("V5", "MLII") if i == 1 else None, seed=i)
    write_beat_record(folder, "p0", np.full(beats, 300), ["/"] * beats)
    return folder
