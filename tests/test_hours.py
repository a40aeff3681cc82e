"""The paper-scale hours model (src/diffseg/scale/hours.py): its arithmetic against hand-computed values."""
from __future__ import annotations

import pytest

from diffseg.params import load
from diffseg.scale import hours
from diffseg.scale.hours import Settings, Workload


@pytest.fixture(scope="module")
def paper():
    return load("configs/paper.yaml")


def test_workload_by_hand():
    w = Workload((0.1, 0.3, 0.3, 0.3), rounds=2, rejection=0.5)
    assert w.accepted == 0.875  # 1 - 0.5^3
    assert w.attempts_per_turn == 1.75  # 1 + 0.5 + 0.25
    assert w.planned_per_image == pytest.approx(1.8)
    assert w.edited_share == pytest.approx(0.3 * (0.875 + 0.984375 + 0.998046875))  # 0.8572265625
    assert w.sources() == pytest.approx(30_000 / 0.8572265625)  # 34,996.58
    assert w.attempts() == pytest.approx(30_000 / 0.8572265625 * 1.8 * 1.75)  # 110,239.2
    none = Workload((0.1, 0.3, 0.3, 0.3), rounds=0, rejection=0.5)
    assert none.edited_share == pytest.approx(0.3 * (0.5 + 0.75 + 0.875))  # 0.6375
    assert none.sources() == pytest.approx(30_000 / 0.6375)


def test_workload_reads_the_paper_profile(paper):
    w = hours.workload(paper, Settings())
    assert (w.turn_weights, w.rounds, w.rejection) == ((0.1, 0.3, 0.3, 0.3), 2, 0.5)
    assert hours.workload(paper, Settings(retry_rounds=1, turn_weights=(0, 1))).accepted == 0.75


def test_generator_seconds_by_the_rule(paper):
    s = Settings()
    # UNets: the SDXL anchor itself, then params x latent cells relative to it.
    assert hours.denoise_s(paper.generator("sdxl"), s) == pytest.approx(2.5)
    assert hours.denoise_s(paper.generator("kolors"), s) == pytest.approx(2.5 * 2_579_458_820 / 2_567_478_084)
    assert hours.denoise_s(paper.generator("sd2"), s) == pytest.approx(2.5 * 865_925_124 / 2_567_478_084 / 4)
    # DiT: 2 x params x (64 x 64 image + 333 text tokens) x 2 (guidance) x 30 steps at 40% of 989 TFLOP/s.
    sd3 = 2 * 2_469_663_936 * (64 * 64 + 333) * 2 * 30 / (989e12 * 0.4)
    assert hours.denoise_s(paper.generator("sd3"), s) == pytest.approx(sd3)  # 3.318 s
    assert hours.call_s(paper.generator("sd3"), s) == pytest.approx(sd3 * 1.3)
    # FLUX.1 Fill is guidance-distilled: one pass per step.
    flux = 2 * 11_902_391_360 * (64 * 64 + 512) * 30 / (989e12 * 0.4)
    assert hours.denoise_s(paper.generator("flux"), s) == pytest.approx(flux)  # 8.32 s
    assert hours.call_s(paper.generator("flux"), Settings(**hours.COMPILED)) == pytest.approx(flux * 1.3 * 0.4 / 0.68)


def test_stage_rows_by_hand(paper):
    s = Settings()
    rows = hours.dataset_rows(paper, s)
    attempts = 30_000 / 0.8572265625 * 1.8 * 1.75
    assert rows["propose: VLM plans"] == (pytest.approx(attempts * 1.5 / 3600), True)
    assert rows["filter: VLM judge"] == (pytest.approx(attempts * 1.0 / 3600), True)
    assert rows["propose: Grounding DINO + SAM"] == (pytest.approx(attempts * 0.7 * 0.2 / 3600), True)
    mean = sum(hours.call_s(g, s) for g in paper.edit.generators) / 9  # nine generators, drawn uniformly
    assert rows["edit: generators"] == (pytest.approx(attempts * mean / 3600), True)
    assert rows["model loading (per GPU)"][1] is False


def test_totals_are_sums_of_the_rows(paper):
    for _, _, s in hours.SETTINGS:
        data, bench = hours.dataset_rows(paper, s), hours.benchmark_rows(paper, s)
        one, eight = hours.stage_hours(paper, s), hours.stage_hours(paper, s, 8)
        assert one["dataset half"] == pytest.approx(sum(h for h, _ in data.values()))
        assert one["benchmark half"] == pytest.approx(sum(h for h, _ in bench.values()))
        assert eight["dataset half"] == pytest.approx(sum(h / 8 if div else h for h, div in data.values()))


def _cells(table: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in table.strip().splitlines()[2:]]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_printed_tables_hold_the_computed_values(paper):
    text = hours.report(paper)
    one = text.split("### Hours per stage on one H100 (= H100-hours)\n\n")[1].split("\n\n")[0]
    eight = text.split("### Wall hours per stage on 8 H100s\n\n")[1].split("\n\n")[0]
    computed = [hours.stage_hours(paper, s) for _, _, s in hours.SETTINGS]
    computed8 = [hours.stage_hours(paper, s, 8) for _, _, s in hours.SETTINGS]
    for stage, cells in _cells(one).items():
        assert cells == [f"{h[stage]:.2f}" for h in computed]
    printed8 = _cells(eight)
    assert printed8.pop("dataset half, H100-hours (8 x wall)") == [f"{8 * h['dataset half']:.1f}" for h in computed8]
    for stage, cells in printed8.items():
        assert cells == [f"{h[stage]:.2f}" for h in computed8]
    assert _cells(one)["dataset half"][0] == "192.48"  # setting A: the paper profile as configured
    workload = _cells(text.split("### Workload (30,000 edited images, p = 0.5)\n\n")[1].split("\n\n")[0])
    assert workload["source images for 30,000 edited"][0] == "34,996.6"
    assert workload["edit attempts (plans, generator calls, verdicts)"][0] == "110,239"


def test_docs_hold_the_printed_tables(paper):
    """docs/scale.md pastes the module's output (its ### headings one level down): regenerate it on a change."""
    with open("docs/scale.md") as f:
        assert hours.report(paper).replace("### ", "#### ") in f.read()
