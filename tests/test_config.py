import argparse

import pytest

from ninshiki.config import (TrainConfig, add_config_arguments, build_config, config_from_namespace, load_yaml,
                             parse_model_kwargs, to_yaml)


def _parse(argv: list[str]) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    return config_from_namespace(TrainConfig, parser.parse_args(argv))


def test_every_field_is_a_flag_of_the_same_name() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    flags = {a.dest for a in parser._actions}
    assert set(vars(TrainConfig())) <= flags


def test_flags_override_yaml_which_overrides_defaults(tmp_path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("epochs: 7\nlr: 0.2\nmodel: vgg11\nema: true\n")
    config = _parse(["--config", str(run), "--lr", "0.05", "--clip-grad", "2"])
    assert (config.epochs, config.lr, config.model, config.ema, config.clip_grad) == (7, 0.05, "vgg11", True, 2.0)
    assert config.batch_size == TrainConfig().batch_size


def test_bool_flags_accept_bare_and_explicit_values() -> None:
    assert _parse(["--ema"]).ema is True
    assert _parse(["--ema", "false"]).ema is False


def test_unknown_yaml_key_is_an_error_naming_file_and_key(tmp_path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"run\.yaml.*learning_rate"):
        _parse(["--config", str(run)])


def test_bad_values_are_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs"):
        build_config(TrainConfig, {"epochs": "ten"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_yaml(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")


def test_yaml_round_trip(tmp_path) -> None:
    config = TrainConfig(model="vgg16", epochs=3, clip_grad=1.0, weights="w.pth")
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert build_config(TrainConfig, load_yaml(path)) == config


def test_model_kwargs_from_a_flag_or_a_yaml_mapping(tmp_path) -> None:
    from ninshiki.config import parse_model_kwargs

    assert parse_model_kwargs(_parse(["--model-kwargs", "{width: 16, dropout: 0.1}"]).model_kwargs) == \
        {"width": 16, "dropout": 0.1}
    run = tmp_path / "run.yaml"
    run.write_text("model: vgg_small\nmodel_kwargs: {width: 24}\n")
    assert parse_model_kwargs(_parse(["--config", str(run)]).model_kwargs) == {"width": 24}
    with pytest.raises(ValueError, match="model_kwargs"):
        TrainConfig(model_kwargs="[1, 2]")


def test_compare_options_go_to_the_model_they_name() -> None:
    from ninshiki.config_compare import CompareConfig

    config = CompareConfig(data="d", models="haar_cascade, hog_svm",
                           model_kwargs="{haar_cascade: {num_stages: 12, feature_step: 2}}")
    assert config.model_names() == ["haar_cascade", "hog_svm"]
    assert parse_model_kwargs(config.options_of("haar_cascade")) == {"num_stages": 12, "feature_step": 2}
    assert config.options_of("hog_svm") is None
    with pytest.raises(ValueError, match="not in --models"):
        CompareConfig(data="d", models="hog_svm", model_kwargs="{ssd_lite: {}}").options_of("hog_svm")
    with pytest.raises(ValueError, match="names a model twice"):
        CompareConfig(data="d", models="hog_svm,hog_svm").model_names()
