"""Recurrent benchmark cases: the issue's targets (medical sequence shapes: a few hundred steps, small
hidden sizes, batch 1 in a service). medkern's drop-in module against torch's with the same weights."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import nn as mnn


@dataclass(frozen=True)
class RnnCase:
    """``kind``: "lstm" or "gru" over a sequence, or "lstm_cell" (one step). ``backward``: forward and
    backward of a random weighting of the outputs, else inference under no_grad."""
    name: str
    kind: str
    B: int
    T: int
    I: int
    H: int
    layers: int = 1
    backward: bool = False

    @property
    def op(self) -> str:
        return self.kind + ("_fwd_bwd" if self.backward else "")

    @property
    def shape(self) -> str:
        steps = "" if self.kind == "lstm_cell" else f"T{self.T} "
        return f"B{self.B} {steps}I{self.I} H{self.H}" + (f" L{self.layers}" if self.layers > 1 else "")

    def flops(self) -> float:
        """The gate products (2 flops per multiply-add); the pointwise work is left out. The backward
        pass is two more products of the same size (input/state gradients and weight gradients)."""
        gates = 3 if self.kind == "gru" else 4
        f = 0.0
        for layer in range(self.layers):
            f += 2.0 * self.B * self.T * ((self.I if layer == 0 else self.H) + self.H) * gates * self.H
        return 3 * f if self.backward else f

    def bytes(self, itemsize: int) -> float:
        return 0.0

    def build(self, device: str, dtype: torch.dtype):
        torch.manual_seed(0)
        if self.kind == "lstm_cell":
            ref = torch.nn.LSTMCell(self.I, self.H).to(device, dtype)
            ours = mnn.LSTMCell(self.I, self.H).to(device, dtype)
        else:
            cls = torch.nn.LSTM if self.kind == "lstm" else torch.nn.GRU
            ref = cls(self.I, self.H, self.layers).to(device, dtype)
            ours = (mnn.LSTM if self.kind == "lstm" else mnn.GRU)(self.I, self.H, self.layers).to(device, dtype)
        ours.load_state_dict(ref.state_dict())
        if self.kind == "lstm_cell":
            x = torch.randn(self.B, self.I, device=device, dtype=dtype)
            hx = (torch.randn(self.B, self.H, device=device, dtype=dtype),
                  torch.randn(self.B, self.H, device=device, dtype=dtype))

            def step(m):
                def call():
                    with torch.no_grad():
                        return m(x, hx)
                return call
            return step(ours), step(ref)
        x = torch.randn(self.T, self.B, self.I, device=device, dtype=dtype, requires_grad=self.backward)
        gy = torch.randn(self.T, self.B, self.H, device=device, dtype=dtype)

        def run(m):
            params = list(m.parameters())
            if self.backward:
                return lambda: torch.autograd.grad((m(x)[0] * gy).sum(), [x, *params])

            def call():
                with torch.no_grad():
                    return m(x)
            return call
        return run(ours), run(ref)


CASES = [
    RnnCase("lstm_b64_h64_fwd_bwd", "lstm", B=64, T=187, I=1, H=64, backward=True),
    RnnCase("gru_b64_h64_fwd_bwd", "gru", B=64, T=187, I=1, H=64, backward=True),
    RnnCase("lstm2_b128_h128_fwd_bwd", "lstm", B=128, T=48, I=32, H=128, layers=2, backward=True),
    RnnCase("lstm_b1_h64_infer", "lstm", B=1, T=187, I=1, H=64),
    RnnCase("gru_b1_h64_infer", "gru", B=1, T=187, I=1, H=64),
    RnnCase("lstm_cell_b1_step", "lstm_cell", B=1, T=1, I=32, H=128),
]
