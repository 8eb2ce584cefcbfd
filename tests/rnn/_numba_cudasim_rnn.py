"""Child process of test_numba_cudasim_rnn.py: the numba.cuda recurrent kernels on the CPU simulator
(NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported), at tiny sizes, against the reference
backend in float64, with poisoned (NaN) outputs and variable lengths. Raises on the first mismatch."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from medkern.backends.numba_cuda import rnn as k  # noqa: E402
from medkern.backends.reference import rnn as ref  # noqa: E402

torch.manual_seed(0)
T, B, H = 3, 2, 3


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        sys.exit(1)


nan = lambda *s: torch.full(s, float("nan"), dtype=torch.float64)  # noqa: E731
lengths = torch.tensor([3, 2])
for lstm, P, reverse in [(True, H, False), (True, 2, True), (False, H, True), (False, H, False)]:
    G = 4 if lstm else 3
    gx = torch.randn(T, B, G * H, dtype=torch.float64)
    w_hh = torch.randn(G * H, P, dtype=torch.float64)
    b_hh = None if lstm else torch.randn(G * H, dtype=torch.float64)
    w_hr = torch.randn(P, H, dtype=torch.float64) if P != H else None
    first = T if reverse else 0
    res = {}
    for name in ("ref", "sim"):
        out, hs, cs, gates = nan(T, B, P), nan(T + 1, B, P), nan(T + 1, B, H), nan(T, B, 4 * H)
        hraw = nan(T, B, H) if w_hr is not None else None
        torch.manual_seed(1)
        hs[first] = torch.randn(B, P, dtype=torch.float64)
        cs[first] = torch.randn(B, H, dtype=torch.float64)
        if name == "ref":
            ref.rnn_forward(lstm, gx, 0, w_hh, b_hh, w_hr, lengths, out, 0, hs, cs if lstm else None, gates, hraw,
                            reverse)
        else:
            one = np.zeros((1, 1, 1))
            k.launch_forward(lstm, gx.numpy(), 0, w_hh.numpy(), (b_hh if b_hh is not None else torch.zeros(1)).numpy(),
                             b_hh is not None, (w_hr if w_hr is not None else torch.zeros(1, 1)).numpy(),
                             w_hr is not None, lengths.numpy(), out.numpy(), 0, hs.numpy(), cs.numpy(), gates.numpy(),
                             True, hraw.numpy() if hraw is not None else one, reverse)
        dout = torch.randn(T, B, P, dtype=torch.float64)
        dhn, dcn = torch.randn(B, P, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
        dgx, dgh, dhp = nan(T, B, G * H), nan(T, B, G * H), nan(T, B, P)
        dh0, dc0 = nan(B, P), nan(B, H)
        if name == "ref":
            ref.rnn_backward(lstm, dout, 0, dhn, dcn, w_hh, w_hr, lengths, hs, cs, gates, hraw, dgx, 0, dgh, dhp, dh0,
                             dc0, reverse)
        else:
            dh0.copy_(dhn)
            dc0.copy_(dcn)
            k.launch_backward(lstm, dout.numpy(), 0, w_hh.numpy(),
                              (w_hr if w_hr is not None else torch.zeros(1, 1)).numpy(), w_hr is not None,
                              lengths.numpy(), hs.numpy(), cs.numpy(), gates.numpy(), dgx.numpy(), 0, dgh.numpy(),
                              dhp.numpy(), dh0.numpy(), dc0.numpy(), reverse)
        res[name] = dict(out=out, hs=hs, dgx=dgx, dh0=dh0, **({"cs": cs, "dc0": dc0} if lstm else {"dgh": dgh}),
                         **({"dhp": dhp, "hraw": hraw} if w_hr is not None else {}))
    for key, want in res["ref"].items():
        got = res["sim"][key]
        check(torch.allclose(got, want, rtol=1e-10, atol=1e-12), f"lstm={lstm} P={P} reverse={reverse} {key}")
print("all simulated recurrent kernels match the reference")
