"""Offload between phases: parameters, gradients and AdamW state leave and come back bit-exact
(every tensor torch.equal, training continues with the very same losses), disk offload frees
the memory while away, and the phases of an Offloader send away exactly what they do not
use."""

from __future__ import annotations

import pytest
import torch

from r1lab.config import flat_keys, load_config
from r1lab.errors import UserError
from r1lab.inference.reference import ReferencePolicy
from r1lab.infra.config import InfraConfig
from r1lab.infra.offload import (
    Offloader,
    module_tensors,
    offload,
    optimizer_tensors,
    restore,
    training_state,
)
from r1lab.training.grpo_config import GRPOStageConfig
from r1lab.training.optim import adamw
from r1lab.world.model import TinyModelConfig, build_model

VOCAB = 64
CUDA = torch.cuda.is_available()
ON_CUDA = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def tiny(seed: int = 0, tie: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=64, tie_word_embeddings=tie)  # fmt: skip
    return build_model(cfg, VOCAB, 0, 1)


def batches(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(2, VOCAB, (3, 10), generator=gen) for _ in range(n)]


def step(model, opt, ids: torch.Tensor) -> float:
    ids = ids.to(next(model.parameters()).device)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()  # the gradients stay: they are offloaded too
    return loss.item()


def trained(steps: int = 3, device: str = "cpu", tie: bool = False):
    model = tiny(tie=tie).to(device)
    opt = adamw(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    for ids in batches(steps):
        opt.zero_grad(set_to_none=True)
        step(model, opt, ids)
    return model, opt


def everything(model, opt) -> dict[str, torch.Tensor]:
    return {**module_tensors(model), **optimizer_tensors(opt)}


def snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in tensors.items()}


