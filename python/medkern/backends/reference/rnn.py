"""Recurrent family in plain torch (see backends/CONTRACT.md): the recurrence step by step, with the same
equations, masking and state layout the compiled kernels use."""
from __future__ import annotations

import torch


def _slots(T, reverse):
    """(t, slot read, slot written) in processing order."""
    for step in range(T):
        t = T - 1 - step if reverse else step
        yield t, (t + 1 if reverse else t), (t if reverse else t + 1)


def _valid(lengths, t, B, like):
    if lengths is None:
        return torch.ones(B, 1, dtype=torch.bool, device=like.device)
    return (lengths > t).view(B, 1)


def rnn_forward(lstm, gx, gx_offset, w_hh, b_hh, w_hr, lengths, out, out_offset, hs, cs, gates, hraw, reverse):
    T, B, _ = gx.shape
    H = w_hh.shape[0] // (4 if lstm else 3)
    P = w_hh.shape[1]
    gxd = gx[..., gx_offset:gx_offset + (4 if lstm else 3) * H]
    for t, prev, nxt in _slots(T, reverse):
        valid = _valid(lengths, t, B, gx)
        h_prev = hs[prev]
        if lstm:
            i, f, g, o = (gxd[t] + h_prev @ w_hh.t()).chunk(4, 1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * cs[prev] + i * g
            h = o * c.tanh()
            if gates is not None:
                gates[t] = torch.where(valid, torch.cat([i, f, g, o], 1), 0)
            if w_hr is not None:
                if hraw is not None:
                    hraw[t] = torch.where(valid, h, 0)
                h = h @ w_hr.t()
            cs[nxt] = torch.where(valid, c, cs[prev])
        else:
            gh = h_prev @ w_hh.t() + (b_hh if b_hh is not None else 0)
            xr, xz, xn = gxd[t].chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (xn + r * hn).tanh()
            h = (1 - z) * n + z * h_prev
            if gates is not None:
                gates[t] = torch.where(valid, torch.cat([r, z, n, hn], 1), 0)
        hs[nxt] = torch.where(valid, h, h_prev)
        out[t, :, out_offset:out_offset + P] = torch.where(valid, h, 0)


def rnn_backward(lstm, grad_out, out_offset, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw, grad_gx,
                 gx_offset, grad_gh, grad_hp, grad_h0, grad_c0, reverse):
    T, B = grad_out.shape[:2]
    H = w_hh.shape[0] // (4 if lstm else 3)
    P = w_hh.shape[1]
    dgx = grad_gx[..., gx_offset:gx_offset + (4 if lstm else 3) * H]
    dh = grad_hn.clone()
    dc = grad_cn.clone() if lstm else None
    for t, prev, nxt in reversed(list(_slots(T, reverse))):
        valid = _valid(lengths, t, B, grad_out)
        dh = dh + torch.where(valid, grad_out[t, :, out_offset:out_offset + P], 0)
        if lstm:
            dh_raw = dh
            if w_hr is not None:
                grad_hp[t] = torch.where(valid, dh, 0)
                dh_raw = dh @ w_hr
            i, f, g, o = gates[t].chunk(4, 1)
            tc = cs[nxt].tanh()
            dct = dc + dh_raw * o * (1 - tc * tc)
            dg = torch.cat([dct * g * i * (1 - i), dct * cs[prev] * f * (1 - f), dct * i * (1 - g * g),
                            dh_raw * tc * o * (1 - o)], 1)
            dg = torch.where(valid, dg, 0)
            dgx[t] = dg
            dc = torch.where(valid, dct * f, dc)
            dh = torch.where(valid, dg @ w_hh, dh)
        else:
            r, z, n, hn = gates[t].chunk(4, 1)
            dn = dh * (1 - z) * (1 - n * n)
            dz = dh * (hs[prev] - n) * z * (1 - z)
            dr = dn * hn * r * (1 - r)
            dgx[t] = torch.where(valid, torch.cat([dr, dz, dn], 1), 0)
            grad_gh[t] = torch.where(valid, torch.cat([dr, dz, dn * r], 1), 0)
            dh = torch.where(valid, dh * z + grad_gh[t] @ w_hh, dh)
    grad_h0.copy_(dh)
    if lstm:
        grad_c0.copy_(dc)
