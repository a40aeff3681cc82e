"""scripts/pr_report (what the pr-metrics workflow posts) on a tiny git + DVC project, and scripts/pr_comment.

The project has one stage whose metrics and plot follow a param. On a branch that changes the param, the
report must show each changed metric and the param with the base value and the new one.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from clone_fixture import commit, sh, tool_env
from conftest import ROOT

SCORE = textwrap.dedent("""\
    import json, os, yaml
    p = yaml.safe_load(open("params.yaml"))["train"]
    os.makedirs("metrics", exist_ok=True)
    os.makedirs("plots", exist_ok=True)
    json.dump({"acc": round(p["lr"] * p["epochs"], 4), "loss": round(1 / (1 + p["lr"] * p["epochs"]), 4),
               "epochs": p["epochs"]}, open("metrics/score.json", "w"))
    json.dump([{"step": s, "loss": round(1 / (1 + p["lr"] * s), 4)} for s in range(p["epochs"] + 1)],
              open("plots/curve.json", "w"))
""")
DVC_YAML = {
    "stages": {"score": {"cmd": "python score.py", "deps": ["score.py"], "params": ["train.lr", "train.epochs"],
                         "outs": [{"metrics/score.json": {"cache": False}}, {"plots/curve.json": {"cache": False}}]}},
    "metrics": ["metrics/score.json"],
    "plots": [{"plots/curve.json": {"x": "step", "y": "loss"}}],
}


@pytest.fixture
def project(tmp_path):
    """Branch main with the stage run and committed; checked out: branch `faster`, lr 0.1 -> 0.2, run, committed."""
    repo, env = tmp_path / "tiny", tool_env()
    repo.mkdir()
    (repo / "score.py").write_text(SCORE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (repo / "params.yaml").write_text("train:\n  lr: 0.1\n  epochs: 3\n")
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    sh(["dvc", "repro"], repo, env)
    commit(repo, env, "baseline")
    sh(["git", "checkout", "-q", "-b", "faster"], repo, env)
    (repo / "params.yaml").write_text("train:\n  lr: 0.2\n  epochs: 3\n")
    sh(["dvc", "repro"], repo, env)
    commit(repo, env, "faster")
    return repo, env


def _table_rows(markdown: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith(f"| {first_cell}")]


def test_report_shows_changed_metrics_and_params_with_both_values(project):
    repo, env = project
    out = sh([str(ROOT / "scripts" / "pr_report"), "main", "report"], repo, env)
    assert "wrote report/report.md" in out.stdout
    report = (repo / "report" / "report.md").read_text()
    print(report)
    assert report.splitlines()[0] == "<!-- diffseg-pr-report -->"
    metrics = {row[1]: row[2:] for row in _table_rows(report, "metrics/score.json")}
    # Columns: Path | Metric | main | workspace | Change
    assert metrics == {"acc": ["0.3", "0.6", "0.3"], "loss": ["0.7692", "0.625", "-0.1442"]}, report
    assert "epochs" not in metrics  # unchanged metrics are left out
    params = {row[1]: row[2:] for row in _table_rows(report, "params.yaml")}
    assert params == {"train.lr": ["0.1", "0.2"]}, report
    assert "`dvc plots diff main --targets plots/curve.json`" in report
    html = (repo / "report" / "plots" / "index.html").read_text()
    assert "plots/curve.json" in html and "main" in html and "workspace" in html


def test_report_without_changes(project):
    repo, env = project
    sh(["git", "checkout", "-q", "main"], repo, env)
    sh(["dvc", "repro"], repo, env)
    sh([str(ROOT / "scripts" / "pr_report"), "main", "report"], repo, env)
    report = (repo / "report" / "report.md").read_text()
    assert "No metric changed." in report and "No param changed." in report


def test_report_needs_the_base_branch(project):
    repo, env = project
    run = sh([str(ROOT / "scripts" / "pr_report"), "develop", "report"], repo, env, check=False)
    assert run.returncode == 2 and "git fetch origin develop:develop" in run.stderr


GH_STUB = textwrap.dedent("""\
    #!/usr/bin/env bash
    # Stands in for the GitHub CLI: logs each call, answers the comment listing from $GH_STUB_IDS.
    printf '%s\\n' "$*" >> "$GH_STUB_LOG"
    case "$*" in *--jq*) printf '%s' "$GH_STUB_IDS" ;; esac
""")


@pytest.mark.parametrize("existing, expected", [("", "POST repos/o/r/issues/7/comments"),
                                                ("41\n99\n", "PATCH repos/o/r/issues/comments/41")])
def test_comment_is_created_once_then_updated(tmp_path, existing, expected):
    """The GitHub API is not reachable from tests; a stub `gh` records what scripts/pr_comment asks of it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(GH_STUB)
    (bin_dir / "gh").chmod(0o755)
    report = tmp_path / "report.md"
    report.write_text('<!-- diffseg-pr-report -->\n## numbers\n')
    log = tmp_path / "gh.log"
    env = tool_env(GITHUB_REPOSITORY="o/r", PR_NUMBER="7", GH_STUB_LOG=str(log), GH_STUB_IDS=existing)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    out = sh([str(ROOT / "scripts" / "pr_comment"), str(report)], tmp_path, env).stdout
    calls = log.read_text().splitlines()
    assert calls[0].startswith("api --paginate repos/o/r/issues/7/comments --jq")
    assert 'startswith(\\"<!-- diffseg-pr-report -->\\")' not in calls[0]  # passed as one jq string literal
    assert 'startswith("<!-- diffseg-pr-report -->")' in calls[0]
    assert calls[1] == f"api --method {expected} -F body=@{report}"
    assert len(calls) == 2 and ("updated comment 41" in out if existing else "created a comment" in out)


def test_workflow_runs_the_tested_scripts():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pr-metrics.yml").read_text())
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["report"]["steps"])
    for command in ["scripts/setup", "dvc repro", "scripts/pr_report", "scripts/pr_comment"]:
        assert command in runs
    assert workflow[True] == {"pull_request": None}  # YAML 1.1 reads the key `on` as True
    assert json.dumps(workflow["permissions"]) == '{"contents": "read", "pull-requests": "write"}'
    assert Path(ROOT / "scripts" / "pr_report").stat().st_mode & 0o111
