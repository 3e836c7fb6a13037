"""Every option of every config group composes and resolves."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, ROOT, compose

# every group under conf/, so that a new group is composed too
GROUPS = sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir())


def _options():
    for group in GROUPS:
        files = sorted(f for f in (CONF_DIR / group).glob("*.yaml") if not f.stem.startswith("_"))  # _: bases
        assert files, f"config group {group}/ is empty"
        for f in files:
            yield group, f.stem


@pytest.mark.parametrize(("group", "option"), list(_options()))
def test_every_option_composes(group, option, tmp_path):
    overrides = [] if group == "hydra" else [f"{group}={option}"]
    if group == "data" and option == "csv":
        overrides.append("data.train_file=/some/file.csv")
    if group == "data" and option == "hf":
        overrides.append("data.path=/some/saved_dataset")
    if group == "data" and option == "conll":
        overrides += ["task=ner", "data.train_file=/some/train.txt"]
    cfg = compose(overrides, tmp_path)
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert container["data"]["_target_"].startswith("bertcompress.data")
    assert container["teacher"]["module"]["_target_"].endswith("TeacherFinetune")
    assert container["trainer"]["max_epochs"] >= 1


def test_defaults_are_the_offline_cpu_job(tmp_path):
    cfg = compose([], tmp_path)
    assert cfg.teacher.name == "me5_small" and cfg.data.name == "ubmec" and cfg.hardware.name == "cpu"
    # the measured recipe: mean pooling, lr 1e-4, 3 epochs; the tuned ensembles keep the [CLS] head
    assert cfg.teacher.module.pooling == "mean" and cfg.teacher.module.optimizer.lr == 1e-4 and cfg.teacher.epochs == 3
    ens = compose(["teacher_ensemble=me5_seeds_tfidf"], tmp_path)
    assert ens.teacher.module.pooling == "cls" and ens.teacher.members.me5_seed7.module.pooling == "cls"
    assert cfg.trainer.precision == "32-true" and cfg.trainer.accelerator == "cpu"
    assert cfg.callbacks.early_stopping.monitor == "val/macro_f1" and cfg.callbacks.early_stopping.patience == 3


def test_p100_is_the_papers_setting(tmp_path):
    cfg = compose(["hardware=p100"], tmp_path)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "16-mixed" and cfg.data.batch_size == 8


def test_banglabert_uses_its_normalizer(tmp_path):
    from bertcompress.data.normalize import get_text_normalizer

    cfg = compose(["teacher=banglabert"], tmp_path)
    assert cfg.teacher.hub_id == "csebuetnlp/banglabert"
    norm = get_text_normalizer(cfg.teacher.text_normalizer)
    assert norm("আমি  ভালো") == "আমি ভালো"


def test_unknown_normalizer_is_rejected():
    from bertcompress.data.normalize import get_text_normalizer

    with pytest.raises(ValueError, match="Unknown text normalizer 'nfkd'"):
        get_text_normalizer("nfkd")


def test_student_and_compression_choices_compose_to_the_recorded_configs(tmp_path):
    """The student and compression files start from shared bases (``student/_kd.yaml``, nested
    ``compression/pruning`` and ``compression/quantization`` groups); each choice composes to exactly the
    config recorded in ``tests/fixtures/composed_configs.json`` (a hash of its resolved node), so every cache
    key that holds it stays the same. A deliberate change of a default updates that file."""
    import json

    from bertcompress.utils.io import stable_hash

    recorded = json.loads((ROOT / "tests" / "fixtures" / "composed_configs.json").read_text())
    now = {}
    for group in ("student", "compression"):
        for f in sorted((CONF_DIR / group).glob("*.yaml")):
            if not f.stem.startswith("_"):
                cfg = compose([f"{group}={f.stem}"], tmp_path)
                now[f"{group}={f.stem}"] = stable_hash(OmegaConf.to_container(cfg[group], resolve=True))
    assert now == recorded


def test_the_public_composer_gives_what_train_py_composes():
    from bertcompress.config import compose as public_compose

    cfg = public_compose(["student=cnn", "compression=quant_static"])
    assert cfg.student.name == "cnn" and cfg.compression.quantization.mode == "static"
    assert OmegaConf.to_container(cfg.student, resolve=True)["loss"]["temperature"] == 2.0
