"""Hydra discovers the grid sweeper here (``hydra_plugins`` namespace); its config is
``conf/hydra/sweeper/grid.yaml`` and its logic :class:`bertcompress.sweep.GridSweep`."""

from bertcompress.sweep import GridSweep


class GridSweeper(GridSweep):
    """The plugin class Hydra instantiates (it must live in ``hydra_plugins``): see :class:`GridSweep`."""


__all__ = ["GridSweeper"]
