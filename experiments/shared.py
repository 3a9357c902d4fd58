"""Shared by the experiment scripts: a row of slopes, and the start options of the committed runs."""

import argparse

import jaxmoe


def block_size(text: str) -> int:
    """argparse type of `--block`: samples per normal-equation block, 'full' (= 0) for one block."""
    if text == "full":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 'full' or an integer >= 1")
    return value


def _comma_list(text: str, cast, allowed, what: str) -> list:
    try:
        values = [cast(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(allowed(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
    return values


def positive_ints(text: str) -> list[int]:
    """argparse type of a comma list of integers >= 1 (e.g. `--lanes 32,128`)."""
    return _comma_list(text, int, lambda v: v >= 1, "comma-separated integers >= 1")


def positive_int(text: str) -> int:
    """argparse type of one integer >= 1 (e.g. `--starts 64`)."""
    values = _comma_list(text, int, lambda v: v >= 1, "an integer >= 1")
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= 1")
    return values[0]


def positive_floats(text: str) -> list[float]:
    """argparse type of a comma list of finite numbers > 0 (e.g. `--eps 1e-3,1e-4`)."""
    return _comma_list(text, float, lambda v: 0 < v < float("inf"), "comma-separated finite numbers > 0")


def committed_starts(overfitted: bool) -> dict:
    """fit_curve's start options of every run committed before its default changed (1 start for k = k*, best of
    4 near-truth splits for k > k*, noise 0.1): the experiment scripts pin them so that their commands keep
    reproducing the committed results (experiments/README.md, "how many starts?", has the new default)."""
    return dict(restarts=4 if overfitted else 1, init_noise=0.1)


def slope_row(sizes, metrics: dict) -> dict:
    """{metric: {slope, ci, median_slope}} (slopes of the mean with a bootstrap CI, and of the median), rounded."""
    row = {}
    for name, values in metrics.items():
        s = jaxmoe.loglog_slope(sizes, values.T)
        row[name] = dict(slope=round(s.slope, 3), ci=[round(s.ci_low, 3), round(s.ci_high, 3)],
                         median_slope=round(jaxmoe.loglog_slope(sizes, values.T, "median").slope, 3))
    return row
