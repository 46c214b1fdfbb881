"""Hugging Face folders audited with no code: tiny Mamba and RWKV built from configs, saved with save_pretrained,
audited through the CLI and the API, against a plain autograd reference through ``inputs_embeds``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.cli.conftest import run  # noqa: F401 - the CLI fixture
from tests.probes.conftest import probe_context
from torch import nn
from typer.testing import Result

import gradhealth
from gradhealth.errors import CheckpointError
from gradhealth.loaders import huggingface
from gradhealth.loaders.huggingface import build_hf_model
from gradhealth.report import Report

transformers = pytest.importorskip("transformers")

Run = Callable[..., Result]
SEQ_LEN, BATCH = 6, 3
FAST = ["--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH), "--probes", "quick", "--dtype", "float64"]


def tiny_mamba() -> nn.Module:
    config = transformers.MambaConfig(
        vocab_size=24, hidden_size=8, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=3, time_step_rank=2
    )
    torch.manual_seed(0)
    return transformers.MambaForCausalLM(config)


def tiny_rwkv() -> nn.Module:
    config = transformers.RwkvConfig(
        vocab_size=24, hidden_size=8, num_hidden_layers=2, attention_hidden_size=8, intermediate_size=16
    )
    torch.manual_seed(0)
    model = transformers.RwkvForCausalLM(config)
    with torch.no_grad():  # RWKV initialises its time parameters to constants: make the recurrence non-trivial
        for name, p in model.named_parameters():
            if "time_" in name:
                p.copy_(torch.rand_like(p) * 0.5 + (0.5 if "time_decay" not in name else -1.0))
    return model


MODELS = {"mamba": tiny_mamba, "rwkv": tiny_rwkv}


def saved(model: nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def reference_profile(model: nn.Module) -> list[float]:
    """G(k) by plain autograd: ids from the probe's seeded stream, the gradient at ``inputs_embeds``, the loss
    <v, logits[:, T-1]> with the probe's seeded v (float64)."""
    twin = copy.deepcopy(model).to(torch.float64).eval()
    ctx = probe_context(twin, seq_len=SEQ_LEN, batch_size=BATCH)
    ids = ctx.make_batch("lag_profile").inputs
    leaf = twin.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = twin(inputs_embeds=leaf, use_cache=False).logits
    total = logits.shape[1]
    y_t = logits[:, total - 1]
    v = ctx.randn("lag_profile/forward", tuple(y_t.shape), like=y_t)
    (grad,) = torch.autograd.grad((y_t * v).sum(), leaf)
    norms = torch.stack([grad[:, total - 1 - k].norm(dim=-1) for k in range(SEQ_LEN + 1)], dim=1)
    return norms.pow(2).mean(0).sqrt().tolist()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_folder_audited_with_no_code_matches_autograd(run: Run, tmp_path: Path, kind: str) -> None:  # noqa: F811
    model = MODELS[kind]()
    folder = saved(model, tmp_path / kind)
    expected = reference_profile(model)
    result = run("audit", folder, *FAST, "--format", "json")
    assert result.exit_code == 0, result.stderr
    from_cli = Report.from_json(result.stdout)
    live = gradhealth.audit(model, seq_len=SEQ_LEN, batch_size=BATCH, probes="quick", dtype="float64")
    for report in (from_cli, live):
        assert report.model["probe_dtype"] == "float64"
        assert report.model["adapter"] == "token-ids"
        assert report.profile.grad_norm == pytest.approx(expected, rel=1e-10, abs=0)
    assert from_cli.model["layer"] == type(model).__name__
    assert min(expected[1:]) > 0  # the reference sees the past: the comparison is not between zeros


def test_tied_lm_head_loads_as_the_library_ties_it(tmp_path: Path) -> None:
    model = tiny_mamba()
    folder = saved(model, tmp_path / "mamba")
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    assert "lm_head.weight" not in state  # saved once, under the embedding
    config = json.loads((folder / "config.json").read_text())
    name, built = build_hf_model(config, state, where=str(folder))
    assert name == "MambaForCausalLM"
    assert built.lm_head.weight.data_ptr() == built.backbone.embeddings.weight.data_ptr()
    torch.testing.assert_close(built.lm_head.weight, model.backbone.embeddings.weight, rtol=0, atol=0)
    assert built.config.use_cache is False
    assert not built.training


def test_a_missing_weight_that_is_not_tied_is_refused(tmp_path: Path) -> None:
    folder = saved(tiny_rwkv(), tmp_path / "rwkv")
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    del state["head.weight"]  # RWKV's head is not tied in this config
    config = json.loads((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"missing 1: head\.weight"):
        build_hf_model(config, state, where=str(folder))


def test_remote_code_is_never_used(run: Run, tmp_path: Path) -> None:  # noqa: F811
    folder = saved(tiny_mamba(), tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="my_custom_rnn", auto_map={"AutoModel": "modeling_evil.Model"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    result = run("audit", folder, *FAST)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "model_type 'my_custom_rnn' is not a model type of the installed transformers" in line
    assert "remote code is never run" in line


def test_without_transformers_one_line_says_so(
    run: Run,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = saved(tiny_mamba(), tmp_path / "mamba")
    monkeypatch.setattr(huggingface, "has_transformers", lambda: False)
    result = run("audit", folder, *FAST)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "is a Hugging Face folder (model_type 'mamba'): install transformers" in line
