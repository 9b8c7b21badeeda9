# SPDX-License-Identifier: GPL-3.0-or-later
"""The template's identity basis: how heads differ from the neutral one, as a few shapes.

The synthetic engine draws each head as MakeHuman's neutral head moved by identity targets
(`training.sampling.sample_identity`: the macro blend of gender, age, muscle, weight and
ethnicity, plus local modifiers such as nose, chin and jaw shapes). The capture solve can fit a
shot's actor only with shapes it knows, so this draws `count` identities from the training
identity seeds (never the validation ones), takes each head's template vertices, removes the
similarity transform that best maps it onto the neutral head (the solve fits a pose and a scale
per frame anyway), and keeps the leading principal directions of what is left, measured from
the neutral head (not from the sample mean: the solve starts from the neutral head, so the mean's
offset is a shape to fit as well).

Each kept direction is scaled to one standard deviation of the sample along it, so an identity
weight of 1 is a typical head, and a unit Gaussian prior on the weights is the sample's spread.
Deterministic: the same head model and count give the same basis.
"""
from __future__ import annotations

import numpy as np

from .head_model import HeadModel
from .sampling import sample_identity

DEFAULT_COUNT = 1500
DEFAULT_SHAPES = 24
_BATCH = 100


def identity_heads(model: HeadModel, seeds) -> np.ndarray:
    """(len(seeds), Vt, 3) float64 template vertices of the heads of identity `seeds`, eye
    centres at the origin as the renderer places them (expression neutral)."""
    vt = model.template_vertex_count
    base = model.base_vertices()[:vt].astype(np.float64)
    deltas = model.target_deltas[:, :vt].astype(np.float32).reshape(len(model.target_names), -1)
    eyes = np.flatnonzero(model.part_mask("eye_l", "eye_r")[:vt])
    rest_eyes = model.neutral[eyes].astype(np.float64).mean(0)
    out = np.empty((len(seeds), vt, 3))
    for a in range(0, len(seeds), _BATCH):
        weights = np.stack([sample_identity(model, int(s))[0].weights for s in seeds[a:a + _BATCH]])
        heads = base + (weights @ deltas).astype(np.float64).reshape(len(weights), vt, 3)
        out[a:a + _BATCH] = heads - (heads[:, eyes].mean(1) - rest_eyes)[:, None]
    return out


def align_to(reference: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """heads (M, V, 3) each moved by the least-squares similarity onto reference (V, 3)."""
    ref_mean = reference.mean(0)
    ref = reference - ref_mean
    mean = heads.mean(1, keepdims=True)
    centred = heads - mean
    cov = np.einsum("mvi,vj->mij", centred, ref)  # sum_v h_v r_v^T
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    s[:, 2] *= d
    u[:, :, 2] *= d[:, None]
    rot = u @ vt  # maps heads onto the reference: h R
    scale = s.sum(1) / np.einsum("mvi,mvi->m", centred, centred)
    return scale[:, None, None] * centred @ rot + ref_mean


def identity_basis(model: HeadModel, count: int = DEFAULT_COUNT,
                   shapes: int = DEFAULT_SHAPES) -> tuple[np.ndarray, np.ndarray]:
    """(deltas (shapes, Vt, 3) float32 metres, one standard deviation each; explained (shapes,)
    the cumulative share of the sample's variance about the neutral head they carry)."""
    vt = model.template_vertex_count
    neutral = model.neutral[:vt].astype(np.float64)
    heads = align_to(neutral, identity_heads(model, np.arange(count)))
    offsets = (heads - neutral).reshape(count, -1)
    _, sv, directions = np.linalg.svd(offsets, full_matrices=False)
    variance = sv ** 2
    explained = np.cumsum(variance)[:shapes] / variance.sum()
    deltas = directions[:shapes] * (sv[:shapes, None] / np.sqrt(count))
    # a sign convention, so that a rebuild gives the same arrays: each shape's largest move is +
    big = np.abs(deltas).argmax(1)
    deltas *= np.sign(deltas[np.arange(len(deltas)), big])[:, None]
    return deltas.reshape(-1, vt, 3).astype(np.float32), explained
