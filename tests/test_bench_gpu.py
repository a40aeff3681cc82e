"""benchmarks/bench_gpu.py's code path, run on the CPU at the twins' sizes (`--tiny`): no GPU figure."""
from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_gpu  # noqa: E402


def test_tiny_run_gives_every_row(tmp_path, capsys):
    result = bench_gpu.main(["--tiny", "--steps", "1", "--no-write", "--json", str(tmp_path / "r.json")])
    rows = result["rows"]
    assert result["tiny"] and result["device"].startswith("CPU")
    assert [(r["family"], r["batch"], r["compiled"]) for r in rows] == [
        (f, b, c) for f in bench_gpu.SETTINGS for c in (False, True) for b in (1, 2, 4)]
    eager = [r for r in rows if not r["compiled"]]
    assert all(r["images_per_s"] > 0 and r["resolution"] == bench_gpu.TINY_SIZE for r in eager)
    assert all(r["peak_gib"] is None for r in eager)  # CUDA's allocator statistics only
    assert {r["skipped"] for r in rows if r["compiled"]} == {
        "torch.compile skipped on CPU: inductor's C++ build takes minutes per shape here"}
    assert [r["family"] for r in result["adapter"]] == list(bench_gpu.SETTINGS)
    assert all(r["adapter_s"] > 0 and r["bare_s"] > 0 for r in result["adapter"])
    assert (tmp_path / "r.json").is_file()
    assert "torch.compile skipped on CPU" in capsys.readouterr().out


def test_full_size_pipelines_fit_together_on_meta():
    """The full-size configurations plug into each family's real pipeline and pass its adapter's checks."""
    import torch

    for family in bench_gpu.SETTINGS:
        pipes = bench_gpu.build(family, tiny=False, device="meta", dtype=torch.bfloat16)
        bench_gpu.adapter_for(family, pipes, tiny=False, steps=30, device="cpu")
        for name, comp in bench_gpu.arch.ARCHITECTURES[family].items():
            model = getattr(pipes[comp.pipe or "pipe"], comp.attr)
            assert bench_gpu.arch.weights(model) == bench_gpu.arch.count(family, name)
