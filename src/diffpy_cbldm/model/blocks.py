"""Small building blocks shared by the two VAEs: residual blocks,
self-attention, resampling and the diagonal-Gaussian algebra.

No batch normalisation and no dropout anywhere, so a network gives the
same output in train and eval mode.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Downsample1d",
    "Downsample2d",
    "ResBlock1d",
    "ResBlock2d",
    "SelfAttention2d",
    "Upsample1d",
    "Upsample2d",
    "check_pdf_batch",
    "gaussian_kl",
    "group_norm",
    "log_n_nll",
    "reparameterize",
    "split_moments",
]

LOGVAR_RANGE = (-20.0, 10.0)
"""Log-variances are clamped to this range so exp() stays finite."""


def group_norm(channels):
    """Group normalisation with 8 groups when the channels allow it."""
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


class ResBlock1d(nn.Module):
    """Pre-activation residual block of two 3-wide 1-D convolutions."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels_in),
            nn.SiLU(),
            nn.Conv1d(channels_in, channels_out, 3, padding=1),
            group_norm(channels_out),
            nn.SiLU(),
            nn.Conv1d(channels_out, channels_out, 3, padding=1),
        )
        self.skip = (
            nn.Identity()
            if channels_in == channels_out
            else nn.Conv1d(channels_in, channels_out, 1)
        )

    def forward(self, x):  # (B, C_in, N) -> (B, C_out, N)
        return self.skip(x) + self.body(x)


class ResBlock2d(nn.Module):
    """Pre-activation residual block of two 3x3 convolutions."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels_in),
            nn.SiLU(),
            nn.Conv2d(channels_in, channels_out, 3, padding=1),
            group_norm(channels_out),
            nn.SiLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1),
        )
        self.skip = (
            nn.Identity()
            if channels_in == channels_out
            else nn.Conv2d(channels_in, channels_out, 1)
        )

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H, W)
        return self.skip(x) + self.body(x)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the pixels of a feature map."""

    def __init__(self, channels, head_dim=32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):  # (B, C, H, W) -> (B, C, H, W)
        b, c, h, w = x.shape
        q, k, v = (
            self.qkv(self.norm(x))
            .reshape(b, 3, self.heads, c // self.heads, h * w)
            .transpose(-1, -2)
            .unbind(dim=1)
        )  # each (B, heads, H*W, C/heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class Downsample1d(nn.Module):
    """Halve the length with a stride-2 convolution."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, 4, 2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample1d(nn.Module):
    """Double the length: nearest neighbour, then a 3-wide convolution."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample2d(nn.Module):
    """Halve both sides with a stride-2 convolution."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 4, 2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2d(nn.Module):
    """Double both sides: nearest neighbour, then a 3x3 convolution."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def split_moments(h):
    """Split a (B, 2C, ...) tensor into mean and clamped log-variance."""
    mu, logvar = h.chunk(2, dim=1)
    return mu, logvar.clamp(*LOGVAR_RANGE)


def reparameterize(mu, logvar, generator=None):
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``.

    Parameters
    ----------
    mu, logvar : torch.Tensor, same shape
        Mean and log-variance of a diagonal Gaussian.
    generator : torch.Generator, optional
        Source of ``eps``; drawn on the generator's device, then moved.
    """
    device = generator.device if generator is not None else mu.device
    eps = torch.randn(
        mu.shape, generator=generator, device=device, dtype=mu.dtype
    ).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu_q, logvar_q, mu_p=None, logvar_p=None):
    """Elementwise ``KL(N(mu_q, var_q) || N(mu_p, var_p))`` in nats.

    ``0.5 * (var_q / var_p - ln(var_q / var_p) - 1 + (mu_q - mu_p)^2 /
    var_p)``;
    the prior defaults to N(0, 1).

    Returns
    -------
    torch.Tensor, same shape as `mu_q`
        Non-negative; zero exactly where the two Gaussians coincide.
    """
    if mu_p is None:
        mu_p = torch.zeros_like(mu_q)
    if logvar_p is None:
        logvar_p = torch.zeros_like(logvar_q)
    log_ratio = logvar_q - logvar_p
    return 0.5 * (
        torch.exp(log_ratio)
        - log_ratio
        - 1.0
        + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p)
    )


def log_n_nll(log_n, mean, logvar):
    """Gaussian negative log-likelihood of ln n (an atom count) under
    mean and log-variance, without its constant 0.5 ln(2 pi); computed
    in float32."""
    logvar = logvar.float()
    return 0.5 * (logvar + (log_n - mean.float()) ** 2 / torch.exp(logvar))


def check_pdf_batch(pdf, n_points, owner):
    """Raise ValueError unless `pdf` is a batch of normalised PDFs,
    shape (B, n_points); `owner` names the network in the message."""
    if pdf.ndim != 2 or pdf.shape[1] != n_points:
        raise ValueError(
            f"{owner} expects normalised PDFs of shape (B, {n_points}), "
            f"got {tuple(pdf.shape)}"
        )
