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


_CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _cell_weights(cell) -> list:
    """The cell's weights and biases. A step at batch 1 costs a few microseconds, so the parameters are
    read from ``_parameters`` directly rather than through ``Module.__getattr__``; a parametrised cell
    (``torch.nn.utils.parametrize``), whose weights are computed, takes the attribute route."""
    p = cell._parameters
    try:
        return [p[name] for name in _CELL_WEIGHTS]
    except KeyError:
        return [getattr(cell, name) for name in _CELL_WEIGHTS]


class LSTMCell(torch.nn.LSTMCell):
    def forward(self, input, hx=None):
        return ops.lstm_cell(input, hx, *_cell_weights(self))


class GRUCell(torch.nn.GRUCell):
    def forward(self, input, hx=None):
        return ops.gru_cell(input, hx, *_cell_weights(self))


SWAPS = {torch.nn.LSTM: LSTM, torch.nn.GRU: GRU, torch.nn.LSTMCell: LSTMCell, torch.nn.GRUCell: GRUCell}
