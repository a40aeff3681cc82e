"""`diffseg pin` and the refusal to generate from hub checkpoints without a revision.

The hub is unreachable here, so ``HfApi.model_info`` is replaced by a fake hub that answers the way the real
one does: a ModelInfo with the commit, or an HTTP 404 turned into huggingface_hub's own error classes by
its own ``hf_raise_for_status``. Everything else (params schema, ruamel round trip, CLI) is the real code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re

import httpx2
import pytest
from huggingface_hub import HfApi, ModelInfo, constants, hf_raise_for_status

from conftest import ROOT, schema_keys
from diffseg import cli, params, pin

PAPER = ROOT / "configs" / "paper.yaml"
OFFLINE = ROOT / "configs" / "offline.yaml"
QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"
# The paper profile's hub ids in file order, each asked for once (the planner and the judge share Qwen).
PAPER_HUB = [QWEN, "IDEA-Research/grounding-dino-base", "sd2-community/stable-diffusion-2-inpainting",
             "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "black-forest-labs/FLUX.1-Fill-dev",
             "stabilityai/stable-diffusion-3.5-medium", "Kwai-Kolors/Kolors-diffusers",
             "Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers", "kandinsky-community/kandinsky-2-2-decoder-inpaint",
             "kandinsky-community/kandinsky-2-2-prior", "stabilityai/stable-diffusion-xl-base-1.0",
             "openai/clip-vit-large-patch14"]
SDXL, SDXL_LORA = PAPER_HUB[3], PAPER_HUB[10]  # sdxl_lora: the SDXL checkpoint (asked for once) and its LoRA
# The revision lines `pin --write` fills in, in file order: (indent, field, id). GLIDE's entry has none.
WRITTEN = [(4, "revision", QWEN), (4, "detector_revision", "IDEA-Research/grounding-dino-base")] + [
    (6, "revision", model) for model in PAPER_HUB[2:9]] + [
    (6, "prior_revision", "kandinsky-community/kandinsky-2-2-prior"), (6, "revision", SDXL),
    (8, "revision", SDXL_LORA), (4, "revision", QWEN), (4, "revision", "openai/clip-vit-large-patch14")]


def commit(model: str) -> str:
    """The fake hub's current commit of ``model``: 40 hex digits, like a git sha."""
    return hashlib.sha1(model.encode()).hexdigest()


def _http_error(code: str, url: str) -> None:
    hf_raise_for_status(httpx2.Response(404, headers={"X-Error-Code": code}, request=httpx2.Request("GET", url)))


@pytest.fixture
def hub(monkeypatch) -> list[tuple[str, str | None]]:
    """A hub holding PAPER_HUB at commit(id); returns the (id, revision) questions it was asked."""
    asked = []

    def model_info(api, repo_id, *, revision=None, **_):
        asked.append((repo_id, revision))
        url = f"https://huggingface.co/api/models/{repo_id}"
        if repo_id not in PAPER_HUB:
            _http_error("RepoNotFound", url)
        if revision not in (None, commit(repo_id)):
            _http_error("RevisionNotFound", f"{url}/revision/{revision}")
        return ModelInfo(id=repo_id, sha=commit(repo_id))

    monkeypatch.setattr(HfApi, "model_info", model_info)
    return asked


@pytest.fixture
def paper(workdir):
    """A copy of the paper profile in an empty working folder (so no hub id is an existing folder)."""
    path = workdir / "paper.yaml"
    path.write_bytes(PAPER.read_bytes())
    return path


def test_every_revision_field_of_the_schema_has_its_checkpoint():
    refs = params.load(PAPER).hub_refs()
    assert {re.sub(r"\[\d+\]", "[0]", ref.revision_key) for ref in refs} == {k for k in schema_keys(params.Params) if k.endswith("revision")} == {
        "propose.vlm.revision", "propose.grounding.detector_revision", "edit.generators[0].revision",
        "edit.generators[0].prior_revision", "edit.generators[0].lora.revision", "filter.vlm.revision",
        "baselines.univfd.revision"}
    assert [ref.key for ref in refs] == (
        ["propose.vlm.model", "propose.grounding.detector"] + [f"edit.generators[{i}].model" for i in range(8)]
        + ["edit.generators[7].prior", "edit.generators[8].model", "edit.generators[8].lora.path",
           "filter.vlm.model", "baselines.univfd.clip_model"])
    assert [ref.model for ref in refs if ref.model != "base-inpaint"] == PAPER_HUB[:10] + [SDXL, SDXL_LORA, QWEN,
                                                                                           PAPER_HUB[11]]


