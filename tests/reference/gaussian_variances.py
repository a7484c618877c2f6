#!/usr/bin/env python3
"""Checks the closed-form variances of the Gaussian problem (tests/test_estimator_discrete.cpp,
bench/gradient_variance.cpp) by numerical integration with mpmath: x = theta + sigma eps,
f = x^2, estimates of d/dtheta and d/dsigma E[f]:

  pathwise  2x                      variance 4 sigma^2
            2x eps                  variance 4 theta^2 + 8 sigma^2
  score     x^2 eps / sigma         variance theta^4 / sigma^2 + 14 theta^2 + 15 sigma^2
            x^2 (eps^2 - 1) / sigma variance 2 theta^4 / sigma^2 + 60 theta^2 + 74 sigma^2

Exits 1 if any differs by more than 1e-20 relative."""
import sys
import mpmath as mp

mp.mp.dps = 40


def moments(g):
    phi = lambda e: mp.exp(-e * e / 2) / mp.sqrt(2 * mp.pi)
    m1 = mp.quad(lambda e: g(e) * phi(e), [-mp.inf, 0, mp.inf])
    m2 = mp.quad(lambda e: g(e) ** 2 * phi(e), [-mp.inf, 0, mp.inf])
    return m1, m2 - m1 * m1


bad = 0
for th, sg in [(1, 1), (1.5, 0.8), (-0.7, 2.3)]:
    th, sg = mp.mpf(th), mp.mpf(sg)
    x = lambda e: th + sg * e
    cases = [
        ("pathwise d/dtheta", lambda e: 2 * x(e), 2 * th, 4 * sg**2),
        ("pathwise d/dsigma", lambda e: 2 * x(e) * e, 2 * sg, 4 * th**2 + 8 * sg**2),
        ("score d/dtheta", lambda e: x(e) ** 2 * e / sg, 2 * th, th**4 / sg**2 + 14 * th**2 + 15 * sg**2),
        ("score d/dsigma", lambda e: x(e) ** 2 * (e * e - 1) / sg, 2 * sg, 2 * th**4 / sg**2 + 60 * th**2 + 74 * sg**2),
    ]
    for name, g, mean, var in cases:
        m, v = moments(g)
        ok = abs(m - mean) <= 1e-20 * (1 + abs(mean)) and abs(v - var) <= 1e-20 * var
        bad += not ok
        print(f"theta {float(th):5} sigma {float(sg):4} {name:18} mean {mp.nstr(m, 12):>14} variance {mp.nstr(v, 15):>18} "
              f"closed form {mp.nstr(var, 15):>18} {'ok' if ok else 'MISMATCH'}")
sys.exit(1 if bad else 0)
