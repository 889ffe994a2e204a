"""`holisafe run` under torchrun and accelerate launch: shard per process, merge at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from holisafe.bench.distributed import ProcessInfo, current_process
from holisafe.bench.runner import Shard, responses_path, run_info_path
from holisafe.data.taxonomy import SUBCATEGORIES, TYPES, category_of, expected_label
from launchers import accelerate_launch, launch_env, torchrun

SAMPLES = 41


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    for k in range(3):
        Image.new("RGB", (5, 5), (90 * k, 10, 10)).save(root / "images" / f"{k}.png")
    records = []
    for i in range(SAMPLES):
        sub, type_ = SUBCATEGORIES[i % len(SUBCATEGORIES)], TYPES[i % len(TYPES)]
        safe = type_[0] == "S"
        records.append({
            "id": 1000 - 7 * i, "image": f"{i % 3}.png", "query": f"q{i}",
            "category": category_of(sub), "subcategory": sub, "type": type_,
            "image_safe": safe, "image_safety_label": expected_label(safe, sub),
        })
    (root / "holisafe_bench.json").write_text(json.dumps(records), encoding="utf-8")
    return root



def holisafe_run(launcher: list[str], data: Path, out: Path) -> subprocess.CompletedProcess:
    env = launch_env()
    command = [*launcher, "-m", "holisafe.cli", "run", "--model", "const:comply",
               "--data", str(data), "--out", str(out), "--batch-size", "4"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result




@pytest.fixture(scope="module")
def single(data_dir: Path, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("single")
    holisafe_run([sys.executable], data_dir, out)
    return responses_path(out).read_bytes()


def check_merged(out: Path, single: bytes) -> None:
    assert responses_path(out).read_bytes() == single
    for k in (1, 2):
        assert responses_path(out, Shard(k, 2)).exists()
    info = json.loads(run_info_path(out).read_text())
    assert info["complete"] and info["counts"] == {"total": SAMPLES, "answered": SAMPLES,
                                                   "failed": 0}
    assert [s["shard"] for s in info["shards"]] == ["1/2", "2/2"]
    assert sum(s["counts"]["total"] for s in info["shards"]) == SAMPLES


@pytest.mark.slow
def test_torchrun_splits_merges_and_resumes_a_torn_shard(
    data_dir: Path, single: bytes, tmp_path: Path
) -> None:
    result = holisafe_run(torchrun(), data_dir, tmp_path)
    assert "(shard 1/2)" in result.stdout and "(shard 2/2)" in result.stdout
    assert f"merged 2 shards: {SAMPLES} of {SAMPLES} answered" in result.stdout
    check_merged(tmp_path, single)

    # A crash of one process: its shard lost its last lines, the last one torn.
    shard = responses_path(tmp_path, Shard(2, 2))
    text = shard.read_bytes()
    shard.write_bytes(text[: len(text) // 2])
    responses_path(tmp_path).unlink()
    result = holisafe_run(torchrun(), data_dir, tmp_path)
    assert "torn last line cut off" in result.stdout
    check_merged(tmp_path, single)


@pytest.mark.slow
def test_accelerate_launch_gives_the_single_process_result(
    data_dir: Path, single: bytes, tmp_path: Path
) -> None:
    result = holisafe_run(accelerate_launch(), data_dir, tmp_path)
    assert f"merged 2 shards: {SAMPLES} of {SAMPLES} answered" in result.stdout
    check_merged(tmp_path, single)


def test_process_info_comes_from_the_launcher_environment(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert current_process() == ProcessInfo(0, 1, 0)
    assert not current_process().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "6")
    with pytest.raises(ValueError, match="RANK=6 does not fit WORLD_SIZE=4"):
        current_process()
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    process = current_process()
    assert process.distributed and not process.main
    assert process.shard == Shard(3, 4) and process.local_rank == 0
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ValueError, match="malformed"):
        current_process()
