"""The explicit cell math re-runs every standard module exactly as PyTorch does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradhealth.probes._recurrent import find_recurrent_layers, flatten_state, run_layer, unflatten_state

MODULES = {
    "rnn_stacked_bi": lambda: nn.RNN(3, 5, num_layers=2, bidirectional=True, batch_first=True),
    "rnn_relu": lambda: nn.RNN(3, 5, nonlinearity="relu", batch_first=True),
    "lstm_stacked_bi_proj": lambda: nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, batch_first=True),
    "gru_3_layers_bi": lambda: nn.GRU(3, 5, num_layers=3, bidirectional=True, batch_first=True),
    "lstm_no_bias": lambda: nn.LSTM(3, 5, bias=False, batch_first=True),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_rerun_matches_pytorch(name: str) -> None:
    torch.manual_seed(0)
    module = MODULES[name]().double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    expected = module(x)[0]
    (layer,) = find_recurrent_layers(module)
    runs = run_layer(layer, x)
    top = runs[-2:] if module.bidirectional else runs[-1:]
    assert len(runs) == module.num_layers * (2 if module.bidirectional else 1)
    torch.testing.assert_close(torch.cat([r.outputs() for r in top], dim=-1), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell_type", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_cell_rerun_matches_pytorch(cell_type: type[nn.RNNCellBase]) -> None:
    torch.manual_seed(0)
    cell = cell_type(3, 5).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    state, outputs = None, []
    for t in range(6):
        state = cell(x[:, t], state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    (layer,) = find_recurrent_layers(cell)
    torch.testing.assert_close(run_layer(layer, x)[0].outputs(), torch.stack(outputs, 1), rtol=0, atol=1e-13)


def test_nested_layers_are_found_once_with_their_paths() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.LSTM(3, 4), nn.GRUCell(4, 4))
    assert [(layer.path, layer.kind) for layer in find_recurrent_layers(model)] == [("1", "LSTM"), ("2", "GRU")]


def test_flatten_state_round_trips_a_tuple() -> None:
    state = (torch.randn(2, 3), torch.randn(2, 5))
    flat, shapes = flatten_state(state)
    assert flat.shape == (2, 8)
    back = unflatten_state(flat, shapes, state)
    assert isinstance(back, tuple)
    assert all(torch.equal(a, b) for a, b in zip(back, state, strict=True))


def test_time_major_module_is_rerun_on_its_own_layout() -> None:
    from gradhealth.probes.lyapunov import Lyapunov

    from .conftest import probe_context

    torch.manual_seed(0)
    batch_first = nn.GRU(3, 4, batch_first=True)
    time_major = nn.GRU(3, 4)
    time_major.load_state_dict(batch_first.state_dict())
    a = Lyapunov().run(probe_context(batch_first, seq_len=10)).layers[0].exponents
    b = Lyapunov().run(probe_context(time_major, seq_len=10)).layers[0].exponents
    assert a == pytest.approx(b, rel=1e-12)
