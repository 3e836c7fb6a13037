"""bertcompress: fine-tune, distill, prune and quantize BERT-family text classifiers, and measure it."""

from omegaconf import OmegaConf

from bertcompress.utils.logs import quiet_known_noise

__version__ = "0.1.0"
quiet_known_noise()  # third-party lines that tell a user nothing (bertcompress.utils.logs), before they are printed


def run_name(teacher: str, student: str = "none", compression: str = "none") -> str:
    """Readable run name: ``mbert→distil_mbert_mini+prune_quant``; parts that are ``none`` are left out."""
    name = teacher if student in (None, "none") else f"{teacher}→{student}"
    return name if compression in (None, "none") else f"{name}+{compression}"


def wandb_name(run_name: str, seed, student_seed=None, compression_seed=None) -> str:
    """The W&B run name: ``run_name``, plus ``student.seed=S`` when the student's seed differs from the run's,
    and ``compression.seed=S`` when set (runs that differ only in such a seed then have different names)."""
    name = str(run_name)
    if student_seed is not None and str(student_seed) != str(seed):
        name += f" student.seed={student_seed}"
    if compression_seed is not None:
        name += f" compression.seed={compression_seed}"
    return name


def run_tags(
    teacher: str, student: str, compression: str, data: str, seed, student_seed=None, extra=(), compression_seed=None
) -> list:
    """Every run's W&B tags: ``teacher:…``, ``student:…``, ``compression:…``, ``data:…``, ``seed:…``,
    ``student_seed:…`` (with a student) and ``compression_seed:…`` (when set), then the ``tags`` an
    experiment or the command line adds."""
    tags = [f"teacher:{teacher}", f"student:{student}", f"compression:{compression}", f"data:{data}", f"seed:{seed}"]
    if student not in (None, "none") and student_seed is not None:
        tags.append(f"student_seed:{student_seed}")
    if compression_seed is not None:
        tags.append(f"compression_seed:{compression_seed}")
    return tags + [str(t) for t in (extra or ()) if str(t) not in tags]


def is_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``); False in a single run or with no Hydra context."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001  (no Hydra context: a plain call)
        return False


def wandb_group(task_name: str, sweep_name: str) -> str:
    """W&B group: ``<task_name>/<sweep_name>`` for the jobs of a multirun, ``task_name`` for a single run."""
    return f"{task_name}/{sweep_name}" if is_multirun() else str(task_name)


def threads_per_job(threads: int) -> int:
    """Torch threads for one job: ``threads``, but never more than this machine's cores divided by the
    jobs a parallel launcher runs at once (``hydra/launcher=joblib``, ``hydra.launcher.n_jobs``; -1 = one
    job per core), so that parallel jobs do not oversubscribe the cores."""
    import os

    threads, cores = int(threads), os.cpu_count() or 1
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            n_jobs = HydraConfig.get().launcher.get("n_jobs")
            if n_jobs is not None:
                n_jobs = cores if int(n_jobs) < 0 else int(n_jobs)
                return max(1, min(threads, cores // max(1, n_jobs)))
    except Exception:  # noqa: BLE001  (no Hydra context)
        pass
    return threads


def by_accelerator(accelerator: str, gpu_value, cpu_value):
    """``gpu_value`` when ``accelerator`` is a GPU (``gpu``, ``cuda``, or ``auto`` on a CUDA machine), else
    ``cpu_value``: ``hardware=ddp`` picks mixed precision on GPUs and fp32 with ``trainer.accelerator=cpu``."""
    if str(accelerator) == "auto":
        import torch

        return gpu_value if torch.cuda.is_available() else cpu_value
    return gpu_value if str(accelerator) in ("gpu", "cuda") else cpu_value


def cpu_share(processes: int) -> int:
    """Torch threads for one of ``processes`` processes sharing this machine's cores (at least 1)."""
    import os

    return max(1, (os.cpu_count() or 1) // max(1, int(processes)))


# overrides that never name a job dir: where things are written, how they are logged, sweep settings
_NOT_IN_DIRNAME = (
    "hydra.",
    "hydra/",
    "paths.",
    "logger",
    "sweep_name",
    "experiment",
    "skip_finished",
    "sweep_preflight",
)


_DIRNAME_MAX = 200  # characters of a job dir name (filesystems allow 255 bytes; Bengali values take 3 each)
_VALUE_MAX = 40  # a longer value (a path, a list) is shown by its hash


def _short_override(override: str, keys: list[str]) -> str:
    """``key=value`` with the key cut to its last dotted parts that no other swept key shares, e.g.
    ``compression.pruning.amount=0.3`` -> ``amount=0.3``, and a long value replaced by its hash."""
    import hashlib

    key, sep, value = override.partition("=")
    parts = key.lstrip("~").split(".")
    short = parts[-1]
    for n in range(1, len(parts) + 1):
        short = ".".join(parts[-n:])
        if sum(k.lstrip("~").split(".")[-n:] == parts[-n:] for k in keys) == 1:
            break
    if len(value) > _VALUE_MAX:
        value = "#" + hashlib.sha256(value.encode()).hexdigest()[:8]
    prefix = "~" if key.startswith("~") else ""
    return f"{prefix}{short}={value}" if sep else f"{prefix}{short}"


def job_dirname(overrides) -> str:
    """A sweep job's dir name from its overrides (``hydra.overrides.task``): the config-group choices in
    order, e.g. ``compression=prune,student=cnn``, then every other override with its value, its key cut
    to what tells it apart (``amount=0.3``), so that the dir says what was swept. A value over 40
    characters is shown by its hash, and what does not fit in 200 characters goes into one short hash
    of the rest (``+1a2b3c4d``), so the name stays stable and within what filesystems allow.

    An appended or forced key (``+key=v``, ``++key=v``) names the dir like ``key=v``; a deletion
    (``~key``) shows as ``~key``."""
    import hashlib

    keys = (str(o).lstrip("+") for o in overrides)
    kept = sorted(k for k in keys if not k.lstrip("~").startswith(_NOT_IN_DIRNAME))
    choices = [o for o in kept if "." not in o.split("=", 1)[0] and not o.startswith("~")]
    rest = [o for o in kept if o not in choices]
    rest_keys = [o.split("=", 1)[0] for o in rest]
    shown = [*choices, *(_short_override(o, rest_keys) for o in rest)]
    name, hidden = "", []
    for part, full in zip(shown, [*choices, *rest], strict=True):
        candidate = f"{name},{part}" if name else part
        if len(candidate) <= _DIRNAME_MAX - 9:  # room for the hash of what is left out
            name = candidate
        else:
            hidden.append(full)
    name = name or "job"
    if hidden:
        name += "+" + hashlib.sha256("\n".join(hidden).encode()).hexdigest()[:8]
    return name.replace("/", "_")


for _name, _fn in (
    ("run_name", run_name),
    ("wandb_name", wandb_name),
    ("run_tags", run_tags),
    ("wandb_group", wandb_group),
    ("threads_per_job", threads_per_job),
    ("job_dirname", job_dirname),
    ("by_accelerator", by_accelerator),
    ("cpu_share", cpu_share),
):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
