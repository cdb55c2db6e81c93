"""PNG plots of SHAP values and chains, drawn with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["shap_bar", "shap_beeswarm", "interaction_heatmap", "corner", "tau_convergence", "chain_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)
    return path


def shap_bar(result, names: list[str], path: Path) -> Path:
    """Bar plot of mean |SHAP| per parameter, largest on top."""
    pyplot = _pyplot()
    mean = np.abs(result.values).mean(axis=0)
    order = np.argsort(mean)
    figure, axes = pyplot.subplots(figsize=(6, 0.4 * len(names) + 1.5))
    axes.barh([names[i] for i in order], mean[order])
    axes.set_xlabel("mean |SHAP value| (chi2)")
    return _save(figure, path)


def shap_beeswarm(result, names: list[str], path: Path) -> Path:
    """Beeswarm plot: SHAP value per point and parameter, coloured by the unit-cube feature value."""
    pyplot = _pyplot()
    order = np.argsort(np.abs(result.values).mean(axis=0))
    rng = np.random.default_rng(0)
    figure, axes = pyplot.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    for row, i in enumerate(order):
        jitter = rng.uniform(-0.3, 0.3, len(result.values))
        points = axes.scatter(result.values[:, i], row + jitter, c=result.features[:, i], cmap="coolwarm",
                              vmin=0.0, vmax=1.0, s=6)
    axes.set_yticks(range(len(order)), [names[i] for i in order])
    axes.set_xlabel("SHAP value (chi2)")
    figure.colorbar(points, ax=axes, label="feature value (unit cube)")
    return _save(figure, path)


def interaction_heatmap(result, names: list[str], path: Path) -> Path:
    """Heatmap of mean |SHAP interaction| per pair of parameters (main effects on the diagonal)."""
    pyplot = _pyplot()
    mean = np.abs(result.interactions).mean(axis=0)
    figure, axes = pyplot.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
    image = axes.imshow(mean, cmap="viridis")
    axes.set_xticks(range(len(names)), names, rotation=90)
    axes.set_yticks(range(len(names)), names)
    figure.colorbar(image, ax=axes, label="mean |SHAP interaction| (chi2)")
    return _save(figure, path)


def corner(samples: np.ndarray, names: list[str], path: Path) -> Path:
    """Corner plot: 1-D histograms on the diagonal and 2-D histograms below it."""
    pyplot = _pyplot()
    dim = len(names)
    figure, axes = pyplot.subplots(dim, dim, figsize=(2 * dim + 1, 2 * dim + 1), squeeze=False)
    for i in range(dim):
        for j in range(dim):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
            elif i == j:
                ax.hist(samples[:, i], bins=40, histtype="step", color="k")
            else:
                ax.hist2d(samples[:, j], samples[:, i], bins=40, cmap="Greys")
            if i == dim - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    return _save(figure, path)


def tau_convergence(tau_history: list, names: list[str], path: Path) -> Path:
    """Plot tau per parameter against the chain length, with the line n_steps / 50."""
    pyplot = _pyplot()
    history = np.asarray(tau_history, dtype=float)
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for i, name in enumerate(names):
        axes.plot(history[:, 0], history[:, i + 1], marker="o", label=name)
    axes.plot(history[:, 0], history[:, 0] / 50.0, "k--", label="steps / 50")
    axes.set_xlabel("steps")
    axes.set_ylabel("integrated autocorrelation time tau")
    axes.legend()
    return _save(figure, path)


def chain_plots(fit, directory: Path) -> list[Path]:
    """Write the corner plot and the tau convergence of the campaign's latest finished chain, if it has one."""
    from campaign.errors import NotFoundError
    from campaign.store.chains import find_chain, load_samples

    with fit.store.transaction() as session:
        try:
            chain = find_chain(session, fit.id)
        except NotFoundError:
            return []
        _, _, samples, _ = load_samples(session, chain.id, fit.space.dim)
        tau_history = chain.tau_history or []
    names = list(fit.space.names)
    paths = []
    if len(samples):
        paths.append(corner(samples, names, directory / "corner.png"))
    if tau_history:
        paths.append(tau_convergence(tau_history, names, directory / "tau.png"))
    return paths
