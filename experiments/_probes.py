"""Shared by the probe scripts: one fit_curve's metrics as a printable row of slopes."""

import jaxmoe


def slope_row(sizes, metrics: dict) -> dict:
    """{metric: {slope, ci, median_slope}} (slopes of the mean with a bootstrap CI, and of the median), rounded."""
    row = {}
    for name, values in metrics.items():
        s = jaxmoe.loglog_slope(sizes, values.T)
        row[name] = dict(slope=round(s.slope, 3), ci=[round(s.ci_low, 3), round(s.ci_high, 3)],
                         median_slope=round(jaxmoe.loglog_slope(sizes, values.T, "median").slope, 3))
    return row
