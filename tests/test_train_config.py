"""Trainer config: YAML + typed `--set` overrides, unknown keys named, presets valid, CLI errors one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from realesr_portable.trainer import config as c
from realesr_portable.trainer.models import build_discriminator, build_generator, generator_params
from train_support import PYTHON, REPO, TRAIN_PY, script_env, write_config

PRESETS = sorted((REPO / "trainer" / "presets").glob("*.yml"))


def test_presets_exist_and_load() -> None:
    names = {p.stem for p in PRESETS}
    assert {"realesrnet_x4plus", "realesrgan_x4plus", "finetune_realesrgan_x4plus", "finetune_paired",
            "realesrnet_x2plus", "realesrgan_x2plus"} <= names
    for preset in PRESETS:
        cfg = c.load(preset)
        with torch.device("meta"):  # shapes only: the network keys map onto the constructors
            build_generator(cfg.network_g, cfg.scale)
            if cfg.train.stage == "esrgan":
                build_discriminator(cfg.network_d)


def test_x4plus_recipe_values() -> None:
    net = c.load(REPO / "trainer/presets/realesrnet_x4plus.yml")
    gan = c.load(REPO / "trainer/presets/realesrgan_x4plus.yml")
    assert (net.train.stage, net.train.lr_g, net.train.total_iter) == ("esrnet", 2e-4, 1_000_000)
    assert (gan.train.stage, gan.train.lr_g, gan.train.lr_d, gan.train.total_iter) == ("esrgan", 1e-4, 1e-4, 400_000)
    assert gan.train.betas == [0.9, 0.99] and gan.train.ema_decay == 0.999 and gan.train.gan_weight == 0.1
    assert gan.train.layer_weights == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    assert gan.train.l1_gt_usm and gan.train.percep_gt_usm and not gan.train.gan_gt_usm
    assert gan.data.gt_size == 256 and gan.data.pool_size == 180
    x2 = c.load(REPO / "trainer/presets/realesrnet_x2plus.yml")
    assert x2.scale == 2 and generator_params(x2.network_g, x2.scale)[1]["scale"] == 2


def test_overrides_are_typed() -> None:
    cfg = c.load(REPO / "trainer/presets/realesrgan_x4plus.yml", [
        "train.lr_g=2e-4", "train.total_iter=10", "train.betas=[0.5, 0.9]", "data.use_rot=true",
        "network_g.num_block=6", "name=123", "train.layer_weights.conv5_4=0.5",
    ])
    assert cfg.train.lr_g == pytest.approx(2e-4) and isinstance(cfg.train.lr_g, float)
    assert cfg.train.total_iter == 10 and cfg.train.betas == [0.5, 0.9] and cfg.data.use_rot is True
    assert cfg.network_g["num_block"] == 6 and cfg.name == "123"
    assert cfg.train.layer_weights["conv5_4"] == 0.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr_gg=1", "unknown config key 'train.lr_gg' (did you mean 'train.lr_g'?)"),
        ("trian.lr_g=1", "unknown config key 'trian'"),
        ("train.total_iter=ten", "'train.total_iter' must be an integer"),
        ("data.use_hflip=maybe", "'data.use_hflip' must be true or false"),
        ("train.betas=0.9", "'train.betas' must be a list"),
        ("train.stage=esrgan2", "'train.stage' must be one of esrnet, esrgan"),
        ("data.gt_size=250", "multiple of scale 4"),
        ("data.gt_size=36", "multiple of 8"),
        ("data.crop_size=402", "data.crop_size 402 must be a multiple of scale 4"),
        ("noequals", "must look like key=value"),
        ("train.lr_g=__import__('os')", "'train.lr_g' must be a number"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(c.ConfigError) as err:
        c.load(REPO / "trainer/presets/realesrgan_x4plus.yml", [override])
    assert message in str(err.value)


def test_unknown_yaml_key_and_network_argument(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "trainer/presets/realesrnet_x4plus.yml").read_text())
    data["data"]["batchsize"] = 4
    with pytest.raises(c.ConfigError, match=r"'data.batchsize' \(did you mean 'data.batch_size'\?\)"):
        c.from_dict(data)
    cfg = c.load(REPO / "trainer/presets/realesrnet_x4plus.yml", ["network_g.num_blocks=2"])
    with pytest.raises(c.ConfigError, match="unknown config key 'network_g.num_blocks' for RRDBNet"):
        build_generator(cfg.network_g, cfg.scale)
    cfg = c.load(REPO / "trainer/presets/realesrnet_x4plus.yml", ["network_g.num_block=two"])
    with pytest.raises(c.ConfigError, match="'network_g.num_block' must be int"):
        build_generator(cfg.network_g, cfg.scale)


def test_script_config_error_is_one_line(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "trainer/presets/realesrnet_x4plus.yml").read_text())
    cfg["train"]["learning_rate"] = 1
    path = write_config(tmp_path / "bad.yml", cfg)
    proc = subprocess.run([PYTHON, str(TRAIN_PY), "--config", str(path)], capture_output=True, text=True,
                          env=script_env(), timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["train.py: error: unknown config key 'train.learning_rate'"]
    assert "Traceback" not in proc.stderr


def test_degradation_and_tensorboard_keys_checked_at_start() -> None:
    from realesr_portable.trainer.degradations import ConfigError as DegradationConfigError
    from realesr_portable.trainer.loop import check_config

    preset = REPO / "trainer/presets/realesrgan_x4plus.yml"
    cfg = c.load(preset, ["degradation.first.gaussian_noise_prob=0.3"])
    check_config(cfg)
    assert cfg.degradation.first.gaussian_noise_prob == 0.3 and cfg.degradation.second.blur_prob == 0.8  # x4plus kept
    assert DegradationConfigError is c.ConfigError  # one config mechanism, one error
    hint = r"'degradation.first.gaussian_noise_probb' \(did you mean 'degradation.first.gaussian_noise_prob'\?\)"
    with pytest.raises(c.ConfigError, match=hint):
        c.load(preset, ["degradation.first.gaussian_noise_probb=0.3"])
    with pytest.raises(c.ConfigError, match=r"degradation.second.blur_prob must be a probability"):
        c.load(preset, ["degradation.second.blur_prob=1.5"])
    with pytest.raises(c.ConfigError, match="'network_d.num_feats'"):
        check_config(c.load(preset, ["network_d.num_feats=32"]))
