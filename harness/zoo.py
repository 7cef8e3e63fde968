"""Model architectures that the demo fixtures and the model registry refer to.

Every factory returns a plain :class:`torch.nn.Sequential` built only from standard
modules, so that zennit's ``SequentialMergeBatchNorm`` canonizer finds each
convolution directly followed by its batch norm and a layer-by-layer LRP engine can
walk the modules in order.
"""

from __future__ import annotations

from torch import nn

__all__ = ["small_vgg"]


def small_vgg(
    num_classes: int,
    width: int = 16,
    in_size: int = 64,
    blocks: int = 4,
    hidden: int = 128,
    dropout: float = 0.3,
) -> nn.Sequential:
    """Build a small VGG-style CNN for square RGB images.

    The network is ``blocks`` times Conv2d(3x3) - BatchNorm2d - ReLU - MaxPool2d(2),
    doubling the channels after each block (``width``, ``2*width``, ...), followed by
    Flatten - Linear - ReLU - Dropout - Linear.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    width : int, optional
        Channels of the first convolution; later blocks double it. Default 16.
    in_size : int, optional
        Height and width of the input in pixels; must be divisible by
        ``2 ** blocks``. Default 64.
    blocks : int, optional
        Number of conv-BN-ReLU-pool blocks. Default 4.
    hidden : int, optional
        Units of the hidden fully connected layer. Default 128.
    dropout : float, optional
        Dropout probability before the last linear layer. Default 0.3.

    Returns
    -------
    torch.nn.Sequential
        The untrained model; it expects input of shape ``(N, 3, in_size, in_size)``
        and returns logits of shape ``(N, num_classes)``.

    Raises
    ------
    ValueError
        If an argument is not positive or ``in_size`` is not divisible by
        ``2 ** blocks``.
    """
    if min(num_classes, width, in_size, blocks, hidden) < 1:
        raise ValueError("num_classes, width, in_size, blocks and hidden must be positive")
    if in_size % (2**blocks) != 0:
        raise ValueError(f"in_size={in_size} is not divisible by 2**blocks={2**blocks}")

    layers: list[nn.Module] = []
    in_ch = 3
    for i in range(blocks):
        out_ch = width * 2**i
        # The conv keeps its (redundant) bias so that LRP code which reads
        # ``module.bias`` never meets ``None``, before or after BN merging.
        layers += [
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        in_ch = out_ch
    side = in_size // 2**blocks
    layers += [
        nn.Flatten(),
        nn.Linear(in_ch * side * side, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    ]
    return nn.Sequential(*layers)
