"""Training recipes: YAML in, every field checked, `--set` overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from train_recipes import recipe, write_recipe

from holisafe.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
)

REPO = Path(__file__).resolve().parents[2]


def base(tmp_path: Path) -> dict:
    return recipe(tmp_path / "data", tmp_path / "out")


def test_a_recipe_loads_with_defaults_for_what_it_leaves_out(tmp_path):
    config = load_config(write_recipe(tmp_path / "r.yaml", base(tmp_path)))
    assert config.model.architecture == "safellava"
    assert config.model.preset == "safellava-tiny"
    assert config.model.language_model == "full"
    assert config.data.answers == "reference"
    assert config.training.max_steps == 6
    assert config.training.lr_scheduler == "cosine"


def test_the_vision_tower_is_frozen_by_default():
    config = config_from_dict({"data": {"train": "d"}, "training": {"output_dir": "o"}})
    assert config.model.freeze_vision_tower is True


def test_overrides_reach_nested_fields_and_read_values_as_yaml(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", base(tmp_path))
    config = load_config(path, [
        "training.learning_rate=1e-3",
        "training.bf16=false",
        "model.language_model=lora",
        "model.lora.r=4",
        "training.learning_rates={safety: 0.01, projector: 0.002}",
        "model.tokenizer_data=[a, b]",
        "data.eval=null",
    ])
    assert config.training.learning_rate == 1e-3
    assert config.training.bf16 is False
    assert config.model.language_model == "lora"
    assert config.model.lora.r == 4
    assert config.training.learning_rates == {"safety": 0.01, "projector": 0.002}
    assert config.model.tokenizer_data == ("a", "b")
    assert config.data.eval is None


def test_an_override_may_create_a_missing_section():
    raw = apply_overrides({"training": {"output_dir": "o"}}, ["data.train=somewhere"])
    assert raw["data"] == {"train": "somewhere"}


def test_overrides_leave_the_original_untouched():
    raw = {"training": {"max_steps": 5}}
    apply_overrides(raw, ["training.max_steps=7"])
    assert raw == {"training": {"max_steps": 5}}


@pytest.mark.parametrize("text", ["no_equals", "=5", "a..b=1", ".a=1"])
def test_malformed_overrides_are_refused(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_an_override_cannot_descend_into_a_value():
    with pytest.raises(ConfigError, match=r"training\.max_steps is a value"):
        apply_overrides({"training": {"max_steps": 5}}, ["training.max_steps.x=1"])


@given(path=st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), min_size=1, max_size=4),
       value=st.one_of(st.integers(), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False)))
def test_any_scalar_override_lands_at_its_path(path, value):
    raw = apply_overrides({}, [f"{'.'.join(path)}={yaml.safe_dump(value).strip()}"
                               .replace("\n...", "")])
    node = raw
    for part in path:
        node = node[part]
    assert node == value


def test_unknown_and_missing_keys_are_all_named(tmp_path):
    raw = base(tmp_path)
    raw["training"]["max_stpes"] = 3
    raw["model"]["lora"] = {"rank": 8}
    del raw["data"]["train"]
    with pytest.raises(ConfigError) as error:
        load_config(write_recipe(tmp_path / "r.yaml", raw))
    message = str(error.value)
    assert "training.max_stpes: unknown key" in message
    assert "model.lora.rank: unknown key" in message
    assert "data.train: missing required key" in message
    assert "r.yaml" in message


@pytest.mark.parametrize(("override", "expected"), [
    ("model.init=preset:huge", "unknown preset 'huge'"),
    ("training.learning_rates={head: 1.0}", "unknown part(s) head"),
    ("data.general_ratio=0.2", "needs `general`"),
    ("data.general=g.json", "general_ratio is 0"),
    ("data.general_ratio=1.0", "less than 1"),
    ("model.vision_pretraining={epochs: 2}", "needs vision_tower"),
    ("training.batch_size=0", "greater than or equal to 1"),
    ("model.language_model=half", "'full', 'lora' or 'frozen'"),
])
def test_invalid_values_say_which_key_and_why(tmp_path, override, expected):
    path = write_recipe(tmp_path / "r.yaml", base(tmp_path))
    with pytest.raises(ConfigError, match="invalid training config") as error:
        load_config(path, [override])
    assert expected in str(error.value)


def test_unreadable_or_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listed)


def test_the_recipe_written_back_loads_to_the_same_config(tmp_path):
    config = load_config(write_recipe(tmp_path / "r.yaml", base(tmp_path)),
                         ["model.language_model=lora", "training.bf16=true"])
    again = tmp_path / "again.yaml"
    again.write_text(config.to_yaml(), encoding="utf-8")
    assert load_config(again) == config


@pytest.mark.parametrize("name", ["safellava", "llava", "llava_unaligned"])
def test_the_shipped_demo_recipes_are_valid(name):
    config = load_config(REPO / "configs" / "demo" / f"{name}.yaml")
    assert isinstance(config, TrainConfig)
    assert config.model.preset == "safellava-tiny"
    assert config.training.batch_size == 32
    assert config.model.vision_pretraining is not None


def test_the_demo_recipes_differ_only_where_the_comparison_needs_it():
    def load(name: str) -> dict:
        return load_config(REPO / "configs" / "demo" / f"{name}.yaml").model_dump()

    safe, plain, unaligned = load("safellava"), load("llava"), load("llava_unaligned")
    # Only SafeLLaVA has a meta token and head, so only it sets their learning rate; the
    # unaligned model learns helpful answers only and may stop sooner.
    shared = {"output_dir": None, "learning_rates": None}
    assert plain["training"] | shared == safe["training"] | shared
    safety_rates = safe["training"]["learning_rates"]
    assert unaligned["training"] | shared | {"max_steps": None, "save_steps": None} == \
        safe["training"] | shared | {"max_steps": None, "save_steps": None}
    for other in (plain, unaligned):
        assert other["training"]["learning_rates"] | {"safety": safety_rates["safety"]} == \
            safety_rates
        assert other["model"]["vision_tower"] == safe["model"]["vision_tower"]
        assert other["model"]["freeze_vision_tower"] == safe["model"]["freeze_vision_tower"]
    assert (safe["model"]["architecture"], plain["model"]["architecture"]) == (
        "safellava", "llava")
    assert plain["data"] == safe["data"]
    assert unaligned["data"] == safe["data"] | {"answers": "helpful_only"}


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_the_accelerate_configs_parse(name):
    config = yaml.safe_load((REPO / "configs" / "accelerate" / f"{name}.yaml").read_text())
    assert config["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")
    ds_file = (config.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if ds_file is not None:
        import json

        stage = json.loads((REPO / ds_file).read_text())["zero_optimization"]["stage"]
        assert stage == int(name[-1])
