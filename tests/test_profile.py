"""`diffseg profile`: params.yaml switches between configs/*.yaml, visibly to `dvc params diff`."""
from __future__ import annotations

import pytest

from clone_fixture import make_clone, sh
from conftest import ROOT
from diffseg import profile
from diffseg.errors import UserError


def test_params_yaml_is_the_offline_profile():
    # params.yaml on main is the offline profile; an edit to one without the other would make
    # `diffseg profile offline` restore stale settings.
    assert (ROOT / "params.yaml").read_bytes() == (ROOT / "configs" / "offline.yaml").read_bytes(), \
        "params.yaml and configs/offline.yaml differ: after editing params.yaml run `diffseg profile --save offline`"
    assert profile.current(ROOT / "params.yaml", ROOT / "configs") == "offline"


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "configs").mkdir()
    for name in ("offline", "paper"):
        (tmp_path / "configs" / f"{name}.yaml").write_bytes((ROOT / "configs" / f"{name}.yaml").read_bytes())
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    return tmp_path


def test_switch_and_back(repo):
    params, configs = repo / "params.yaml", repo / "configs"
    assert profile.switch("paper", params, configs)
    assert params.read_bytes() == (configs / "paper.yaml").read_bytes()
    assert profile.current(params, configs) == "paper"
    assert not profile.switch("paper", params, configs)  # already there: nothing written
    assert profile.switch("offline", params, configs)
    assert params.read_bytes() == (configs / "offline.yaml").read_bytes()
    assert not list(repo.glob(".params.yaml.*"))  # the atomic write left no temporary file


def test_local_edits_are_kept_unless_forced(repo):
    params, configs = repo / "params.yaml", repo / "configs"
    params.write_text(params.read_text().replace("seed: 0", "seed: 7", 1))
    with pytest.raises(UserError, match="matches no profile"):
        profile.switch("paper", params, configs)
    assert "seed: 7" in params.read_text()
    assert profile.switch("paper", params, configs, force=True)


def test_save_makes_edits_a_profile(repo):
    params, configs = repo / "params.yaml", repo / "configs"
    params.write_text(params.read_text().replace("seed: 0", "seed: 7", 1))
    assert profile.save("seed7", params, configs) == configs / "seed7.yaml"
    assert profile.current(params, configs) == "seed7"
    assert profile.switch("paper", params, configs) and profile.switch("seed7", params, configs)
    assert "seed: 7" in params.read_text()
    with pytest.raises(UserError, match="letters, digits"):
        profile.save("../evil", params, configs)


def test_unknown_and_invalid_profiles_are_refused(repo):
    params, configs = repo / "params.yaml", repo / "configs"
    with pytest.raises(UserError, match="no profile 'gpu'.*offline, paper"):
        profile.switch("gpu", params, configs)
    (configs / "broken.yaml").write_text("seed: zero\n")
    with pytest.raises(UserError, match="seed"):
        profile.switch("broken", params, configs)
    assert profile.current(params, configs) == "offline"


def test_cli_switch_shows_in_dvc_params_diff(tmp_path):
    dest, env = make_clone(tmp_path / "diffseg")
    out = sh(["diffseg", "profile", "paper"], dest, env).stdout
    assert "now holds configs/paper.yaml" in out
    assert sh(["diffseg", "profile"], dest, env).stdout.strip() == "paper"
    diff = sh(["dvc", "params", "diff", "--md"], dest, env).stdout
    rows = {line.split("|")[2].strip(): line for line in diff.splitlines() if line.startswith("| params.yaml")}
    assert "offline" in rows["source.kind"] and "coco" in rows["source.kind"], diff
    assert "30000" in rows["source.n_images"], diff
    sh(["diffseg", "profile", "offline"], dest, env)
    assert "| params.yaml" not in sh(["dvc", "params", "diff", "--md"], dest, env).stdout