def test_pin_writes_exact_commits_and_keeps_every_other_byte(paper, hub, capsys):
    before = paper.read_text().splitlines(keepends=True)
    assert cli.main(["pin", "--params", str(paper), "--write"]) == 0
    after = paper.read_text().splitlines(keepends=True)

    assert len(after) == len(before)
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert changed == [(f"{' ' * indent}{field}: null\n", f"{' ' * indent}{field}: {commit(model)}\n")
                       for indent, field, model in WRITTEN]
    comment = ("    # stabilityai/stable-diffusion-2-inpainting left the hub in late 2025; sd2-community keeps "
               "the copy.\n")
    assert comment in before and comment in after
    assert "    max_pixels: 1003520  # Qwen2.5-VL's default image size cap (1280 x 28 x 28)\n" in after
    assert hub == [(model, None) for model in PAPER_HUB]

    p = params.load(paper)
    assert [g.revision for g in p.edit.generators] == [commit(m) for m in PAPER_HUB[2:6]] + [None] + [
        commit(m) for m in PAPER_HUB[6:9]] + [commit(SDXL)]
    assert p.edit.generators[7].prior_revision == commit(PAPER_HUB[9])
    assert p.edit.generators[8].lora.revision == commit(SDXL_LORA)
    for stage in ("propose", "edit", "filter"):
        pin.require_pinned(p, stage)  # allow_unpinned stays false, and nothing is loose any more

    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["key", "checkpoint", "revision", "commit"]
    assert rows[3] == ["edit.generators[0].model", PAPER_HUB[2], "null", commit(PAPER_HUB[2])]
    assert rows[7] == ["edit.generators[4].model", "base-inpaint", "null", "(not", "a", "hub", "id:", "not", "pinned)"]
    assert rows[-1] == ["pin:", "14", "revision(s)", "written", "into", str(paper)]


def test_pinning_again_asks_at_the_pinned_commits_and_changes_nothing(paper, hub, capsys):
    assert cli.main(["pin", "--params", str(paper), "--write"]) == 0
    pinned = paper.read_bytes()
    hub.clear()
    assert cli.main(["--params", str(paper), "pin", "--write"]) == 0  # the global --params works the same
    assert paper.read_bytes() == pinned
    assert hub == [(model, commit(model)) for model in PAPER_HUB]
    assert capsys.readouterr().out.splitlines()[-1] == f"pin: {paper} already names these commits"


def test_without_write_the_file_is_not_touched(paper, hub, capsys):
    assert cli.main(["pin", "--params", str(paper)]) == 0
    assert paper.read_bytes() == PAPER.read_bytes()
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"pin: `diffseg pin --params {paper} --write` writes these commits into the file"


def test_local_folders_are_neither_asked_for_nor_written(paper, hub, workdir, capsys):
    (workdir / QWEN).mkdir(parents=True)  # a local folder that looks like the hub id
    assert cli.main(["pin", "--params", str(paper), "--write"]) == 0
    after = paper.read_text().splitlines(keepends=True)
    assert "    model: Qwen/Qwen2.5-VL-7B-Instruct\n" in after
    p = params.load(paper)
    assert (p.propose.vlm.revision, p.filter.vlm.revision) == (None, None)
    assert p.propose.grounding.detector_revision == commit(PAPER_HUB[1])
    assert hub == [(model, None) for model in PAPER_HUB[1:]]
    assert capsys.readouterr().out.splitlines()[-1] == f"pin: 12 revision(s) written into {paper}"


def test_the_offline_profile_has_nothing_to_pin(workdir, hub, capsys):
    path = workdir / "offline.yaml"
    path.write_bytes(OFFLINE.read_bytes())
    assert cli.main(["pin", "--params", str(path), "--write"]) == 0
    assert path.read_bytes() == OFFLINE.read_bytes()
    assert hub == []
    assert capsys.readouterr().out.splitlines()[-1] == f"pin: no hub checkpoint in {path}: nothing to pin"


