"""plastix: biologically plausible learning in spiking networks.

Sub-packages (see DESIGN.md): ``circuits`` (Brian2 building blocks and backends),
``plasticity`` (learning rules and the HSIC/IB maths), ``reservoirs`` (echo-state
networks and the ξ-modulator), ``bridges`` (torch side: rate networks, snntorch,
NIR, tangent-ensemble optimizer, dynamic pruning) and ``sims`` (experiments,
datasets, HDF5 results, CLI, sweeps, plots).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("plastix")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
