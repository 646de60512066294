"""Config: defaults, TOML, environment and --set layers, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import (
    Config,
    build_config,
    load_config,
    parse_overrides,
    read_toml,
    replace,
    save_resolved,
)
from pipeline.errors import ConfigError


def test_defaults_are_valid_and_cover_every_stage() -> None:
    cfg = Config()
    assert {"crawl", "extract", "clean", "tokenize", "shards", "train", "validate",
            "schedule"} <= set(cfg.to_dict())
    assert cfg.extract.ocr == "auto" and cfg.extract.dpi == 300
    assert cfg.ingest.max_bytes == 200 * 1024 * 1024


def test_toml_file_env_and_overrides_layer_in_order(tmp_path: Path) -> None:
    path = tmp_path / "cllm.toml"
    path.write_text('[train]\nlr = 0.01\nmax_steps = 50\nrun = "from-file"\n'
                    '[extract]\nlang = "deu"\n')
    env = {"CLLM_TRAIN__MAX_STEPS": "60", "CLLM_EXTRACT__LANG": "fra", "UNRELATED": "x"}
    cfg = load_config(path, ["train.max_steps=70"], environ=env,
                      extra={"extract": {"lang": "eng+deu"}})
    assert cfg.train.lr == 0.01  # file
    assert cfg.train.run == "from-file"
    assert cfg.train.max_steps == 70  # --set beats env beats file
    assert cfg.extract.lang == "eng+deu"  # CLI flags beat everything


def test_override_values_are_parsed_by_type() -> None:
    got = parse_overrides(["train.lr=3e-4", "train.compile=true", "crawl.max_pages=7",
                           'crawl.allowed_domains=["a.org", "b.org"]', "extract.lang=eng+deu",
                           "crawl.denied_domains=x.com,y.com"])
    cfg = build_config([got])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.compile is True
    assert cfg.crawl.max_pages == 7
    assert cfg.crawl.allowed_domains == ["a.org", "b.org"]
    assert cfg.extract.lang == "eng+deu"
    assert cfg.crawl.denied_domains == ["x.com", "y.com"]


def test_int_widens_to_float_but_not_the_reverse() -> None:
    assert build_config([{"train": {"lr": 1}}]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train\.max_steps must be an integer"):
        build_config([{"train": {"max_steps": 1.5}}])


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"trian": {"lr": 1.0}}, r"unknown config section \[trian\]; valid sections: .*train"),
        ({"train": {"lrr": 1.0}}, r"unknown config key train\.lrr; valid keys in \[train\]: .*lr"),
        ({"train": {"lr": "fast"}}, r"train\.lr must be a number, got 'fast'"),
        ({"train": {"lr": -1.0}}, r"train\.lr must be > 0, got -1\.0"),
        ({"extract": {"ocr": "sometimes"}}, r"extract\.ocr must be one of never \| auto \| force"),
        ({"crawl": {"obey_robots": "yes"}}, r"crawl\.obey_robots must be true or false"),
        ({"train": {"n_embd": 100, "n_head": 3}}, r"train\.n_embd must be a multiple"),
        ({"schedule": {"validate_cron": "hourly"}}, r"schedule\.validate_cron must be a 5-field"),
        ({"schedule": {"server_host": "0.0.0.0"}}, r"schedule\.server_host must be a loopback"),
        ({"ingest": {"include": ["*.json", " "]}}, r"ingest\.include\[1\] must be a non-empty"),
        ({"clean": {"repeated_line_min_words": -1}},
         r"clean\.repeated_line_min_words must be >= 0"),
        ({"train": {"mlp": "relu"}}, r"train\.mlp must be one of gelu \| swiglu"),
    ],
)
def test_bad_config_names_the_key(layer: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config([layer])


def test_bad_override_syntax_and_bad_env_key() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(ConfigError, match=r"unknown config key train\.nope"):
        load_config(None, [], environ={"CLLM_TRAIN__NOPE": "1"})


def test_bad_toml_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        read_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = build_config([{"train": {"lr": 0.002, "run": "r1"}, "crawl": {"allowed_domains": ["x"]}}])
    written = save_resolved(cfg, tmp_path, "train")
    assert written.name == "train.config.toml"
    assert load_config(written, [], environ={}) == cfg


def test_replace_checks_the_new_values() -> None:
    cfg = Config()
    changed = replace(cfg, "train", max_steps=5)
    assert changed.train.max_steps == 5 and cfg.train.max_steps != 5
    with pytest.raises(ConfigError, match=r"train\.max_steps must be > 0"):
        replace(cfg, "train", max_steps=0)
