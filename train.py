"""Entry point: `python train.py [overrides]` (or `-m` for a sweep). Composes the config and runs.

All the logic lives in `bertcompress.pipeline`; see `conf/train.yaml` for the config groups.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from dotenv import load_dotenv
from omegaconf import DictConfig

import bertcompress  # noqa: F401  (registers the OmegaConf resolvers the configs use)

load_dotenv()  # .env: WANDB_*, HF_HOME, BERTCOMPRESS_DATA_DIR (see .env.example)
# paths.root_dir: logs/, .cache/ and ../shared/data resolve from here, whatever the cwd
os.environ.setdefault("BERTCOMPRESS_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from bertcompress.errors import disk_full, exit_with_message, user_input_errors
    from bertcompress.pipeline import metric_value, run_job

    try:
        results = run_job(cfg)
    except user_input_errors() as e:  # bad data or config: the message as the last line, the traceback in the log
        raise exit_with_message(e) from e
    except Exception as e:
        if (full := disk_full(e)) is None:
            raise
        raise exit_with_message(full) from e
    return metric_value(results, cfg.get("optimized_metric"))  # what an Optuna sweep optimises


if __name__ == "__main__":
    main()
