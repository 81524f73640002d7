"""The statistics every report shares: aggregates over seeds (mean, IQM), bootstrap confidence intervals (plain,
stratified as rliable does, of a difference), rank correlations and ``json_safe``.

Every resample comes from ``np.random.default_rng(seed)`` drawing the samples in argument order, so a CI is the
same number on every run and in every committed result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half after dropping the lowest and highest
    ``floor(n / 4)`` values, as ``scipy.stats.trim_mean(values, 0.25)`` (what rliable computes).
    For n < 4 nothing is dropped (it is the mean)."""
    x = np.moveaxis(np.sort(np.asarray(values, dtype=np.float64), axis=axis), axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("iqm of no values")
    cut = int(0.25 * n)
    return x[..., cut : n - cut].mean(-1)


def mean(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """The plain mean (the other aggregate)."""
    return np.asarray(values, dtype=np.float64).mean(axis)


AGGREGATES: dict[str, Callable] = {"mean": mean, "iqm": iqm}


def mean_std(values: Sequence[float | None]) -> dict:
    """Mean and sample std of the values that exist, and how many (None: a constant predictor has no correlation)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return {"mean": float(np.mean(present)), "std": std, "n": len(present)}


def resample(values: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` resamples of ``values`` with replacement, each as long as ``values``: ``(reps, n)``."""
    return values[rng.integers(0, values.size, size=(reps, values.size))]


def percentile_ci(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates: ``(low, high)``."""
    alpha = (1 - confidence) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))


def stratified_bootstrap(
    strata: Sequence[Sequence[float]], statistic: Callable = mean, reps: int = 2000, seed: int = 0
) -> np.ndarray:
    """Bootstrap replicates of ``statistic`` over the values of all strata, float64 ``(reps,)``.

    Each replicate draws, within every stratum (e.g. the runs of one task) independently, as many values
    as the stratum has, with replacement, and applies ``statistic`` (called with an array
    ``(reps, total values)`` and ``axis=-1``) to the union of the draws. Resampling within strata keeps
    every task's share fixed, as rliable's ``StratifiedBootstrap`` does.
    """
    rng = np.random.default_rng(seed)
    draws = []
    for stratum in strata:
        values = np.asarray(stratum, dtype=np.float64)
        if values.size == 0:
            raise ValueError("a stratum has no values")
        draws.append(resample(values, reps, rng))
    return np.asarray(statistic(np.concatenate(draws, axis=1), axis=-1), dtype=np.float64)


def stratified_bootstrap_ci(
    strata: Sequence[Sequence[float]],
    statistic: Callable = mean,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval ``(low, high)`` of ``statistic`` from ``stratified_bootstrap``."""
    return percentile_ci(stratified_bootstrap(strata, statistic, reps, seed), confidence)


def bootstrap_ci(
    values: np.ndarray, confidence: float = 0.95, samples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean: ``(low, high)``; NaNs for no values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return stratified_bootstrap_ci([values], mean, confidence, samples, seed)


def difference_ci(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, samples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``mean(a) - mean(b)`` (independent resamples): ``(low, high)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    return percentile_ci(resample(a, samples, rng).mean(1) - resample(b, samples, rng).mean(1), confidence)


def verdict(a: np.ndarray, b: np.ndarray) -> tuple[str, tuple[float, float]]:
    """Whether ``a`` 'beats', is 'within noise of' or 'falls short of' ``b`` by the 95% CI of the difference of
    their means (not by comparing the means alone), and that CI."""
    low, high = difference_ci(a, b)
    return ("beats" if low > 0 else "falls short of" if high < 0 else "is within noise of"), (low, high)


@dataclass(frozen=True)
class Estimate:
    """An aggregate over runs with its confidence interval."""

    value: float
    low: float
    high: float
    runs: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "runs": self.runs}


@dataclass(frozen=True)
class Stats:
    """How results are aggregated over seeds: ``agg`` ('mean' or 'iqm'), the CI's confidence, resamples."""

    agg: str = "mean"
    confidence: float = 0.95
    reps: int = 2000
    seed: int = 0

    def estimate(self, strata: Sequence[Sequence[float]]) -> Estimate:
        """The aggregate of all strata's values and its stratified-bootstrap CI."""
        statistic = AGGREGATES[self.agg]
        values = np.concatenate([np.asarray(s, dtype=np.float64) for s in strata])
        low, high = stratified_bootstrap_ci(strata, statistic, self.confidence, self.reps, self.seed)
        return Estimate(float(statistic(values)), low, high, len(values))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of ``values``, ties sharing their mean rank (float64 ``(n,)``)."""
    values = np.asarray(values, dtype=np.float64)
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / counts)[group]


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation, or None when fewer than two points or either variable is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum() / denominator) if denominator > 0 else None


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(average_ranks(x), average_ranks(y))


def pair_accuracy(predicted: np.ndarray, true: np.ndarray) -> float | None:
    """Over all pairs with different true value: 1 if ordered alike, 1/2 if the prediction ties, else 0."""
    predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    true_order = np.sign(true[:, None] - true[None, :])
    agree = np.sign(predicted[:, None] - predicted[None, :]) * true_order  # 1 alike, 0 tie, -1 opposite
    counted = np.triu(true_order != 0, k=1)
    if not counted.any():
        return None
    return float(((agree[counted] + 1) / 2).mean())


def json_safe(value):
    """``value`` with every NaN and infinity (in nested dicts, lists and tuples) as None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
