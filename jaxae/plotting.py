"""NumPy in, matplotlib `Figure` out (no pyplot state, so it works headless and in notebooks)."""

import numpy as np
from matplotlib.figure import Figure

DPI = 80  # shown in notebooks at this resolution (small stored outputs); `savefig(dpi=...)` chooses its own


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
  """Tiles `[N, H, W, C]` images into a `[rows*H, cols*W, C]` array (1px gaps, blank padding)."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  rows = -(-n // cols)
  grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w] = img
  return grid


def _show(ax, grid: np.ndarray, title: str) -> None:
  if grid.shape[-1] == 1:
    ax.imshow(grid[..., 0], cmap='gray', vmin=0, vmax=1)
  else:
    ax.imshow(np.clip(grid, 0, 1))
  ax.set_title(title)
  ax.axis('off')


def image_rows(rows: dict[str, np.ndarray], cols: int = 16) -> Figure:
  """One titled panel per entry of `rows` (`title -> [N, H, W, C]` images), stacked, column for column."""
  grids = {title: image_grid(images, cols) for title, images in rows.items()}
  first = next(iter(grids.values()))
  width = cols * 0.6
  fig = Figure(figsize=(width, len(grids) * (width * first.shape[0] / first.shape[1] + 0.45)), dpi=DPI)
  for ax, (title, grid) in zip(np.atleast_1d(fig.subplots(len(grids), 1)), grids.items(), strict=True):
    _show(ax, grid, title)
  fig.tight_layout()
  return fig


def reconstructions(originals: np.ndarray, recons: np.ndarray, cols: int = 16) -> Figure:
  """Originals above, their reconstructions below, column for column."""
  return image_rows({'originals': originals, 'reconstructions': recons}, cols)


def samples(images: np.ndarray, cols: int = 8, title: str = 'samples from p(z)') -> Figure:
  grid = image_grid(images, cols)
  width = cols * 0.7
  fig = Figure(figsize=(width, width * grid.shape[0] / grid.shape[1] + 0.5), dpi=DPI)
  _show(fig.subplots(), grid, title)
  fig.tight_layout()
  return fig


def loss_curves(records: list[dict], keys: tuple[str, ...] = ('loss',)) -> Figure:
  """Each metric in `keys` against epoch, one panel per metric, a line per split (metrics.jsonl records).

  The y-axis fits the epochs after 0, so the untrained epoch-0 evaluation does
  not squash the curve; when it lies outside, its value is written at the edge.
  """
  fig = Figure(figsize=(4 * len(keys), 3.2), dpi=DPI)
  for ax, key in zip(np.atleast_1d(fig.subplots(1, len(keys))), keys, strict=True):
    later = [r[key] for r in records if key in r and r['epoch'] > 0 and np.isfinite(r[key])]
    lo, hi = (min(later), max(later)) if later else (0.0, 0.0)
    pad = 0.1 * (hi - lo) or 0.05 * abs(hi) or 1.0 if later else 0.0
    for split in sorted({r['split'] for r in records}):
      points = [(r['epoch'], r[key]) for r in records if r['split'] == split and key in r]
      if points:
        ax.plot(*zip(*points, strict=True), marker='.' if len(points) <= 50 else None, label=split)
      start = [v for e, v in points if e == 0]
      if later and start and not lo - pad <= start[0] <= hi + pad:
        edge = hi + pad if start[0] > hi else lo - pad
        ax.annotate(f'epoch 0: {start[0]:.4g}', (0, edge), xytext=(4, -12 if start[0] > hi else 4),
                    textcoords='offset points', fontsize=8)
    if later:
      ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel('epoch')
    ax.set_ylabel(f'{key} (per example)')
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def _scatter_codes(ax, z: np.ndarray, labels: np.ndarray, log_density, title: str):
  z, labels = np.asarray(z), np.asarray(labels)
  lo, hi = np.percentile(z, 0.5, axis=0), np.percentile(z, 99.5, axis=0)
  pad = 0.15 * (hi - lo) + 1e-3
  lo, hi = lo - pad, hi + pad
  if log_density is not None:
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=-1).astype(np.float32)
    density = np.exp(np.asarray(log_density(grid))).reshape(gx.shape)
    ax.contourf(gx, gy, density, levels=12, cmap='Greys', alpha=0.6, antialiased=False)
  points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap='tab10', s=7, vmin=-0.5, vmax=9.5, linewidths=0)
  ax.set_xlim(lo[0], hi[0])
  ax.set_ylim(lo[1], hi[1])
  ax.set_title(title)
  return points


def code_panels(panels: dict[str, tuple], cols: int = 4) -> Figure:
  """Scatters of 2-D codes side by side, one per entry `title -> (z [N, 2], labels [N], log_density or None)`:
  points coloured by label (0-9) over `exp(log_density(grid))`, where given (e.g. an AAE's prior).

  `log_density` maps `[M, 2]` points to `[M]` log-densities.
  """
  rows = -(-len(panels) // cols)
  cols = min(cols, len(panels))
  fig = Figure(figsize=(3.6 * cols + 1.0, 3.3 * rows), layout='constrained', dpi=DPI)
  axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
  for ax, (title, (z, labels, log_density)) in zip(axes, panels.items(), strict=False):
    points = _scatter_codes(ax, z, labels, log_density, title)
  for ax in axes[len(panels):]:
    ax.axis('off')
  fig.colorbar(points, ax=axes.tolist(), ticks=range(10), label='label')
  return fig


def codes(z: np.ndarray, labels: np.ndarray, log_density=None, title: str = 'test codes by label') -> Figure:
  """A scatter of 2-D codes `z: [N, 2]` coloured by `labels: [N]`, over `exp(log_density(grid))` if given."""
  return code_panels({title: (z, labels, log_density)})


def histogram(fractions: np.ndarray, reference: np.ndarray | None = None, title: str = 'predicted class of samples'
              ) -> Figure:
  """Bars of class fractions `[K]`, beside a reference `[K]` (e.g. held-out labels) if given."""
  k = np.arange(len(fractions))
  fig = Figure(figsize=(5, 3), dpi=DPI)
  ax = fig.subplots()
  width = 0.4 if reference is not None else 0.8
  ax.bar(k - (width / 2 if reference is not None else 0), fractions, width, label='samples')
  if reference is not None:
    ax.bar(k + width / 2, reference, width, label='held-out labels', alpha=0.7)
    ax.legend()
  ax.set_xticks(k)
  ax.set_xlabel('class')
  ax.set_ylabel('fraction')
  ax.set_title(title)
  fig.tight_layout()
  return fig


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = 'ROC') -> Figure:
  """ROC curves `label -> (false positive rates, true positive rates, AUROC)`, with the chance diagonal."""
  fig = Figure(figsize=(5, 4.5), dpi=DPI)
  ax = fig.subplots()
  for label, (fpr, tpr, auc) in curves.items():
    ax.plot(fpr, tpr, label=f'{label} ({auc:.3f})')
  ax.plot([0, 1], [0, 1], 'k:', lw=1)
  ax.set_xlabel('false positive rate')
  ax.set_ylabel('true positive rate')
  ax.set_title(title)
  ax.legend(fontsize=7, title='anomaly (AUROC)', title_fontsize=7)
  fig.tight_layout()
  return fig


def lines(x, series: dict[str, np.ndarray], xlabel: str, ylabel: str, title: str = '', logx: bool = False
          ) -> Figure:
  """One line per entry of `series` (`label -> values [len(x)]`) against `x`, with markers."""
  fig = Figure(figsize=(5.5, 3.5), dpi=DPI)
  ax = fig.subplots()
  for label, values in series.items():
    ax.plot(x, values, marker='o', label=label)
  if logx:
    ax.set_xscale('log')
    ax.minorticks_off()
  ax.set_xticks(list(x), [f'{v:g}' for v in x])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def bars(values: dict[str, float], errors: dict[str, float] | None = None, ylabel: str = '', title: str = '',
         lowest: float | None = None) -> Figure:
  """One horizontal bar per entry of `values` (`label -> value`), in order from the top, with `errors` as error
  bars (e.g. one standard error); the axis starts at `lowest` (default: a little under the smallest value)."""
  labels = list(values)
  fig = Figure(figsize=(8.5, 0.4 * len(labels) + 1.2), dpi=DPI)
  ax = fig.subplots()
  y = np.arange(len(labels))[::-1]
  v = np.array([values[k] for k in labels], np.float64)
  err = None if errors is None else np.array([errors.get(k, 0.0) for k in labels], np.float64)
  ax.barh(y, v, xerr=err, color='tab:blue', alpha=0.8, capsize=3)
  ax.set_yticks(y, labels)
  low = float(np.min(v)) - 0.1 * float(np.ptp(v) or 1.0) if lowest is None else lowest
  ax.set_xlim(low, float(np.max(v + (0 if err is None else err))) + 0.12 * float(np.ptp(v) or 1.0))
  for yi, vi, ei in zip(y, v, np.zeros_like(v) if err is None else err, strict=True):
    ax.text(vi + ei, yi, f' {vi:.1f}', va='center', fontsize=8)  # right of the error bar
  ax.set_xlabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3, axis='x')
  fig.tight_layout()
  return fig


def heatmap(values: np.ndarray, rows: list, cols: list, xlabel: str, ylabel: str, title: str = '') -> Figure:
  """A `[len(rows), len(cols)]` table of values as colours, each cell written (NaN cells left blank)."""
  values = np.asarray(values, np.float64)
  fig = Figure(figsize=(0.75 * len(cols) + 2.5, 0.45 * len(rows) + 1.6), dpi=DPI)
  ax = fig.subplots()
  image = ax.imshow(np.ma.masked_invalid(values), cmap='viridis', aspect='auto')
  for (i, j), v in np.ndenumerate(values):
    if np.isfinite(v):
      ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=7, color='white' if v < np.nanmean(values)
              else 'black')
  long = max(len(str(c)) for c in cols) > 3
  ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=30 if long else 0, ha='right' if long else 'center')
  ax.set_yticks(range(len(rows)), [str(r) for r in rows])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  return fig