def assert_equal(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert tensors.keys() == expected.keys()
    for k, t in tensors.items():
        e = expected[k]
        assert (t.shape, t.dtype, t.device) == (e.shape, e.dtype, e.device), k
        assert torch.equal(t, e), k


# --- what is offloaded --------------------------------------------------------------------


def test_a_trained_model_and_adamw_hold_the_tensors_we_offload():
    model, opt = trained(tie=True)
    tensors = everything(model, opt)
    n = len(list(model.parameters()))  # the tied embedding once
    assert sum(k.startswith("param/") for k in tensors) == n
    assert sum(k.startswith("grad/") for k in tensors) == n
    assert {k.rsplit("/", 1)[1] for k in tensors if k.startswith("state/")} == {
        "step", "exp_avg", "exp_avg_sq",
    }  # fmt: skip
    assert sum(k.startswith("state/") for k in tensors) == 3 * n
    assert "buffer/model.rotary_emb.inv_freq" in tensors
    # the training module's idle part: gradients and optimizer state, not the weights
    idle = training_state(model, opt)
    assert not any(k.startswith("param/") for k in idle) and len(idle) == 4 * n


# --- away and back ------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [False, True])
def test_disk_round_trip_is_bit_exact_and_frees_the_memory(tmp_path, tie):
    model, opt = trained(tie=tie)
    params = list(model.parameters())
    tensors = everything(model, opt)
    before = snapshot(tensors)
    size = sum(t.untyped_storage().nbytes() for t in tensors.values())

    away = offload(tensors, "disk", tmp_path / "trainer.safetensors")
    assert away.nbytes == size > 0
    assert (tmp_path / "trainer.safetensors").is_file()
    assert not list(tmp_path.glob("*.tmp"))  # renamed into place
    # every storage is freed, and a use by mistake fails instead of reading garbage
    assert all(t.untyped_storage().nbytes() == 0 for t in tensors.values())
    with pytest.raises(RuntimeError):
        model(input_ids=batches(1)[0])

    restore(away)
    assert not (tmp_path / "trainer.safetensors").exists()
    assert list(model.parameters()) == params  # the same Parameter objects, in place
    assert_equal(everything(model, opt), before)
    restore(away)  # a second restore changes nothing
    assert_equal(everything(model, opt), before)


@pytest.mark.parametrize(
    ("to", "device"),
    [("disk", "cpu"), pytest.param("cpu", "cuda", marks=ON_CUDA),
     pytest.param("disk", "cuda", marks=ON_CUDA)],
)  # fmt: skip
def test_training_after_a_round_trip_continues_exactly(tmp_path, to, device):
    """Six AdamW steps with everything offloaded and restored around each one give the losses
    and the weights of six steps without offload, to the bit."""
    results = []
    for moved in (False, True):
        model = tiny().to(device)
        opt = adamw(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
        losses = []
        for ids in batches(6):
            if moved and opt.state:
                restore(offload(everything(model, opt), to, tmp_path / "all.safetensors"))
            opt.zero_grad(set_to_none=True)
            losses.append(step(model, opt, ids))
        results.append((losses, snapshot(module_tensors(model))))
    (plain, w_plain), (moved, w_moved) = results
    assert moved == plain  # exactly, not approximately
    assert len(set(plain)) == 6  # the model learns: the losses do move
    assert_equal(w_moved, w_plain)


def test_the_reference_in_bfloat16_comes_back_in_bfloat16(tmp_path):
    model, _ = trained()
    reference = ReferencePolicy(model, torch.bfloat16)
    before = snapshot(module_tensors(reference.model))
    away = offload(module_tensors(reference.model), "disk", tmp_path / "ref.safetensors")
    assert all(p.numel() == 0 for p in reference.model.parameters())
    restore(away)
    after = module_tensors(reference.model)
    assert after["param/lm_head.weight"].dtype == torch.bfloat16
    assert_equal(after, before)


def test_cpu_offload_on_a_cpu_device_moves_nothing():
    model, opt = trained()
    tensors = everything(model, opt)
    where = {k: t.data_ptr() for k, t in tensors.items()}
    away = offload(tensors, "cpu")
    assert away.nbytes == 0 and away.path is None
    assert {k: t.data_ptr() for k, t in tensors.items()} == where
    restore(away)
    assert {k: t.data_ptr() for k, t in tensors.items()} == where


@ON_CUDA
def test_cpu_offload_frees_cuda_memory_and_restores_bit_exact():
    model, opt = trained(device="cuda")
    tensors = everything(model, opt)
    before = snapshot(tensors)
    held = torch.cuda.memory_allocated()
    away = offload(tensors, "cpu")
    gpu = sum(t.untyped_storage().nbytes() for t in before.values() if t.is_cuda)
    assert away.nbytes == gpu > 0
    assert held - torch.cuda.memory_allocated() >= gpu  # freed (block rounding aside)
    assert all(e.copy.is_pinned() for e in away.entries.values())
    restore(away)
    assert_equal(everything(model, opt), before)


def test_config_checks_and_documents_the_report_value():
    with pytest.raises(UserError, match="unknown target 'tape'"):
        offload({}, "tape")
    with pytest.raises(UserError, match="'infra.offload_to' must be one of cpu, disk"):
        load_config(GRPOStageConfig, None, ["infra.offload_to=tape"])
    stage = load_config(GRPOStageConfig, None, ["infra.offload=true", "infra.offload_to=disk"])
    assert stage.infra == InfraConfig(offload=True, offload_to="disk")
    # the report offloads after every phase but the rule rewards'
    assert flat_keys(GRPOStageConfig)["infra.offload"].metadata["report"] is True


# --- the phases of a run ------------------------------------------------------------------


def test_each_phase_sends_away_what_it_does_not_use(tmp_path):
    model, opt = trained()
    reference = ReferencePolicy(model)
    before = snapshot({**everything(model, opt), **module_tensors(reference.model)})
    off = Offloader(InfraConfig(offload=True, offload_to="disk"), tmp_path / "offload")
    off.add("optimizer", lambda: training_state(model, opt))
    off.add("reference", lambda: module_tensors(reference.model))

    def freed(tensors):
        return all(t.numel() == 0 for t in tensors.values())

    off.use("reference")  # generation: the optimizer leaves
    assert set(off.away) == {"optimizer"} and freed(training_state(model, opt))
    assert not freed(module_tensors(reference.model)) and not freed(module_tensors(model))
    files = list((tmp_path / "offload").iterdir())
    assert len(files) == 1 and files[0].name.startswith("optimizer-")
    off.use("optimizer")  # training: the reference leaves, the optimizer comes back first
    assert set(off.away) == {"reference"} and freed(module_tensors(reference.model))
    assert not freed(training_state(model, opt))
    off.use("optimizer", "reference")  # a checkpoint: both
    assert not off.away
    off.use()  # nothing in use: both away
    assert set(off.away) == {"optimizer", "reference"}
    off.restore_all()
    assert not off.away and not (tmp_path / "offload").exists()
    assert_equal({**everything(model, opt), **module_tensors(reference.model)}, before)
    with pytest.raises(ValueError, match="no holder"):
        off.use("refrence")


def test_with_offload_off_nothing_moves(tmp_path):
    model, opt = trained()
    off = Offloader(InfraConfig(offload_to="disk"), tmp_path)
    off.add("optimizer", lambda: training_state(model, opt))
    off.use()
    assert not off.away and all(t.numel() > 0 for t in training_state(model, opt).values())