def test_an_id_the_hub_does_not_know_is_named(paper, hub, capsys):
    text = PAPER.read_text().replace("sd2-community/stable-diffusion-2-inpainting", "sd2-community/no-such-model")
    paper.write_text(text)
    assert cli.main(["pin", "--params", str(paper), "--write"]) == 2
    assert capsys.readouterr().err == (
        "diffseg pin: edit.generators[0].model: 'sd2-community/no-such-model' is not a model on the Hugging Face "
        "hub (a private one needs `huggingface-cli login`)\n")
    assert paper.read_text() == text


def test_a_revision_the_hub_does_not_know_is_named(paper, hub, capsys):
    text = PAPER.read_text().replace("    detector_revision: null\n", "    detector_revision: v9\n")
    paper.write_text(text)
    assert cli.main(["pin", "--params", str(paper)]) == 2
    assert capsys.readouterr().err == ("diffseg pin: propose.grounding.detector: 'IDEA-Research/grounding-dino-base' "
                                       "has no revision 'v9' on the Hugging Face hub\n")


def test_offline_the_first_hub_id_is_named(paper, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the real HfApi: it must refuse before any request
    assert cli.main(["pin", "--params", str(paper), "--write"]) == 2
    assert capsys.readouterr().err == (
        "diffseg pin: propose.vlm.model: 'Qwen/Qwen2.5-VL-7B-Instruct': cannot ask the Hugging Face hub for its "
        "commit while HF_HUB_OFFLINE is set; pin on a connected machine\n")
    assert paper.read_bytes() == PAPER.read_bytes()


LOOSE_EDIT = ("key 'edit.generators[0].revision': hub checkpoint 'sd2-community/stable-diffusion-2-inpainting' has "
              "no pinned revision (nor do edit.generators[1].revision, edit.generators[2].revision, "
              "edit.generators[3].revision, edit.generators[5].revision, edit.generators[6].revision, "
              "edit.generators[7].revision, edit.generators[7].prior_revision, edit.generators[8].revision, "
              "edit.generators[8].lora.revision); `diffseg pin --write` pins every "
              "hub id of the file, allow_unpinned: true loads the hub's current files")


def test_generation_stages_refuse_unpinned_hub_ids_naming_the_key():
    p = params.load(PAPER)
    assert p.allow_unpinned is False
    with pytest.raises(params.ParamsError) as err:
        pin.require_pinned(p, "edit")
    assert str(err.value) == LOOSE_EDIT
    for stage, key, model, rest in [
            ("propose", "propose.vlm.revision", QWEN, " (nor do propose.grounding.detector_revision)"),
            ("filter", "filter.vlm.revision", QWEN, "")]:
        with pytest.raises(params.ParamsError) as err:
            pin.require_pinned(p, stage)
        assert str(err.value).startswith(f"key '{key}': hub checkpoint '{model}' has no pinned revision{rest}; ")


def test_the_cli_refuses_before_any_work(paper, capsys):
    assert cli.main(["--params", str(paper), "edit", "t1"]) == 2
    assert capsys.readouterr().err == f"diffseg edit: {LOOSE_EDIT}\n"
    assert sorted(p.name for p in paper.parent.iterdir()) == ["paper.yaml"]


def test_allow_unpinned_and_unloaded_models_pass():
    p = params.load(PAPER)
    allowed = dataclasses.replace(p, allow_unpinned=True)
    for stage in ("propose", "edit", "filter"):
        pin.require_pinned(allowed, stage)
    # The annotations planner and the heuristics judge load no model; a replay VLM reads a transcript.
    p.propose.planner, p.filter.judge = "annotations", "heuristics"
    pin.require_pinned(p, "propose")
    pin.require_pinned(p, "filter")
    p.propose.planner, p.propose.vlm.backend, p.propose.grounding.segmenter = "vlm", "replay", "annotations"
    pin.require_pinned(p, "propose")


def test_the_offline_profile_passes_even_when_strict():
    p = params.load(OFFLINE)
    assert p.allow_unpinned is True
    strict = dataclasses.replace(p, allow_unpinned=False)
    strict.propose.planner, strict.filter.judge = "vlm", "vlm"  # the twins of every model are local folders
    for stage in ("propose", "edit", "filter"):
        pin.require_pinned(strict, stage)
