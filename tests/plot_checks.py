"""Layout checks of the figures of `idexpo_jax.plotting` for the tests: overprinted text."""

from __future__ import annotations


def text_overlaps(fig, *, tolerance: float = 0.5) -> list[tuple[str, str]]:
  """Pairs of drawn, non-empty texts of `fig` whose window boxes intersect by > `tolerance` px.

  Covers titles, axis and tick labels (ticks inside the view limits only), annotations,
  legends and colorbar labels. An empty list means nothing is overprinted.
  """
  import matplotlib.text
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  hidden = set()
  for ax in fig.axes:
    for axis in (ax.xaxis, ax.yaxis):
      lo, hi = sorted(axis.get_view_interval())
      eps = 1e-9 * max(1.0, abs(hi - lo))
      for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        if not lo - eps <= tick.get_loc() <= hi + eps:
          hidden.update((id(tick.label1), id(tick.label2)))
  boxes = []
  for t in fig.findobj(matplotlib.text.Text):
    if id(t) in hidden or not t.get_visible() or not t.get_text().strip():
      continue
    if any(not a.get_visible() for a in _ancestors(t)):
      continue
    bb = matplotlib.text.Text.get_window_extent(t, renderer)  # the text, not an arrow
    if bb.width <= 0 or bb.height <= 0:
      continue
    boxes.append((t.get_text(), bb))
  pairs = []
  for i in range(len(boxes)):
    for j in range(i + 1, len(boxes)):
      a, b = boxes[i][1], boxes[j][1]
      w = min(a.x1, b.x1) - max(a.x0, b.x0)
      h = min(a.y1, b.y1) - max(a.y0, b.y0)
      if w > tolerance and h > tolerance:
        pairs.append((boxes[i][0], boxes[j][0]))
  return pairs


def _ancestors(artist):
  """The axes and axis objects a text belongs to (a hidden one hides the text)."""
  out = []
  ax = artist.axes
  if ax is not None:
    out.append(ax)
    for axis in (ax.xaxis, ax.yaxis):
      for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        if artist is tick.label1 or artist is tick.label2:
          out += [axis, tick]
  return out
