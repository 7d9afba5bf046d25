"""Style statistics: what a painting's style leaves in a network's earlier layers, pooled into the embedding.

Global average pooling of the last layer keeps *what* is painted and discards most of *how*. The
per-channel mean and standard deviation of earlier stages' activations are the texture statistics
of neural style transfer (Gatys et al. 2016; the diagonal of the Gram matrix, Huang & Belongie
2017), and style classifiers that read several depths beat the last layer alone (Karayev et al.
2014; Lecoutre et al. 2017; Chen et al. 2021). `pooling: style` appends them for every backbone
block but the last, whose output the body pools already.
"""

from __future__ import annotations

import torch
from torch import nn


def block_output(block: nn.Module) -> nn.Module:
    """The module whose output is the block's output and which the body itself calls.

    Backbone.blocks may be Sequential wrappers the body never calls (ResNet's stem + layer1,
    EfficientNet-Lite's stages); their last child is called by the body and ends the block."""
    return list(block.children())[-1] if isinstance(block, nn.Sequential) else block


class StyleStatistics(nn.Module):
    """body(x) followed by [mean, std] over space of each tapped block's activations, concatenated."""

    def __init__(self, body: nn.Module, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.body = body
        self.taps = [block_output(b) for b in blocks[:-1]]  # a plain list: these are body's own modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handles = [tap.register_forward_hook(lambda _m, _i, out: captured.append(out)) for tap in self.taps]
        try:  # hooks live only for this call, so copies of the model (attribution) carry none
            pooled = self.body(x)
        finally:
            for handle in handles:
                handle.remove()
        stats = [torch.cat([a.mean((2, 3)), (a.var((2, 3), correction=0) + 1e-6).sqrt()], 1) for a in captured]
        return torch.cat([pooled, *stats], 1)


def style_dim(body: nn.Module, blocks: list[nn.Module]) -> int:
    """Embedding size with style statistics: the pooled features plus 2 x the channels of every tapped block."""
    probe = StyleStatistics(body, blocks)
    was_training = body.training
    body.eval()
    with torch.no_grad():
        dim = probe(torch.zeros(1, 3, 64, 64)).shape[1]
    body.train(was_training)
    return int(dim)
