"""bertcompress: fine-tune, distill, prune and quantize BERT-family text classifiers, and measure it."""

from omegaconf import OmegaConf

__version__ = "0.1.0"


def run_name(teacher: str, student: str = "none", compression: str = "none") -> str:
    """Readable run name: ``mbert→distil_mbert_mini+prune_quant``; parts that are ``none`` are left out."""
    name = teacher if student in (None, "none") else f"{teacher}→{student}"
    return name if compression in (None, "none") else f"{name}+{compression}"


if not OmegaConf.has_resolver("run_name"):
    OmegaConf.register_new_resolver("run_name", run_name)
