"""Drop-in recurrent modules: torch's classes (constructors, parameter names, initialisation, state_dict,
return values) with the forward routed to medkern's ops. PackedSequence input gives PackedSequence output
with the input's batch_sizes and orderings, as torch's does."""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .. import ops


def _pack_like(out: torch.Tensor, like: PackedSequence) -> torch.Tensor:
    """The packed data of a padded time-major ``out`` (batch in the caller's order) with ``like``'s
    layout: step by step, the sequences still running, longest first."""
    if like.sorted_indices is not None:
        out = out.index_select(1, like.sorted_indices)
    T, B = out.shape[:2]
    running = torch.arange(B).unsqueeze(0) < like.batch_sizes[:T].unsqueeze(1)
    return out[running.to(out.device)]


class _Recurrent:
    _op = None

    def forward(self, input, hx=None):
        common = (self._flat_weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if isinstance(input, PackedSequence):
            padded, lengths = pad_packed_sequence(input)  # the caller's batch order
            out, state = type(self)._op(padded, hx, *common, False, lengths=lengths, enforce_sorted=False)
            data = _pack_like(out, input)
            return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), state
        return type(self)._op(input, hx, *common, self.batch_first)


class LSTM(_Recurrent, torch.nn.LSTM):
    _op = staticmethod(ops.lstm)


class GRU(_Recurrent, torch.nn.GRU):
    _op = staticmethod(ops.gru)


class LSTMCell(torch.nn.LSTMCell):
    def forward(self, input, hx=None):
        return ops.lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(torch.nn.GRUCell):
    def forward(self, input, hx=None):
        return ops.gru_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


SWAPS = {torch.nn.LSTM: LSTM, torch.nn.GRU: GRU, torch.nn.LSTMCell: LSTMCell, torch.nn.GRUCell: GRUCell}
