"""``edit.memory: auto``: the plan per card for every paper generator, the estimate's monotonicity, and the
out-of-memory fallback on a fake family (recorded per item, the bytes of a run that started where it fits)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ROOT
from test_stages import project  # noqa: F401 - the small project (source, twins) of the stage tests
from diffseg import params as params_mod
from diffseg.edit import fitting, memory, param_counts
from diffseg.edit import stage as edit_stage
from diffseg.edit.base import Family
from diffseg.edit.jobs import Inputs
from diffseg.edit.memory import GiB, Setting
from diffseg.params import Generator

PAPER = params_mod.load(ROOT / "configs" / "paper.yaml")
CARDS = (24, 40, 80, 141)  # GiB free
FITS_EVERYWHERE = {card: (4, "none", False) for card in CARDS}
# The plans at the paper settings (bf16, edit.batch_size 4, margin 0.1), as docs/scale.md tabulates them.
EXPECTED = {
    "sd2": FITS_EVERYWHERE, "sdxl": FITS_EVERYWHERE, "sdxl_lora": FITS_EVERYWHERE, "hunyuan": FITS_EVERYWHERE,
    "kandinsky": FITS_EVERYWHERE, "glide": FITS_EVERYWHERE,
    "flux": {24: (4, "sequential", False), 40: (4, "none", True), 80: (4, "none", False), 141: (4, "none", False)},
    "sd3": {24: (4, "none", True), 40: (4, "none", False), 80: (4, "none", False), 141: (4, "none", False)},
    "kolors": {24: (4, "none", True), 40: (4, "none", False), 80: (4, "none", False), 141: (4, "none", False)},
}
# Estimated peaks of the plans above, GiB, one decimal.
ESTIMATES = {"sd2": 4.4, "sdxl": 14.5, "flux": {24: 8.2, 40: 33.4, 80: 39.4}, "sd3": {24: 17.2, 40: 23.2},
             "kolors": {24: 18.6, 40: 24.6}, "hunyuan": 14.7, "kandinsky": 10.0, "glide": 1.8}


def _plan(gen: Generator, card: int) -> memory.MemoryPlan:
    spec = param_counts.spec(gen)
    offloads = ("none",) if gen.family == "glide" else memory.OFFLOADS
    return memory.plan(spec.counts, 2, gen.resolution, PAPER.edit.batch_size, gen.guidance > 1, card * GiB,
                       spec.shape, PAPER.edit.memory_margin, offloads)


@pytest.mark.parametrize("card", CARDS)
@pytest.mark.parametrize("gen", PAPER.edit.generators, ids=[g.name for g in PAPER.edit.generators])
def test_paper_plan_per_card(gen, card):
    chosen = _plan(gen, card)
    setting = chosen.setting
    assert (setting.batch_size, setting.offload, setting.vae_tiling) == EXPECTED[gen.name][card]
    assert chosen.fits and chosen.estimate <= chosen.budget == int(card * GiB * 0.9)
    expected = ESTIMATES.get(gen.name.replace("_lora", ""))
    expected = expected.get(card, expected[max(expected)]) if isinstance(expected, dict) else expected
    assert round(chosen.estimate / GiB, 1) == expected


def test_paper_profile_asks_for_auto():
    assert (PAPER.edit.memory, PAPER.edit.memory_margin, PAPER.edit.batch_size) == ("auto", 0.1, 4)


def test_flux_weights_in_bf16():
    # 11.9B + 4.762B + 0.123B + 0.084B parameters at two bytes: what must be resident without offload.
    counts = param_counts.SPECS["black-forest-labs/FLUX.1-Fill-dev"].counts
    assert sum(counts.values()) * 2 == 33_738_000_000


@pytest.mark.parametrize("name", sorted(param_counts.SPECS))
def test_estimate_is_monotone(name):
    spec = param_counts.SPECS[name]

    def est(batch=2, resolution=1024, offload="none", tiling=False, guidance=True):
        return memory.estimate(spec.counts, 2, resolution, Setting(batch, offload, tiling), guidance, spec.shape)

    for offload in memory.OFFLOADS:
        sizes = [est(b, offload=offload) for b in (1, 2, 4, 8)]
        assert sizes == sorted(sizes)  # never less memory for a larger batch (equal where items run one by one)
        # (with model offload the largest component may dominate: ChatGLM3 for Kolors, whatever the size)
        assert est(resolution=512, offload=offload) <= est(resolution=1024, offload=offload)
        assert est(offload=offload, tiling=True) <= est(offload=offload)
        assert est(offload=offload, guidance=False) <= est(offload=offload)
    # (sequential offload saves nothing where the VAE decode, not the weights, makes the peak)
    assert est(offload="none") > est(offload="model") >= est(offload="sequential")
    assert est(resolution=512) < est(resolution=1024)
    if not spec.shape.per_item:
        assert est(4) > est(1)


def test_the_fastest_setting_that_fits_is_chosen():
    spec = param_counts.SPECS["black-forest-labs/FLUX.1-Fill-dev"]
    # Weights need 31.4 GiB; at 36 GiB less 10% (32.4 GiB) no batch fits without offload, model offload fits 4.
    chosen = memory.plan(spec.counts, 2, 1024, 4, False, 36 * GiB, spec.shape, 0.1)
    assert chosen.setting == Setting(4, "model", False)
    nothing = memory.plan(spec.counts, 2, 1024, 4, False, 1 * GiB, spec.shape, 0.1)
    assert not nothing.fits and nothing.setting == Setting(1, "sequential", True)


def test_ladder():
    assert memory.cheaper(Setting(4)) == Setting(2)
    assert memory.cheaper(Setting(1)) == Setting(1, "model", False)
    assert memory.cheaper(Setting(1, "model")) == Setting(1, "sequential", True)
    assert memory.cheaper(Setting(1, "sequential", True)) is None
    assert memory.cheaper(Setting(1), ("none",)) is None
    assert memory.lighter(Setting(4)) == Setting(4, "model", False)


def test_out_of_memory_is_recognised():
    assert memory.is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert memory.is_oom(RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"))
    assert not memory.is_oom(RuntimeError("size mismatch"))
    assert not memory.is_oom(ValueError("out of memory"))


LEVELS = (*memory.OFFLOADS, "never")  # "never": out of memory whatever the offload


class Fake(Family):
    """Per-item images from each item's seed; out of memory above ``max_batch`` items or without ``needs``
    offload, or at load without ``load_needs`` offload."""

    name = "fake"

    def __init__(self, gen, max_batch=99, needs="none", load_needs="none"):
        self.max_batch, self.needs, self.load_needs, self.loads, self.calls = max_batch, needs, load_needs, 0, []
        super().__init__(gen)

    @property
    def offloads(self):
        return memory.OFFLOADS

    def load(self):
        self.loads += 1
        if LEVELS.index(self.offload) < LEVELS.index(self.load_needs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory at load")
        self.pipe = object()

    def _generate(self, batch):
        self.calls.append(len(batch.seeds))
        if len(batch.seeds) > self.max_batch or LEVELS.index(self.offload) < LEVELS.index(self.needs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        width, height = batch.size
        return np.stack([np.random.default_rng(s).random((height, width, 3)) for s in batch.seeds])


GEN = Generator(name="fake", family="sd2", model="fake", resolution=64, steps=1)


def _inputs(n=4):
    rng = np.random.default_rng(0)
    return Inputs([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)],
                  [np.ones((48, 64), bool) for _ in range(n)], ["p"] * n, [""] * n, list(range(100, 100 + n)),
                  fitted=True)


def _auto(monkeypatch, adapter, free_gib=24):
    monkeypatch.setattr(fitting, "free_bytes", lambda device: free_gib * GiB)
    edit = params_mod.Edit(memory="auto", batch_size=4)
    fitting.load(adapter, edit)
    return adapter


def _started_at(setting):
    adapter = Fake(GEN)
    adapter.configure(setting)
    adapter.load()
    return edit_stage.attempt(adapter, _inputs())


def test_out_of_memory_halves_the_batch_and_keeps_the_bytes(monkeypatch):
    adapter = _auto(monkeypatch, Fake(GEN, max_batch=2))
    assert adapter.memory == Setting(4)  # sd2 at 64 px fits 24 GiB at the full batch
    outcome = edit_stage.attempt(adapter, _inputs())
    assert adapter.calls == [4, 2, 2]
    assert [r["batch_size"] for r in outcome.memory] == [2, 2, 2, 2]
    assert {r["memory_fallbacks"] for r in outcome.memory} == {"batch 4, offload none, tiling off: out of memory"}
    fitting_run = _started_at(Setting(2))
    assert [a.tobytes() for a in outcome.images] == [a.tobytes() for a in fitting_run.images]
    assert not outcome.retry
    assert edit_stage.attempt(adapter, _inputs()).memory[0]["batch_size"] == 2  # later batches keep the setting
    assert adapter.calls[-2:] == [2, 2]


def test_out_of_memory_until_offloaded_reloads_with_model_offload(monkeypatch):
    adapter = _auto(monkeypatch, Fake(GEN, needs="model"))
    outcome = edit_stage.attempt(adapter, _inputs())
    assert adapter.loads == 2 and adapter.calls == [4, 2, 1, 1, 1, 1, 1]
    assert {(r["batch_size"], r["offload"], r["vae_tiling"]) for r in outcome.memory} == {(1, "model", False)}
    assert outcome.memory[0]["memory_fallbacks"] == (
        "batch 4, offload none, tiling off: out of memory; batch 2, offload none, tiling off: out of memory; "
        "batch 1, offload none, tiling off: out of memory")
    assert [a.tobytes() for a in outcome.images] == [a.tobytes() for a in _started_at(Setting(1, "model")).images]


def test_out_of_memory_at_load_moves_to_the_next_offload(monkeypatch):
    adapter = _auto(monkeypatch, Fake(GEN, load_needs="sequential"))
    assert adapter.memory == Setting(4, "sequential", True) and adapter.loads == 3
    outcome = edit_stage.attempt(adapter, _inputs())
    assert outcome.memory[0]["memory_fallbacks"] == ("batch 4, offload none, tiling off: out of memory at load; "
                                                     "batch 4, offload model, tiling off: out of memory at load")


def test_out_of_memory_everywhere_fails_the_items_not_the_stage(monkeypatch):
    adapter = _auto(monkeypatch, Fake(GEN, max_batch=0))
    outcome = edit_stage.attempt(adapter, _inputs())
    assert outcome.images == [None] * 4 and outcome.retry
    assert set(outcome.reasons) == {"out of memory even at the cheapest setting (batch 1, offload sequential, "
                                    "tiling on)"}
    load_fails = _auto(monkeypatch, Fake(GEN, load_needs="never"))
    assert load_fails.load_error == "out of memory at load even with sequential offload"
    assert edit_stage.attempt(load_fails, _inputs(2)).reasons == [load_fails.load_error] * 2


def test_other_errors_fail_the_batch_without_stepping_down(monkeypatch):
    adapter = _auto(monkeypatch, Fake(GEN))
    adapter._generate = lambda batch: (_ for _ in ()).throw(ValueError("bad prompt"))
    outcome = edit_stage.attempt(adapter, _inputs(2))
    assert outcome.reasons == ["generator error: ValueError: bad prompt"] * 2 and adapter.memory == Setting(4)


def test_manual_runs_as_configured_without_a_record():
    adapter = Fake(GEN, max_batch=2)
    fitting.load(adapter, params_mod.Edit(batch_size=4))
    inputs = _inputs()
    inputs.fitted = False
    outcome = edit_stage.attempt(adapter, inputs)
    assert outcome.failed and outcome.memory is None and "OutOfMemoryError" in outcome.error


@pytest.mark.slow
def test_auto_edit_stage_records_the_setting_and_keeps_the_manual_bytes(project, capsys):
    from diffseg import records
    from diffseg.propose import stage as propose_stage
    from test_executors import GENERATORS, _tree
    from test_stages import _params

    p = _params(project, {"edit": {"batch_size": 2, "generators": GENERATORS}})
    propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    manual = edit_stage.run(p, "t1", project / "manual")
    p.edit.memory = "auto"
    auto = edit_stage.run(p, "t1", project / "auto")
    assert list(manual.columns) == edit_stage.MANIFEST_COLUMNS
    assert list(auto.columns) == edit_stage.MANIFEST_COLUMNS + fitting.MEMORY_COLUMNS
    ok = auto[auto["status"] == "ok"]
    # On the CPU nothing is planned: the configured batch, no offload, no fallback.
    settings = set(zip(ok["batch_size"], ok["offload"], ok["vae_tiling"], ok["memory_fallbacks"]))
    assert settings == {(2, "none", False, "")}
    images = {k: v for k, v in _tree(project / "auto").items() if not k.endswith(".parquet")}
    assert images == {k: v for k, v in _tree(project / "manual").items() if not k.endswith(".parquet")}
    assert auto[edit_stage.MANIFEST_COLUMNS].equals(manual)

    # Does the batch size change an item's bytes? The twin SD2 on two items, in one call and one by one.
    adapter = next(a for a in edit_stage.check_generators(p, {"sd2"}))
    adapter.load()
    rows = propose_stage.records.PlanDir(records.turn_dir("t1", "plan")).manifest()
    rows = rows[(rows["status"] == "ok") & (rows["generator"] == "sd2")].head(2)
    prev = records.StateDir(p.turns["t1"].prev)
    befores = [prev.image(i) for i in rows["image_id"]]
    same = [b.shape == befores[0].shape for b in befores]
    plan_dir = records.PlanDir(records.turn_dir("t1", "plan"))
    args = ([plan_dir.mask(i) for i in rows["image_id"]], list(rows["prompt"]), list(rows["negative_prompt"]),
            [int(s) for s in rows["seed"]])
    together = edit_stage.generate(adapter, befores, *args)[1]
    alone = [edit_stage.generate(adapter, [b], *[[a[k]] for a in args])[1][0] for k, b in enumerate(befores)]
    diff = [int(np.abs(t.astype(int) - a.astype(int)).max()) for t, a in zip(together, alone)]
    print(f"\nsd2 twin, batch 2 vs batch 1 (same native size: {all(same)}): identical bytes "
          f"{[t.tobytes() == a.tobytes() for t, a in zip(together, alone)]}, max level difference {diff}")
    # Not irrelevant: the noise is per item (keyed seeds), but batched float arithmetic moves the last bits.
    assert all(d <= 1 for d in diff) and images  # at most one 8-bit level here; the record names the batch
    print(f"auto manifest: {len(auto)} rows, settings {sorted(set(zip(ok['batch_size'], ok['offload'])))}")
