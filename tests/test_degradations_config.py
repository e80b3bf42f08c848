"""DegradationConfig: preset, overrides from dict/YAML, unknown keys and bad values rejected."""

from __future__ import annotations

import pytest

from realesr_portable.trainer.degradations import ConfigError, DegradationConfig


def test_from_dict_overrides_on_top_of_x4plus():
    c = DegradationConfig.from_dict({"second": {"blur_prob": 0.5, "kernel": {"sinc_prob": 0.2}},
                                     "final": {"jpeg_range": [40, 90]}})
    x4 = DegradationConfig.x4plus()
    assert c.second.blur_prob == 0.5 and c.second.kernel.sinc_prob == 0.2
    assert c.second.kernel.sigma_range == x4.second.kernel.sigma_range  # rest of the section kept
    assert c.final.jpeg_range == (40, 90)
    assert c.first == x4.first
    assert DegradationConfig.from_dict({}) == x4


def test_to_dict_roundtrip():
    c = DegradationConfig.from_dict({"first": {"noise_range": [2, 20]}, "usm": {"weight": 0.3}})
    assert DegradationConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("d", "names"),
    [
        ({"frist": {}}, "'degradation.frist' (did you mean 'degradation.first'?)"),
        ({"second": {"nosie_range": [1, 2]}}, "'degradation.second.nosie_range' (did you mean 'degradation.second.noise_range'?)"),
        ({"first": {"kernel": {"sigma": [1, 2], "betaq_range": [1, 2]}}}, "'degradation.first.kernel.sigma'"),
    ],
)
def test_unknown_keys_are_named(d, names):
    """The training config's own checker: the full key as written under `degradation`, and a hint."""
    with pytest.raises(ConfigError) as info:
        DegradationConfig.from_dict(d)
    assert str(info.value).startswith(f"unknown config key {names}")


@pytest.mark.parametrize(
    ("d", "fragment"),
    [
        ({"first": {"resize_probs": [0.5, 0.5, 0.5]}}, "first.resize_probs"),
        ({"second": {"blur_prob": 1.5}}, "second.blur_prob"),
        ({"first": {"kernel": {"kernel_range": [7, 22]}}}, "first.kernel.kernel_range"),
        ({"first": {"kernel": {"kernel_types": ["iso", "box"], "kernel_probs": [0.5, 0.5]}}}, "box"),
        ({"final": {"resize_modes": ["nearest"]}}, "final.resize_modes"),
        ({"final": {"jpeg_range": [95, 30]}}, "final.jpeg_range"),
        ({"first": {"jpeg_range": [30.2, 30.7]}}, "integer quality"),
        ({"first": {"noise_range": "1-30"}}, "first.noise_range"),
        ({"usm": {"radius": 0}}, "usm"),
        ({"first": 3}, "'degradation.first' must be a mapping"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(d, fragment):
    with pytest.raises(ConfigError, match=fragment):
        DegradationConfig.from_dict(d)


def test_from_yaml(tmp_path):
    p = tmp_path / "deg.yml"
    p.write_text("degradations:\n  second:\n    resize_range: [0.5, 1.1]\n  final:\n    sinc_prob: 0.5\n")
    c = DegradationConfig.from_yaml(p)
    assert c.second.resize_range == (0.5, 1.1) and c.final.sinc_prob == 0.5
    p.write_text("first:\n  gray_noise_prob: 0.1\n")
    assert DegradationConfig.from_yaml(p).first.gray_noise_prob == 0.1
    p.write_text("first:\n  gray_noise_porb: 0.1\n")
    with pytest.raises(ConfigError, match="first.gray_noise_porb"):
        DegradationConfig.from_yaml(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        DegradationConfig.from_yaml(p)
