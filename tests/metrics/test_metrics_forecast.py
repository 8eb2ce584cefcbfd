"""Forecast errors against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from medkern.metrics import forecast_metrics


def test_hand_computed():
    t = np.array([[1.0, 2.0], [4.0, 5.0]])
    p = np.array([[2.0, 2.0], [1.0, 5.0]])  # errors 1, 0, -3, 0
    m = forecast_metrics(t, p)
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(10 / 4))
    assert m["mape"] == pytest.approx((1 / 1 + 0 + 3 / 4 + 0) / 4)
    assert m["mae_per_step"] == pytest.approx([2.0, 0.0])
    assert forecast_metrics(torch.tensor(t), torch.tensor(t)) == {"mae": 0.0, "rmse": 0.0, "mape": 0.0,
                                                                   "mae_per_step": [0.0, 0.0]}


def test_zero_target_mape_nan_and_1d():
    m = forecast_metrics([0.0, 2.0], [1.0, 2.0])
    assert math.isnan(m["mape"]) and m["mae"] == 0.5 and "mae_per_step" not in m


@pytest.mark.parametrize("t, p", [([1.0, 2.0], [1.0]), ([], []), ([1.0, np.inf], [1.0, 2.0])])
def test_bad_input(t, p):
    with pytest.raises(ValueError):
        forecast_metrics(t, p)
