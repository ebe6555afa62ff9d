from dataclasses import dataclass

import pytest

from histexpr.config import from_dict, load_json, override, save_json, to_dict
from histexpr.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    a: int = 1


@dataclass(frozen=True)
class Cfg:
    channels: tuple[int, ...] = (64, 128)
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    limit: int | None = None
    inner: Inner = Inner()


def test_json_round_trip(tmp_path):
    cfg = Cfg(channels=(1, 2, 3), lr=0.5, flag=True, limit=7, inner=Inner(4))
    save_json(cfg, tmp_path / "c.json")
    assert load_json(Cfg, tmp_path / "c.json") == cfg
    assert from_dict(Cfg, to_dict(cfg)) == cfg


def test_override_coerces_strings_like_cli_flags():
    cfg = override(Cfg(), ["channels=8,16,32", "lr=0.1", "flag=true", "limit=none"])
    assert cfg.channels == (8, 16, 32) and cfg.lr == 0.1 and cfg.flag is True and cfg.limit is None
    assert override(Cfg(), {"limit": "5"}).limit == 5


@pytest.mark.parametrize(
    "bad, message",
    [
        (["nope=1"], "unknown"),
        (["lr=fast"], "expected float"),
        (["flag=maybe"], "true/false"),
        (["lr"], "field=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        override(Cfg(), bad)


def test_unreadable_json_is_config_error(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_json(Cfg, p)


# ------------------------------------------------------------------ the --set resolver


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    epochs: int = 10

    def __post_init__(self):
        from histexpr.config import check_range

        check_range("lr", self.lr, 0, low_open=True)


@dataclass(frozen=True)
class Device:
    precision: str = "32-true"
    threads: int = 0


@dataclass(frozen=True)
class Train:
    optim: Optim = Optim()
    device: Device = Device()


@dataclass(frozen=True)
class Inference:
    precision: str = "32"


@dataclass(frozen=True)
class Model:
    channels: tuple[int, ...] = (64, 128)
    flag: bool = False


def _group():
    return {"model": Model(), "train": Train(), "inference": Inference()}


def test_resolver_flat_and_dotted_names_reach_nested_fields():
    from histexpr.config import resolve_overrides

    out = resolve_overrides(_group(), ["lr=3e-4", "channels=8,16", "optim.epochs=5"])
    assert out["train"].optim == Optim(lr=3e-4, epochs=5)
    assert out["model"].channels == (8, 16)
    assert out["inference"] == Inference()  # untouched
    full = resolve_overrides(_group(), {"train.optim.lr": 0.5, "inference.precision": "bf16"})
    assert full["train"].optim.lr == 0.5 and full["inference"].precision == "bf16"
    # the same change by a flat, a partly dotted and a fully dotted name
    names = ("epochs", "optim.epochs", "train.optim.epochs")
    assert len({resolve_overrides(_group(), {n: 7})["train"] for n in names}) == 1


def test_resolver_ambiguous_name_names_the_candidates():
    from histexpr.config import resolve_overrides

    with pytest.raises(ConfigError, match="ambiguous") as err:
        resolve_overrides(_group(), ["precision=bf16"])
    assert "train.device.precision" in str(err.value) and "inference.precision" in str(err.value)
    assert resolve_overrides(_group(), ["device.precision=bf16-mixed"])["train"].device.precision


def test_resolver_unknown_name_lists_the_known_ones():
    from histexpr.config import resolve_overrides

    with pytest.raises(ConfigError, match="unknown setting 'lrr'") as err:
        resolve_overrides(_group(), ["lrr=1"])
    assert "lr" in str(err.value) and "channels" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_resolver_aliases_keep_old_names_working():
    from histexpr.config import resolve_overrides

    aliases = {"precision": "device.precision", "old_lr": "optim.lr"}
    out = resolve_overrides(_group(), ["precision=bf16-mixed", "old_lr=0.25"], aliases)
    assert out["train"].device.precision == "bf16-mixed" and out["train"].optim.lr == 0.25


@pytest.mark.parametrize(
    "bad, message",
    [
        (["lr=fast"], "expected float"),
        (["epochs=2.5"], "expected int"),
        (["flag=maybe"], "true/false"),
        (["lr=-1"], "lr must be > 0"),
        (["lr"], "field=value"),
    ],
)
def test_resolver_type_and_range_errors_are_one_line(bad, message):
    from histexpr.config import resolve_overrides

    with pytest.raises(ConfigError, match=message) as err:
        resolve_overrides(_group(), bad)
    assert len(str(err.value).splitlines()) == 1


def test_train_config_fields_validate_at_construction():
    from histexpr.training.config import (
        DeviceConfig,
        ObjectiveConfig,
        OptimConfig,
        RunnerConfig,
        ValidationConfig,
    )

    for make, field in [
        (lambda: OptimConfig(lr=0), "lr"),
        (lambda: OptimConfig(epochs=0), "epochs"),
        (lambda: OptimConfig(patience=-1), "patience"),
        (lambda: OptimConfig(batch_size=0), "batch_size"),
        (lambda: OptimConfig(epoch_fraction=0), "epoch_fraction"),
        (lambda: OptimConfig(epoch_fraction=1.5), "epoch_fraction"),
        (lambda: OptimConfig(max_minutes=-1), "max_minutes"),
        (lambda: ValidationConfig(holdout_fraction=0), "holdout_fraction"),
        (lambda: ValidationConfig(holdout_fraction=1), "holdout_fraction"),
        (lambda: RunnerConfig(workers=-1), "workers"),
        (lambda: DeviceConfig(devices=0), "devices"),
        (lambda: DeviceConfig(precision="float8"), "precision"),
        (lambda: ObjectiveConfig(task="ranking"), "task"),
    ]:
        with pytest.raises(ConfigError, match=field) as err:
            make()
        assert len(str(err.value).splitlines()) == 1


def test_neural_settings_resolve_old_flat_names_and_list_every_field():
    from histexpr.estimators import settings
    from histexpr.estimators.neural import neural_configs

    cfgs = neural_configs(
        "ensemble",
        ["valid_fraction=0.2", "precision=bf16-mixed", "inference_precision=bf16", "n_folds=4"],
    )
    assert cfgs["train"].validation.holdout_fraction == 0.2
    assert cfgs["train"].device.precision == "bf16-mixed"
    assert cfgs["inference"].precision == "bf16" and cfgs["model"].n_folds == 4
    listed = {s.name: s for s in settings("ensemble")}
    assert listed["train.optim.lr"].default == 1e-3 and listed["train.optim.lr"].help
    assert listed["model.n_folds"].default == 3 and "model.channels" in listed
    assert {s.name for s in settings("ridge")} >= {"alpha"}
    with pytest.raises(ConfigError, match="n_folds"):
        neural_configs("convnet", ["n_folds=3"])  # only the ensemble has folds


def test_demo_neural_overrides_reach_every_neural_kind():
    from histexpr.workflows.experiment import ExperimentConfig, _neural_overrides

    demo = ("channels=32,32,64,64,128,128,256,256", "epochs=12", "patience=4", "batch_size=256")
    kinds = ("convnet", "ensemble", "celltype-weighted", "deepchrome", "attentivechrome")
    out = _neural_overrides(ExperimentConfig(models=("ridge", *kinds), neural=demo))
    for kind in ("convnet", "ensemble", "celltype-weighted"):
        assert out[kind] == list(demo)
    assert out["deepchrome"] == list(demo[1:]) == out["attentivechrome"]  # no channels
    with pytest.raises(ConfigError, match="nonsense"):
        _neural_overrides(ExperimentConfig(models=kinds, neural=("nonsense=1",)))
