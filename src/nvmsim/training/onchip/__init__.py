"""On-chip training with NVM jump-tables (paper 004: Sidler, Boybat, ..., Burr).

Every weight is ``w = w_max * (G+ - G-) / (g_max - g_min)`` on a pair of devices whose
conductances only change by programming pulses drawn from jump-tables
(:mod:`nvmsim.devices.jumptable`). Training is backpropagation as a crossbar would run it,
one example at a time:

1. forward: every layer reads its array, ``a = [x, 1] @ W`` (the bias is a row driven at 1),
   optionally with per-read noise (moment identity over both devices, as in the tiles);
2. backward: ``delta`` of the output (``onehot - softmax``, or ``(t - y) y (1 - y)`` for the
   squared error on sigmoid outputs) is read back through the transposed arrays,
   ``delta_prev = (W[:-1] @ delta) * f'(a_prev)``;
3. update (Burr et al., IEDM 2014, crossbar-compatible): each upstream neuron ``i`` turns its
   activation into ``nx_i = sround(|x_i| * x_pulses)`` pulses and each downstream neuron
   ``j`` turns ``lr * |delta_j|`` into ``nd_j = sround(lr * |delta_j| / (dw * x_pulses))``
   pulses (at most ``d_pulses``), ``dw`` being the weight change of one nominal pulse. The
   upstream neuron fires in time slots ``t`` with ``t mod x_pulses < nx_i``, the downstream
   one in slots with ``t // x_pulses < nd_j``: a device receives a programming pulse only
   where both coincide, i.e. exactly ``nx_i * nd_j`` pulses, on average
   ``lr * |x_i * delta_j| / dw``. No neuron needs anything but its own value; the sign of
   ``x_i * delta_j`` picks the device (and SET or RESET), as the row and column polarities
   would. Stochastic rounding ``sround`` keeps the expectation exact.

Devices (``device``): ``bidirectional`` (SET and RESET; ``pair_update = "both"`` raises
``G+`` and lowers ``G-`` for a positive update, ``"plus"`` moves only ``G+``, ``G-`` being a
fixed reference), ``set_only`` (PCM: a positive update SETs ``G+``, a negative one SETs
``G-``; when either device nears ``g_max`` both are RESET and the difference reprogrammed:
"occasional RESET") and ``float`` (exact software updates ``lr * x * delta`` on the same
network, the reference). Asymmetry compensation fires ``c = SET step / RESET step`` times
the RESET pulses (``fewer_reset``; stochastic rounding with the same deviate as the SET
phase) or ``1/c`` times the SET pulses (``more_set``).

Modules: :mod:`.config` (settings), :mod:`.tables` (jump-tables), :mod:`.mlp` (networks and
activations), :mod:`.rules` (pulse counts of the three update rules), :mod:`.verify`
(program-and-verify), :mod:`.network` (the network on device pairs), :mod:`.train` (the
driver); a study runs it through the ``onchip`` scenario (:mod:`nvmsim.studies.scenarios`).
"""

from nvmsim.training.onchip.config import OnChipConfig, parse_config
from nvmsim.training.onchip.mlp import describe_mlp, init_layers
from nvmsim.training.onchip.network import OnChipNetwork, Stats
from nvmsim.training.onchip.tables import build_tables
from nvmsim.training.onchip.threads import torch_threads
from nvmsim.training.onchip.train import OnChipResult, train_onchip
from nvmsim.training.onchip.verify import program_verify
from nvmsim.training.onchip_plot import plot_jumptable

__all__ = [
    "OnChipConfig",
    "OnChipNetwork",
    "OnChipResult",
    "Stats",
    "build_tables",
    "describe_mlp",
    "init_layers",
    "parse_config",
    "plot_jumptable",
    "program_verify",
    "torch_threads",
    "train_onchip",
]
