#!/usr/bin/env python3
"""Writes the scipy reference vectors read by analyzer/tests/vectors.rs.

Run from anywhere: `python3 analyzer/tests/vectors/generate.py` (needs scipy and numpy; the Rust
tests only read the JSON). Every vector records the scipy call that produced it in "call".
Inputs are fixed by seeds, so re-running gives the same files for the same scipy version.
"""
import itertools
import json
import pathlib

import numpy as np
import scipy
from scipy import stats

OUT = pathlib.Path(__file__).resolve().parent
rng = np.random.default_rng(20261123)


def lat(n, scale=50.0, sigma=0.6, decimals=3):
    """Log-normal latencies in ms; few decimals create ties."""
    return [float(v) for v in np.round(rng.lognormal(np.log(scale), sigma, n), decimals)]


def write(name, vectors):
    doc = {"scipy_version": scipy.__version__, "numpy_version": np.__version__, "vectors": vectors}
    (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{name}: {len(vectors)} vectors")


def mannwhitneyu():
    cases = [
        ("small-exact", lat(5), lat(7, 60.0)),
        ("small-exact-unequal", lat(3), lat(12, 70.0)),
        ("exact-8x20", lat(8), lat(20, 45.0)),
        ("large-continuous", lat(40), lat(55, 58.0)),
        ("ties-rounded", lat(30, decimals=0), lat(25, 55.0, decimals=0)),
        ("heavy-ties", [float(v) for v in rng.integers(1, 5, 40)], [float(v) for v in rng.integers(1, 6, 33)]),
        ("small-with-ties", [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0, 5.0]),
        ("shifted-big", lat(200), lat(180, 75.0)),
    ]
    out = []
    for name, x, y in cases:
        for alternative in ["two-sided", "less", "greater"]:
            for method in ["auto", "exact", "asymptotic"]:
                has_ties = len(set(x + y)) < len(x) + len(y)
                if method == "exact" and (has_ties or min(len(x), len(y)) > 20):
                    continue
                for cont in ([True, False] if method == "asymptotic" else [True]):
                    r = stats.mannwhitneyu(x, y, use_continuity=cont, alternative=alternative, method=method)
                    out.append(dict(name=name, x=x, y=y, alternative=alternative, method=method,
                                    use_continuity=cont, statistic=float(r.statistic), pvalue=float(r.pvalue),
                                    call=f"scipy.stats.mannwhitneyu(x, y, use_continuity={cont}, "
                                         f"alternative='{alternative}', method='{method}')"))
    write("mannwhitneyu", out)


def u_cdf_bruteforce(m, n):
    """Exact P(U <= u) by enumerating rank sets (independent of the Rust recurrence)."""
    counts = np.zeros(m * n + 1)
    for ranks in itertools.combinations(range(1, m + n + 1), m):
        counts[sum(ranks) - m * (m + 1) // 2] += 1
    return np.cumsum(counts) / counts.sum()


def hodges_lehmann():
    """Reference: numpy median/order statistics of all pairwise differences y_j - x_i.

    k (1-based) of the interval [D_(k), D_(mn+1-k)]: exact = largest k >= 1 with
    P(U <= k-1) <= alpha/2 (brute-force U distribution); asymptotic =
    floor(mn/2 + 0.5 - norm.ppf(1-alpha/2) * sigma) with the tie-corrected sigma of mannwhitneyu.
    """
    cases = [
        ("exact-5x7", lat(5), lat(7, 65.0), 0.95),
        ("exact-6x8", lat(6), lat(8, 55.0), 0.98),
        ("exact-tiny", lat(3), lat(4, 70.0), 0.9),
        ("asymptotic-30x40", lat(30), lat(40, 60.0), 0.98),
        ("asymptotic-ties", lat(50, decimals=0), lat(45, 52.0, decimals=0), 0.98),
        ("asymptotic-even", lat(20), lat(30, 50.0), 0.95),
    ]
    out = []
    for name, x, y, conf in cases:
        m, n = len(x), len(y)
        d = np.sort(np.subtract.outer(np.array(y), np.array(x)).ravel())
        alpha = 1 - conf
        has_ties = len(set(x + y)) < m + n
        if min(m, n) <= 8 and not has_ties:
            cdf = u_cdf_bruteforce(m, n)
            k = 1
            while k < m * n // 2 + 1 and cdf[k] <= alpha / 2:
                k += 1
            method = "exact"
        else:
            _, t = np.unique(np.array(x + y), return_counts=True)
            N = m + n
            sigma = np.sqrt(m * n / 12 * ((N + 1) - np.sum(t**3 - t) / (N * (N - 1))))
            k = max(1, int(np.floor(m * n / 2 + 0.5 - stats.norm.ppf(1 - alpha / 2) * sigma)))
            method = "asymptotic"
        out.append(dict(name=name, control=x, experiment=y, confidence=conf, method=method, k=k,
                        estimate=float(np.median(d)), lower=float(d[k - 1]), upper=float(d[m * n - k]),
                        call="numpy.median(numpy.subtract.outer(y, x)); order statistics (see docstring)"))
    write("hodges_lehmann", out)


def ttest():
    cases = [
        ("equal-n", lat(30), lat(30, 55.0)),
        ("unequal-n-var", lat(12, sigma=0.2), lat(50, 60.0, sigma=0.9)),
        ("tiny", [1.0, 2.0, 4.0], [3.0, 5.0, 9.0, 11.0]),
        ("far-tail", lat(80, sigma=0.1), lat(70, 80.0, sigma=0.1)),
    ]
    out = []
    for name, x, y in cases:
        for alternative in ["two-sided", "less", "greater"]:
            r = stats.ttest_ind(x, y, equal_var=False, alternative=alternative)
            out.append(dict(name=name, x=x, y=y, alternative=alternative, statistic=float(r.statistic),
                            pvalue=float(r.pvalue), df=float(r.df),
                            call=f"scipy.stats.ttest_ind(x, y, equal_var=False, alternative='{alternative}')"))
    write("ttest_welch", out)


def fisher():
    tables = [[[3, 97], [12, 88]], [[0, 50], [4, 46]], [[1, 9], [11, 3]], [[5, 5], [5, 5]],
              [[20, 980], [35, 1965]], [[2, 0], [0, 2]], [[7, 12], [3, 40]]]
    out = []
    for t in tables:
        for alternative in ["two-sided", "less", "greater"]:
            r = stats.fisher_exact(t, alternative=alternative)
            # JSON has no infinity: an infinite odds ratio is written as the string "inf".
            stat = "inf" if np.isinf(r.statistic) else float(r.statistic)
            out.append(dict(table=t, alternative=alternative, statistic=stat, pvalue=float(r.pvalue),
                            call=f"scipy.stats.fisher_exact(table, alternative='{alternative}')"))
    write("fisher_exact", out)


def proportions():
    """z from the pooled formula (numpy); p two-sided = chi2_contingency(correction=False).pvalue,
    one-sided = norm.sf(z) ('greater') / norm.cdf(z) ('less')."""
    cases = [(12, 1000, 30, 1000), (3, 250, 1, 400), (480, 1000, 520, 1000), (40, 5000, 90, 5000)]
    out = []
    for x1, n1, x2, n2 in cases:
        p = (x1 + x2) / (n1 + n2)
        z = (x1 / n1 - x2 / n2) / np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
        chi = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
        for alternative, pv in [("two-sided", chi.pvalue), ("greater", stats.norm.sf(z)), ("less", stats.norm.cdf(z))]:
            out.append(dict(x1=x1, n1=n1, x2=x2, n2=n2, alternative=alternative, statistic=float(z), pvalue=float(pv),
                            call="chi2_contingency([[x1,n1-x1],[x2,n2-x2]], correction=False) / norm.sf / norm.cdf"))
    write("proportions_z", out)


def wilson():
    out = []
    for k, n, c in [(0, 50, 0.95), (3, 100, 0.95), (50, 50, 0.9), (17, 40, 0.99), (1, 10000, 0.98)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=c, method="wilson")
        out.append(dict(k=k, n=n, confidence=c, low=float(ci.low), high=float(ci.high),
                        call="scipy.stats.binomtest(k, n).proportion_ci(confidence_level, method='wilson')"))
    write("wilson", out)


def quantiles():
    out = []
    for n in [10, 59, 120, 500]:
        x = lat(n)
        for p in [0.5, 0.95, 0.99]:
            for c in [0.9, 0.95]:
                ci = stats.quantile_test(x, p=p).confidence_interval(c)
                nan = lambda v: None if np.isnan(v) else float(v)
                out.append(dict(x=x, p=p, confidence=c, estimate=float(np.quantile(x, p)),
                                low=nan(ci.low), high=nan(ci.high),
                                call="numpy.quantile(x, p); scipy.stats.quantile_test(x, p=p).confidence_interval(c)"))
    write("quantile", out)


def chisquare():
    out = []
    for obs, w in [([5040, 4960], [50, 50]), ([9300, 720], [90, 10]), ([100, 130, 70], [1, 1, 1]),
                   ([495, 505, 0], [1, 1, 0]), ([8912, 1188], [0.9, 0.1])]:
        keep = [i for i, wi in enumerate(w) if wi > 0]
        o = np.array(obs, float)[keep]
        wk = np.array(w, float)[keep]
        r = stats.chisquare(o, f_exp=o.sum() * wk / wk.sum())
        out.append(dict(observed=obs, weights=w, statistic=float(r.statistic), pvalue=float(r.pvalue),
                        call="scipy.stats.chisquare(observed, f_exp=total*w/sum(w)) over arms with w > 0"))
    write("chisquare_srm", out)


def msprt():
    """Reference values of the Johari et al. KDD'17 formula (numpy), n per arm, known sigma2:
    L = sqrt(2s2/(2s2+n t2)) * exp(n^2 t2 (d-theta0)^2 / (4 s2 (2 s2 + n t2)))."""
    out = []
    for n, d, s2, t2, th in [(100, 0.3, 1.0, 0.1, 0.0), (1000, 0.05, 2.0, 0.01, 0.0), (50, -1.2, 4.0, 1.0, 0.2),
                             (10000, 0.02, 1.0, 0.001, 0.0)]:
        lam = np.sqrt(2 * s2 / (2 * s2 + n * t2)) * np.exp(n**2 * t2 * (d - th) ** 2 / (4 * s2 * (2 * s2 + n * t2)))
        out.append(dict(n=n, difference=d, sigma2=s2, tau2=t2, theta0=th, likelihood_ratio=float(lam),
                        call="numpy formula of Johari et al. KDD'17"))
    write("msprt", out)


if __name__ == "__main__":
    mannwhitneyu()
    hodges_lehmann()
    ttest()
    fisher()
    proportions()
    wilson()
    quantiles()
    chisquare()
    msprt()
