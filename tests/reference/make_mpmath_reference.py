#!/usr/bin/env python3
"""High-precision reference values and gradients of every operation and distribution member,
computed with mpmath at 100 significant digits, in double and in float.

Writes tests/reference/mpmath_reference.inc, read by tests/test_mpmath.cpp.

Independence: each function below is written from its definition (a density, a cdf, a series
the library does not use), never from the library's code. Gradients are not derived by hand:
they are central differences of the function itself at 600 digits (300 for float; step 1e-60 relative:
truncation error ~1e-120; 600 digits for double, 300 for float, so that x +- h stays exact beside
terms of order one and terms 1e-330 times smaller than others survive). Quantiles are found by Newton's method on
the cdf, at 100 digits.

Every case also records a condition allowance per output: sum_i |x_i d out / d x_i| (first
differences for values, second differences for gradients). A value computed from inputs that
are each off by one rounding can be off by u * allowance (u = 2^-53 or 2^-24) even when every
step is exact, so the test measures errors in units of

    ulp(exact) + u * allowance

and a result counts as accurate to "a few ulps" when that error is small. Where the problem is
well conditioned the allowance is at most |value| and the unit is one or two ulps.

The points cover subnormal inputs, tails to |z| = 1e4, probabilities down to the smallest
subnormal (5e-324 in double, 1.4e-45 in float), results that underflow and overflow, and
ordinary values, for every member.

Exact results are stored as a pair (hi, lo): hi the exact value rounded to the working type
(correctly, subnormals included), lo the rest rounded to double, so the test can measure an
error of half an ulp.

Run: python3 tests/reference/make_mpmath_reference.py  (needs python3-mpmath; ~15 minutes on 2 cores)
     python3 tests/reference/make_mpmath_reference.py --verify 300  (re-checks 300 random cases
     with 400 more digits: the precision argument of digits_for(), tested)
"""
import math
import multiprocessing
import os
import sys

import mpmath
from mpmath import mp, mpf

mp.dps = 100  # raised per case by digits_for()
# Steps of the central differences: 1e-60 relative, so that the step stays far inside the
# function's own scale even where that scale is 1e30 times smaller than the input (a location of
# 1.5 with a scale of 1e-30); truncation error ~1e-120.
H_REL = mpf("1e-60")
H_ABS = mpf("1e-200")  # step at an input of exactly 0 (below 1e-60 times the case's smallest input)

# ----------------------------------------------------------------------------- working types


class Fmt:
    def __init__(self, name, prec, emin, emax):
        self.name = name
        self.prec = prec
        self.emin = emin
        self.maxval = (2 - mpf(2) ** (1 - prec)) * mpf(2) ** emax
        self.u = mpf(2) ** -prec
        self.tiny = mpf(2) ** (emin - prec + 1)
        self.minnorm = mpf(2) ** emin

    def round(self, x):
        """x rounded to nearest (ties to even), subnormals included; +-inf beyond the range."""
        x = mpf(x)
        if x == 0 or mpmath.isinf(x) or mpmath.isnan(x):
            return x
        if abs(x) < self.tiny / 4:  # far below half the smallest subnormal (exponents may be astronomic)
            return mpf(0) if x > 0 else -mpf(0)
        if abs(x) > 2 * self.maxval:
            return mpmath.inf if x > 0 else -mpmath.inf
        e = int(mpmath.floor(mpmath.log(abs(x), 2)))
        # floor(log2) can be off by one at 100 digits only for exact powers of two; fix up
        while mpf(2) ** e > abs(x):
            e -= 1
        while mpf(2) ** (e + 1) <= abs(x):
            e += 1
        q = mpf(2) ** (max(e, self.emin) - self.prec + 1)
        r = mpmath.nint(x / q) * q  # nint rounds half to even
        if abs(r) > self.maxval:
            return mpmath.inf if r > 0 else -mpmath.inf
        return r


DOUBLE = Fmt("double", 53, -1022, 1023)
FLOAT = Fmt("float", 24, -126, 127)

# ----------------------------------------------------------------------------- math helpers


def sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def softplus(x):
    return mpmath.log1p(mpmath.exp(x))


def log_sigmoid(x):
    return -mpmath.log1p(mpmath.exp(-x))


def logsumexp(v):
    m = max(v)
    return m + mpmath.log(mpmath.fsum(mpmath.exp(a - m) for a in v))


def softmax(v):
    s = logsumexp(v)
    return [mpmath.exp(a - s) for a in v]


def logit(p):
    return mpmath.log(p) - mpmath.log(1 - p)


def solve_normal(p, x0):
    """Newton on log ncdf(x) = log p, to full working precision."""
    x = mpf(x0)
    for _ in range(400):
        c = mpmath.ncdf(x)
        fx = mpmath.log(c) - mpmath.log(p)
        d = mpmath.npdf(x) / c
        step = fx / d
        x -= step
        if abs(step) <= abs(x) * mpf(10) ** (-mp.dps + 8) + mpf(10) ** (-mp.dps - 300):
            return x
    raise RuntimeError("Newton did not converge")


def normal_icdf_std(p):
    if p == mpf(1) / 2:
        return mpf(0)
    if p > mpf(1) / 2:
        return -normal_icdf_std(1 - p)
    t = -2 * mpmath.log(p)
    x0 = -mpmath.sqrt(t - mpmath.log(t) - mpmath.log(2 * mpmath.pi)) if t > 3 else (p - mpf(1) / 2) * mpmath.sqrt(2 * mpmath.pi)
    return solve_normal(p, x0)


EULER = mpmath.euler

# ----------------------------------------------------------------------------- the functions
# Each takes (inputs, k0, k1): inputs a list of flat lists of mpf (row-major), and returns a flat
# list of outputs (row-major).


def ew1(g):
    return lambda ins, k0, k1: [g(a) for a in ins[0]]


def ew2(g):
    return lambda ins, k0, k1: [g(a, b) for a, b in zip(ins[0], ins[1])]


def ew3(g):
    return lambda ins, k0, k1: [g(a, b, c) for a, b, c in zip(ins[0], ins[1], ins[2])]


def rowwise(g):
    return lambda ins, k0, k1: g(*ins)


def tanh_def(x):
    # (1 - e^-2|x|) / (1 + e^-2|x|) with the sign: the definition, not mpmath.tanh
    e = mpmath.exp(-2 * abs(x))
    return mpmath.sign(x) * (1 - e) / (1 + e)


def pow_def(a, b):
    return mpmath.exp(b * mpmath.log(a))


def concrete_log_density(l, tau, x):
    # Maddison et al. (2017), eq. for the Concrete density on the simplex
    k = len(l)
    terms = [li - (tau + 1) * mpmath.log(xi) for li, xi in zip(l, x)]
    lse = logsumexp([li - tau * mpmath.log(xi) for li, xi in zip(l, x)])
    return mpmath.log(mpmath.factorial(k - 1)) + (k - 1) * mpmath.log(tau) + mpmath.fsum(terms) - k * lse


def exp_concrete_log_density(l, tau, y):
    # density of y = log x: the Concrete density times the Jacobian prod x_i (over K-1 free coordinates,
    # the last being fixed by the constraint: the same convention as the simplex density)
    k = len(l)
    terms = [li - tau * yi for li, yi in zip(l, y)]
    return mpmath.log(mpmath.factorial(k - 1)) + (k - 1) * mpmath.log(tau) + mpmath.fsum(terms) - k * logsumexp(terms)


def gumbel_noise(u):
    return -mpmath.log(-mpmath.log(u))


def relaxed_bernoulli_log_density(l, tau, x):
    # X = sigmoid(Y), Y = (l + L) / tau with L standard logistic: change of variables
    y = logit(x)
    a = tau * y - l
    log_pdf_y = mpmath.log(tau) - a - 2 * softplus(-a)
    return log_pdf_y - mpmath.log(x) - mpmath.log(1 - x)


def laplace_cdf_std(z):
    return mpmath.exp(z) / 2 if z < 0 else 1 - mpmath.exp(-z) / 2


F = {
    # arithmetic and elementwise operations
    "add": ew2(lambda a, b: a + b),
    "sub": ew2(lambda a, b: a - b),
    "mul": ew2(lambda a, b: a * b),
    "div": ew2(lambda a, b: a / b),
    "neg": ew1(lambda a: -a),
    "add_scalar": lambda ins, k0, k1: [a + k0 for a in ins[0]],
    "mul_scalar": lambda ins, k0, k1: [a * k0 for a in ins[0]],
    "rdiv_scalar": lambda ins, k0, k1: [k0 / a for a in ins[0]],
    "rsub_scalar": lambda ins, k0, k1: [k0 - a for a in ins[0]],
    "exp": ew1(mpmath.exp),
    "log": ew1(mpmath.log),
    "log1p": ew1(mpmath.log1p),
    "expm1": ew1(mpmath.expm1),
    "sqrt": ew1(mpmath.sqrt),
    "square": ew1(lambda a: a * a),
    "pow_scalar": lambda ins, k0, k1: [pow_def(a, k0) for a in ins[0]],
    "pow": ew2(pow_def),
    "abs": ew1(abs),
    "tanh": ew1(tanh_def),
    "sigmoid": ew1(sigmoid),
    "log_sigmoid": ew1(lambda a: -softplus(-a)),
    "relu": ew1(lambda a: a if a > 0 else mpf(0)),
    "softplus": ew1(softplus),
    "clamp": lambda ins, k0, k1: [min(max(a, k0), k1) for a in ins[0]],
    "bce_with_logits": ew2(lambda x, t: -(t * log_sigmoid(x) + (1 - t) * log_sigmoid(-x))),
    # reductions and row operations
    "sum": rowwise(lambda a: [mpmath.fsum(a)]),
    "mean": rowwise(lambda a: [mpmath.fsum(a) / len(a)]),
    "logsumexp": rowwise(lambda a: [logsumexp(a)]),
    "softmax": rowwise(softmax),
    "log_softmax": rowwise(lambda a: [x - logsumexp(a) for x in a]),
    "soft_argmax": rowwise(lambda a: [mpmath.fsum(k * p for k, p in enumerate(softmax(a)))]),
    # location-scale families: inputs loc, scale, argument
    "Normal.log_prob": ew3(lambda m, s, x: mpmath.log(mpmath.npdf(x, m, s))),
    "Normal.cdf": ew3(lambda m, s, x: mpmath.ncdf((x - m) / s)),
    "Normal.icdf": ew3(lambda m, s, p: m + s * normal_icdf_std(p)),
    "Normal.reparameterize": ew3(lambda m, s, e: m + s * e),
    "Normal.entropy": ew2(lambda m, s: mpmath.log(s * mpmath.sqrt(2 * mpmath.pi * mpmath.e))),
    "Normal.mean": ew2(lambda m, s: m),
    "Normal.stddev": ew2(lambda m, s: s),
    "Normal.variance": ew2(lambda m, s: s * s),
    "Gumbel.log_prob": ew3(lambda m, s, x: -(x - m) / s - mpmath.exp(-(x - m) / s) - mpmath.log(s)),
    "Gumbel.cdf": ew3(lambda m, s, x: mpmath.exp(-mpmath.exp(-(x - m) / s))),
    "Gumbel.icdf": ew3(lambda m, s, p: m - s * mpmath.log(-mpmath.log(p))),
    "Gumbel.reparameterize": ew3(lambda m, s, u: m + s * gumbel_noise(u)),
    "Gumbel.entropy": ew2(lambda m, s: mpmath.log(s) + EULER + 1),
    "Gumbel.mean": ew2(lambda m, s: m + s * EULER),
    "Gumbel.stddev": ew2(lambda m, s: s * mpmath.pi / mpmath.sqrt(6)),
    "Gumbel.variance": ew2(lambda m, s: (s * mpmath.pi) ** 2 / 6),
    "Logistic.log_prob": ew3(lambda m, s, x: log_sigmoid((x - m) / s) + log_sigmoid(-(x - m) / s) - mpmath.log(s)),
    "Logistic.cdf": ew3(lambda m, s, x: sigmoid((x - m) / s)),
    "Logistic.icdf": ew3(lambda m, s, p: m + s * logit(p)),
    "Logistic.reparameterize": ew3(lambda m, s, u: m + s * logit(u)),
    "Logistic.entropy": ew2(lambda m, s: mpmath.log(s) + 2),
    "Logistic.mean": ew2(lambda m, s: m),
    "Logistic.stddev": ew2(lambda m, s: s * mpmath.pi / mpmath.sqrt(3)),
    "Logistic.variance": ew2(lambda m, s: (s * mpmath.pi) ** 2 / 3),
    "Laplace.log_prob": ew3(lambda m, s, x: -abs(x - m) / s - mpmath.log(2 * s)),
    "Laplace.cdf": ew3(lambda m, s, x: laplace_cdf_std((x - m) / s)),
    "Laplace.icdf": ew3(lambda m, s, p: m + s * (mpmath.log(2 * p) if p < mpf(1) / 2 else -mpmath.log(2 * (1 - p)))),
    "Laplace.reparameterize": ew3(lambda m, s, u: m + s * (mpmath.log(2 * u) if u < mpf(1) / 2 else -mpmath.log(2 * (1 - u)))),
    "Laplace.entropy": ew2(lambda m, s: mpmath.log(2 * s) + 1),
    "Laplace.mean": ew2(lambda m, s: m),
    "Laplace.stddev": ew2(lambda m, s: s * mpmath.sqrt(2)),
    "Laplace.variance": ew2(lambda m, s: 2 * s * s),
    # Bernoulli family: inputs logit (and the argument)
    "RelaxedBernoulli.log_prob": ew3(relaxed_bernoulli_log_density),
    "RelaxedBernoulli.cdf": ew3(lambda l, t, x: sigmoid(t * logit(x) - l)),
    "RelaxedBernoulli.icdf": ew3(lambda l, t, p: sigmoid((l + logit(p)) / t)),
    "RelaxedBernoulli.reparameterize": ew3(lambda l, t, u: sigmoid((l + logit(u)) / t)),
    "RelaxedBernoulli.probs": ew2(lambda l, t: sigmoid(l)),
    "LogitRelaxedBernoulli.log_prob": ew3(lambda l, t, y: mpmath.log(t) + (l - t * y) - 2 * softplus(l - t * y)),
    "LogitRelaxedBernoulli.reparameterize": ew3(lambda l, t, u: (l + logit(u)) / t),
    "Bernoulli.log_prob": ew2(lambda l, x: x * log_sigmoid(l) + (1 - x) * log_sigmoid(-l)),
    "Bernoulli.entropy": ew1(lambda l: -(sigmoid(l) * log_sigmoid(l) + sigmoid(-l) * log_sigmoid(-l))),
    "Bernoulli.probs": ew1(sigmoid),
    "Bernoulli.mean": ew1(sigmoid),
    "Bernoulli.variance": ew1(lambda l: sigmoid(l) * sigmoid(-l)),
    "Bernoulli.stddev": ew1(lambda l: mpmath.sqrt(sigmoid(l) * sigmoid(-l))),
    # categorical family: one row of logits (and a one-hot row / a simplex row / uniforms)
    "Categorical.log_prob": rowwise(lambda l, x: [mpmath.fsum(xi * (li - logsumexp(l)) for li, xi in zip(l, x))]),
    "Categorical.entropy": rowwise(lambda l: [-mpmath.fsum(p * mpmath.log(p) for p in softmax(l))]),
    "Categorical.probs": rowwise(softmax),
    "Categorical.log_probs": rowwise(lambda l: [x - logsumexp(l) for x in l]),
    "Categorical.mean": rowwise(softmax),
    "Categorical.variance": rowwise(lambda l: [p * (1 - p) for p in softmax(l)]),
    "Categorical.stddev": rowwise(lambda l: [mpmath.sqrt(p * (1 - p)) for p in softmax(l)]),
    "Concrete.log_prob": rowwise(lambda l, t, x: [concrete_log_density(l, t[0], x)]),
    "Concrete.reparameterize": rowwise(lambda l, t, u: softmax([(li + gumbel_noise(ui)) / t[0] for li, ui in zip(l, u)])),
    "Concrete.probs": rowwise(lambda l, t: softmax(l)),
    "ExpConcrete.log_prob": rowwise(lambda l, t, y: [exp_concrete_log_density(l, t[0], y)]),
    "ExpConcrete.reparameterize": rowwise(lambda l, t, u: (lambda v: [a - logsumexp(v) for a in v])([(li + gumbel_noise(ui)) / t[0] for li, ui in zip(l, u)])),
    # KL divergences: p's parameters, then q's
    "kl.Normal": lambda ins, k0, k1: [mpmath.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2 * s2 * s2) - mpf(1) / 2
                                      for m1, s1, m2, s2 in zip(*ins)],
    "kl.Laplace": lambda ins, k0, k1: [mpmath.log(b2 / b1) + abs(m1 - m2) / b2 + b1 / b2 * mpmath.exp(-abs(m1 - m2) / b1) - 1
                                       for m1, b1, m2, b2 in zip(*ins)],
    "kl.Bernoulli": ew2(lambda a, b: sigmoid(a) * (log_sigmoid(a) - log_sigmoid(b)) +
                        sigmoid(-a) * (log_sigmoid(-a) - log_sigmoid(-b))),
    "kl.Categorical": rowwise(lambda a, b: [mpmath.fsum(p * (x - logsumexp(a) - y + logsumexp(b)) for p, x, y in zip(softmax(a), a, b))]),
}

# ----------------------------------------------------------------------------- the points


class In:
    """One input: shape, values, and whether it is a Var (differentiated) and enters the condition."""

    def __init__(self, values, rows=1, cols=None, diff=True, cond=True):
        self.values = list(values)
        self.rows = rows
        self.cols = cols if cols is not None else len(self.values) // rows
        assert self.rows * self.cols == len(self.values)
        self.diff = diff
        self.cond = cond


def scal(v, **kw):
    return In([v], **kw)


cases = {"double": [], "float": []}


def add(fmt, fn, ins, k0=0.0, k1=0.0, w=None):
    cases[fmt.name].append((fn, ins, k0, k1, w))


def pts(fmt, double_points, float_points=None):
    return double_points if fmt is DOUBLE or float_points is None else float_points


def build(fmt):
    D = fmt is DOUBLE
    tiny = 5e-324 if D else 1.401298464324817e-45
    sub = 1e-310 if D else 1e-40
    minn = 2.2250738585072014e-308 if D else 1.1754943508222875e-38
    big = 1e300 if D else 1e37
    vmax = 1.7976931348623157e308 if D else 3.4028234663852886e38
    u = 2.0 ** -53 if D else 2.0 ** -24
    exp_under = -745.2 if D else -103.98
    exp_sub = -740.0 if D else -100.0
    exp_hi = 709.7 if D else 88.7
    exp_over = 709.8 if D else 88.8
    tail = 1e4

    E = lambda fn, xs, **kw: [add(fmt, fn, [scal(x)], **kw) for x in xs]

    E("exp", [-tail, exp_under, exp_sub, -708.5 if D else -87.5, -20.0, -1.0, -1e-20, 0.0, sub, 1e-300 if D else 1e-30, 0.5, 1.0, 10.0, 300.0 if D else 60.0, exp_hi, exp_over])
    E("log", [tiny, sub, minn, 1e-300 if D else 1e-30, 1e-5, 0.5, 1 - u, 1.0, 1 + 2 * u, 2.0, 1e5, big, vmax])
    E("log1p", [-1 + u, -0.999999, -0.5, -1e-5, -1e-300 if D else -1e-30, -tiny, tiny, sub, 1e-20, 1e-8, 0.5, 1e10, big, vmax])
    E("expm1", [-tail, -800.0 if D else -110.0, -40.0, -1.0, -1e-10, -tiny, tiny, sub, 1e-300 if D else 1e-30, 1e-10, 0.5, 100.0 if D else 30.0, exp_hi, exp_over])
    E("sqrt", [tiny, sub, minn, 1e-300 if D else 1e-30, 0.25, 2.0, 1e10, big, vmax])
    E("square", [-1e154 if D else -1e19, -3.0, 1e-160 if D else 1e-22, 1e-200 if D else 1e-25, 0.75, 1e154 if D else 1e19, 1e160 if D else 1e20])
    E("abs", [-big, -2.5, -tiny, tiny, 3.25])
    E("neg", [-tiny, 1.5, big])
    E("tanh", [-tail, -40.0, -19.1 if D else -9.0, -1.0, -1e-10, -tiny, tiny, sub, 1e-300 if D else 1e-30, 1e-5, 0.3, 0.55, 0.625, 1.0, 5.0, 18.0 if D else 8.0, 20.0 if D else 9.5, 40.0, tail])
    E("sigmoid", [-tail, exp_under, -740.0 if D else -100.0, -700.0 if D else -85.0, -40.0, -1.0, -tiny, 0.0, 1e-20, 1.0, 36.0 if D else 16.0, 37.0 if D else 17.0, 40.0, tail])
    E("log_sigmoid", [-tail, -800.0, -40.0, -1.0, -1e-10, 0.0, 1e-10, 1.0, 20.0, 37.0 if D else 17.0, 40.0, 800.0, tail])
    E("softplus", [-tail, -800.0, exp_under, exp_sub, -40.0, -1.0, -1e-10, 0.0, tiny, 1.0, 20.0, 37.0 if D else 17.0, 40.0, 800.0, tail])
    E("relu", [-3.0, -tiny, tiny, 2.0, big])
    E("add_scalar", [0.1, -1e-300 if D else -1e-30], k0=0.2)
    E("mul_scalar", [0.1, sub, big], k0=-3.0)
    E("rdiv_scalar", [3.0, tiny, -big], k0=1.0)
    E("rsub_scalar", [0.3, -tiny], k0=1.0)
    for p in [0.5, 2.0, 3.0, -1.0, -0.5, 2.5, 1.0 / 3.0 if D else float.fromhex("0x1.555556p-2")]:
        E("pow_scalar", [1e-100 if D else 1e-12, 0.3, 1.0, 7.0, 1e50 if D else 1e6], k0=p)
    E("pow_scalar", [tiny, sub, 1e-300 if D else 1e-30], k0=0.5)
    E("clamp", [-5.0, -0.5, 1.5, 3.0], k0=-1.0, k1=2.0)
    for a, b in [(0.1, 0.2), (1.0, -1.0 + u), (tiny, tiny), (-big, 1.0), (1e308 if D else 3e38, 1e308 if D else 3e38)]:
        add(fmt, "add", [scal(a), scal(b)])
        add(fmt, "sub", [scal(a), scal(-b)])
    for a, b in [(0.1, 3.0), (1e-160 if D else 1e-20, 1e-160 if D else 1e-20), (tiny, 0.5), (big, big), (-3.5, 1e-10)]:
        add(fmt, "mul", [scal(a), scal(b)])
    for a, b in [(1.0, 3.0), (tiny, 2.0), (1.0, big), (big, 1e-10 if D else 1e-3), (-2.0, 1e-300 if D else 1e-30), (0.0, 7.0)]:
        add(fmt, "div", [scal(a), scal(b)])
    for a, b in [(2.0, 0.5), (1e-300 if D else 1e-30, 0.5), (0.5, 1000.0 if D else 100.0), (10.0, -300.0 if D else -30.0),
                 (1.0000001, 1e8 if D else 1e5), (3.0, 2.0), (0.7, -2.5), (1e5, 1.0 / 3.0)]:
        add(fmt, "pow", [scal(a), scal(b)])
    for x in [-tail, -800.0, -40.0, -1.0, -1e-10, 0.0, 1.0, 40.0, 800.0, tail]:
        for t in [0.0, 0.3, 1.0]:
            add(fmt, "bce_with_logits", [scal(x), scal(t)])

    rows = [
        [0.1, 0.2, 0.3, 0.4, 0.5],
        [tail, -tail, 0.0, 5.0, 3.0],
        [exp_under, -700.0 if D else -85.0, 0.0, 1.0, 2.0],
        [1000.0, 1000.0, 999.0, -1000.0, 1000.0 - 1e-9 if D else 999.99994],
        [-3.0, tiny, 2.5, -0.25, 40.0],
        [1e-20, -1e-20, 0.0, 1e-300 if D else 1e-30, 3e-20],
    ]
    w = [0.7, -1.3, 2.0, 0.4, -0.9]
    for r in rows:
        for fn in ["logsumexp", "soft_argmax", "sum", "mean"]:
            add(fmt, fn, [In(r)])
        for fn in ["softmax", "log_softmax"]:
            add(fmt, fn, [In(r)], w=w)

    # location-scale families
    locscale = [(0.0, 1.0), (2.0, 3.0), (-1.5, 1e-30 if D else 1e-15), (0.5, 1e30 if D else 1e15), (0.0, 0.25)]
    zs = [-tail, -40.0, -5.0, -1.0, -1e-10, -tiny, 0.0, 1e-8, 0.7, 3.0, 40.0, tail]
    ps = [tiny, sub, 1e-300 if D else 1e-30, 1e-100 if D else 1e-20, 1e-10, 0.02, 0.25, 0.5 - 1e-10 if D else 0.49999997,
          0.5, 0.5 + 1e-10 if D else 0.50000006, 0.75, 0.98, 1 - 1e-10 if D else 1 - 2 * u, 1 - u]
    us_range = [u, 1e-10 if D else 1e-7, 0.02, 0.25, 0.5 - 1e-10 if D else 0.49999997, 0.5, 0.5 + 1e-10 if D else 0.50000006,
                0.75, 0.98, 1 - 1e-10 if D else 1 - 2 * u, 1 - u]
    for fam in ["Normal", "Gumbel", "Logistic", "Laplace"]:
        for m, s in locscale:
            xs = [m + s * z for z in zs]
            if fam == "Gumbel":
                xs = [m + s * z for z in ([-709.0 if D else -88.0, -700.0 if D else -85.0, -20.0, -1.0, 0.0, 1.0, 20.0, 700.0, 745.2 if D else 104.0, tail])]
            if fam == "Laplace":
                xs = [x for x in xs if x != m]  # the kink
            lpx = xs if fam != "Normal" else [m + s * z for z in [-1e150 if D else -1e18, -38.0 if D else -13.0, -1.0, 0.0, 2.5, 1e4, 1e150 if D else 1e18]]
            for x in lpx:
                add(fmt, fam + ".log_prob", [scal(m), scal(s), scal(x)])
            cx = xs
            if fam == "Normal":
                cx = [m + s * z for z in [-tail, -38.5 if D else -14.0, -38.0 if D else -13.0, -37.0 if D else -12.0, -20.0, -5.0, -1.0, -1e-10, 0.0, 1e-10, 1.0, 8.0, 8.3, 9.0, 40.0]]
            if fam == "Gumbel":
                cx = [m + s * z for z in [-709.8 if D else -88.7, -6.6, -3.0, -1.0, 0.0, 3.0, 36.0 if D else 16.0, 37.0 if D else 17.0, 40.0, 745.2 if D else 104.0, tail]]
            for x in cx:
                add(fmt, fam + ".cdf", [scal(m), scal(s), scal(x)])
            for p in ps:
                if fam == "Laplace" and p == 0.5:
                    continue  # the kink
                add(fmt, fam + ".icdf", [scal(m), scal(s), scal(p)])
            # reparameterize clamps its uniforms to the generator's range [2^-53, 1 - 2^-53] (float:
            # 2^-24), documented; the reference covers that range, ends included
            noise = us_range if fam != "Normal" else [-tail, -38.0, -1.0, 0.0, 1e-10, 2.0, tail]
            for e in noise:
                if fam == "Laplace" and e == 0.5:
                    continue
                add(fmt, fam + ".reparameterize", [scal(m), scal(s), scal(e, diff=(fam == "Normal"))])
            for fn in ["entropy", "mean", "stddev", "variance"]:
                add(fmt, fam + "." + fn, [scal(m), scal(s)])
        add(fmt, fam + ".entropy", [scal(0.0), scal(0.24197072451914337 if D else 0.24197072)])  # near a zero of the entropy
        add(fmt, fam + ".entropy", [scal(0.0), scal(tiny if D else 1e-37)])
        add(fmt, fam + ".entropy", [scal(0.0), scal(big)])

    # Bernoulli family
    logits = [-tail, -800.0 if D else -110.0, -40.0, -1.0, -1e-10, 0.0, 0.75, 20.0, 40.0, 800.0 if D else 110.0, tail]
    for l in logits:
        for fn in ["entropy", "probs", "mean", "variance", "stddev"]:
            add(fmt, "Bernoulli." + fn, [scal(l)])
        for x in [0.0, 1.0]:
            add(fmt, "Bernoulli.log_prob", [scal(l), scal(x, diff=False, cond=False)])
    for l in [-30.0, -1.0, 0.0, 0.8, 25.0]:
        for tau in [0.01, 0.1, 1.0, 5.0]:
            for x in [tiny, 1e-300 if D else 1e-30, 1e-5, 0.3, 0.5, 0.9, 1 - 1e-10 if D else 1 - 2 * u, 1 - u]:
                add(fmt, "RelaxedBernoulli.log_prob", [scal(l), scal(tau), scal(x)])
                add(fmt, "RelaxedBernoulli.cdf", [scal(l), scal(tau), scal(x)])
            for p in [tiny, 1e-300 if D else 1e-30, 1e-5, 0.3, 0.5, 0.9, 1 - u]:
                add(fmt, "RelaxedBernoulli.icdf", [scal(l), scal(tau), scal(p)])
            for p in [u, 1e-5, 0.3, 0.5, 0.9, 1 - u]:
                add(fmt, "RelaxedBernoulli.reparameterize", [scal(l), scal(tau), scal(p, diff=False)])
                add(fmt, "LogitRelaxedBernoulli.reparameterize", [scal(l), scal(tau), scal(p, diff=False)])
            for y in [-1e4, -300.0, -3.0, 0.0, 2.0, 80.0, 1e4]:
                add(fmt, "LogitRelaxedBernoulli.log_prob", [scal(l), scal(tau), scal(y)])
            add(fmt, "RelaxedBernoulli.probs", [scal(l), scal(tau)])

    # categorical family (one row of 5 logits)
    lrows = [
        [0.1, -0.4, 1.3, 0.0, 2.2],
        [tail, -tail, 0.0, 5.0, 3.0],
        [-tail, -tail, -tail, tail, -tail],
        [exp_under, -700.0 if D else -85.0, 0.0, 1.0, 2.0],
        [40.0, 0.0, 0.0, 0.0, 0.0],
        [1e-20, -1e-20, 0.0, 1e-300 if D else 1e-30, 3e-20],
    ]
    onehots = [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]
    us = [[0.3, 0.6, 0.1, 0.9, 0.5], [u, 1 - u, 0.5, 1e-12 if D else 1e-7, 0.25], [1e-10 if D else 2e-7, 0.999, u, 0.7, 1 - 1e-10 if D else 1 - 2 * u]]
    simplexes = [[0.2, 0.1, 0.3, 0.25, 0.15], [1e-300 if D else 1e-30, 0.5, 0.25, 0.125, 0.125], [sub, tiny, 0.5, 0.25, 0.25]]
    for l in lrows:
        for x in onehots:
            add(fmt, "Categorical.log_prob", [In(l), In(x, diff=False, cond=False)])
        add(fmt, "Categorical.entropy", [In(l)])
        for fn in ["probs", "log_probs", "mean", "variance", "stddev"]:
            add(fmt, "Categorical." + fn, [In(l)], w=w)
        for tau in [0.01, 0.1, 0.5, 1.0, 5.0]:
            for uu in us:
                add(fmt, "Concrete.reparameterize", [In(l), scal(tau), In(uu, diff=False)], w=w)
                add(fmt, "ExpConcrete.reparameterize", [In(l), scal(tau), In(uu, diff=False)], w=w)
            for x in simplexes:
                add(fmt, "Concrete.log_prob", [In(l), scal(tau), In(x)])
            for y in [[-1.6, -2.3, -1.2, -1.4, -1.9], [-690.0 if D else -69.0, -0.7, -1.4, -2.1, -2.1], [-1e4, -1e4, 0.0, -3.0, -1.0]]:
                # a point of the support: log-probabilities, normalized at 100 digits then rounded
                lse = logsumexp([mpf(v) for v in y])
                add(fmt, "ExpConcrete.log_prob", [In(l), scal(tau), In([float(mpf(v) - lse) for v in y])])
            add(fmt, "Concrete.probs", [In(l), scal(tau)], w=w)
    for a, b in [(lrows[0], lrows[1]), (lrows[1], lrows[0]), (lrows[2], lrows[4]), (lrows[5], lrows[3])]:
        add(fmt, "kl.Categorical", [In(a), In(b)])

    # KL (elementwise)
    pairs = [((0.0, 1.0), (0.0, 1.0)), ((0.5, 2.0), (-1.0, 0.3)), ((0.0, 1e-170 if D else 1e-30), (0.0, 1.0)),
             ((1e4, 1.0), (-1e4, 1e3)), ((1.0, 1.0), (1.0 + 1e-8, 1.0 + 1e-8)), ((0.0, 1e150 if D else 1e18), (1.0, 1.0))]
    for (m1, s1), (m2, s2) in pairs:
        add(fmt, "kl.Normal", [scal(m1), scal(s1), scal(m2), scal(s2)])
        if m1 != m2:
            add(fmt, "kl.Laplace", [scal(m1), scal(s1), scal(m2), scal(s2)])
    for a in logits[::2]:
        for b in [-tail, -1.0, 0.0, 2.0, tail]:
            add(fmt, "kl.Bernoulli", [scal(a), scal(b)])


# ----------------------------------------------------------------------------- evaluation


def at_kink(fn, xs):
    """Laplace's density and cdf have a kink at x = loc, its KL at loc_p = loc_q: no derivative."""
    if fn in ("Laplace.log_prob", "Laplace.cdf"):
        return xs[2][0] == xs[0][0]
    if fn == "kl.Laplace":
        return xs[0][0] == xs[2][0]
    if fn in ("Laplace.icdf", "Laplace.reparameterize"):
        return xs[2][0] == mpf(1) / 2
    return False


def digits_for(fmt):
    """Working digits: enough that a term 1e-330 (double; 1e-50 float) times the largest one, the
    smallest that can still change a stored number, survives the central differences (which
    divide by h^2 = 1e-120) with 100 digits to spare; an input of 5e-324 beside a 1 is covered too.
    `--verify N` re-evaluates N cases with 400 more digits and checks that nothing stored changes."""
    return 600 if fmt is DOUBLE else 300


def evaluate(fmt, fn, ins, k0, k1, w, extra=0):
    with mp.workdps(digits_for(fmt) + extra):
        return evaluate_at(fmt, fn, ins, k0, k1, w)


def stored(fmt, res):
    """What the .inc keeps of a result: exact values as (hi, lo) pairs, allowances to 2 digits."""
    xs, out, wts, out_cabs, grads, grad_cabs = res
    key = [pair(fmt, v) for v in out] + [pair(fmt, v) for g in grads for v in g]
    key += ["%.2e" % float(DOUBLE.round(v)) for v in out_cabs + [c for gc in grad_cabs for c in gc]]
    return key


def evaluate_at(fmt, fn, ins, k0, k1, w):
    f = F[fn]
    xs = [[fmt.round(v) for v in i.values] for i in ins]
    k0m, k1m = fmt.round(k0), fmt.round(k1)
    out = f(xs, k0m, k1m)
    n_out = len(out)
    wts = [mpf(1)] * n_out if w is None else [mpf(v) for v in w][:n_out]

    def at(shift):  # f with input (a, j) moved by h
        ys = [list(x) for x in xs]
        for (a, j), h in shift:
            ys[a][j] += h
        return f(ys, k0m, k1m)

    nonzero = [abs(v) for x in xs for v in x if v != 0]
    h_zero = min([H_ABS] + [H_REL * v for v in nonzero])  # never across a kink at a tiny distance

    def step(a, j):
        x = xs[a][j]
        return H_REL * abs(x) if x != 0 else h_zero

    def loss(vals):
        return mpmath.fsum(wv * v for wv, v in zip(wts, vals))

    # every input element: central difference of the outputs (Jacobian column)
    coords = [(a, j) for a, i in enumerate(ins) for j in range(len(xs[a]))]
    jac = {}
    for c in coords:
        h = step(*c)
        plus, minus = at([(c, h)]), at([(c, -h)])
        jac[c] = [(p - m) / (2 * h) for p, m in zip(plus, minus)]
    out_cabs = [mpmath.fsum(abs(xs[a][j] * jac[(a, j)][o]) for (a, j) in coords if ins[a].cond) for o in range(n_out)]
    grads, grad_cabs = [], []
    for a, i in enumerate(ins):
        if not i.diff:
            continue
        g, gc = [], []
        for j in range(len(xs[a])):
            g.append(loss(jac[(a, j)]))
            # second differences for the condition of this gradient entry
            acc = []
            for (b, k) in coords:
                if not ins[b].cond or xs[b][k] == 0:
                    continue
                h1, h2 = step(a, j), step(b, k)
                s = (loss(at([((a, j), h1), ((b, k), h2)])) - loss(at([((a, j), h1), ((b, k), -h2)])) -
                     loss(at([((a, j), -h1), ((b, k), h2)])) + loss(at([((a, j), -h1), ((b, k), -h2)]))) / (4 * h1 * h2)
                acc.append(abs(xs[b][k] * s))
            gc.append(mpmath.fsum(acc))
        grads.append(g)
        grad_cabs.append(gc)
    return xs, out, wts, out_cabs, grads, grad_cabs


def lit(x):
    x = float(x)
    if math.isinf(x):
        return "INF" if x > 0 else "-INF"
    if math.isnan(x):
        return "NAN"
    return repr(x)


def pair(fmt, v):
    hi = fmt.round(v)
    if mpmath.isinf(hi) or mpmath.isnan(v):
        return lit(hi), "0.0"
    return lit(hi), lit(DOUBLE.round(v - hi))


def out_shape(fn, ins, n_out):
    r = ins[0].rows
    return (r, n_out // r)


def work(job):
    fmt_name, fn, ins, k0, k1, w = job
    fmt = DOUBLE if fmt_name == "double" else FLOAT
    if at_kink(fn, [[fmt.round(v) for v in i.values] for i in ins]):
        return None
    xs, out, wts, out_cabs, grads, grad_cabs = evaluate(fmt, fn, ins, k0, k1, w)
    data = [str(len(ins))]
    for i, x in zip(ins, xs):
        data += [str(i.rows), str(i.cols), str((1 if i.diff else 0) | (2 if i.cond else 0))] + [lit(v) for v in x]
    r, c = out_shape(fn, ins, len(out))
    data += [str(r), str(c)] + [lit(v) for v in wts]
    for v in out:
        data += list(pair(fmt, v))
    data += [lit(DOUBLE.round(v)) for v in out_cabs]
    for g, gc in zip(grads, grad_cabs):
        for v in g:
            data += list(pair(fmt, v))
        data += [lit(DOUBLE.round(v)) for v in gc]
    return fn, lit(fmt.round(k0)), lit(fmt.round(k1)), data


def verify_one(job):
    fmt_name, fn, ins, k0, k1, w = job
    fmt = DOUBLE if fmt_name == "double" else FLOAT
    if at_kink(fn, [[fmt.round(v) for v in i.values] for i in ins]):
        return None
    a = stored(fmt, evaluate(fmt, fn, ins, k0, k1, w))
    b = stored(fmt, evaluate(fmt, fn, ins, k0, k1, w, extra=400))
    return None if a == b else "%s %s %r: %r != %r" % (fmt_name, fn, [i.values for i in ins], a, b)


def verify(n):
    """Re-evaluate every k-th case (n in all) with 400 more digits; the stored numbers must not move."""
    import random
    rng = random.Random(1)
    jobs = []
    for fmt in (DOUBLE, FLOAT):
        build(fmt)
        jobs += [(fmt.name,) + c for c in cases[fmt.name]]
    picked = rng.sample(jobs, min(n, len(jobs)))
    bad = 0
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for k, res in enumerate(pool.imap_unordered(verify_one, picked)):
            if res:
                bad += 1
                print("UNSTABLE", res, file=sys.stderr)
            if k % 50 == 0:
                print("verify: %d / %d" % (k, len(picked)), file=sys.stderr, flush=True)
    print("verify: %d of %d cases changed with 400 more digits" % (bad, len(picked)), file=sys.stderr)
    return 1 if bad else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        sys.exit(verify(int(sys.argv[2])))
    here = os.path.dirname(os.path.abspath(__file__))
    lines = ["// Generated by tests/reference/make_mpmath_reference.py (mpmath %s, 500 digits for double, 250 for float). Do not edit." % mpmath.__version__,
             "// Layout of one case in the data array: n_inputs; per input: rows, cols, flags (1: Var, 2: enters",
             "// the condition), values; out rows, out cols; upstream weights; exact outputs as (hi, lo) pairs;",
             "// output condition allowances; per Var input: exact gradients as (hi, lo) pairs, then their allowances.", ""]
    total = 0
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for fmt in (DOUBLE, FLOAT):
            build(fmt)
            jobs, seen = [], set()
            for c in cases[fmt.name]:  # cases that coincide once rounded (loc + 1e-30 z = loc) once
                fn, ins, k0, k1, w = c
                key = (fn, tuple((i.rows, tuple(fmt.round(v) for v in i.values), i.diff) for i in ins), fmt.round(k0), fmt.round(k1))
                if key not in seen:
                    seen.add(key)
                    jobs.append((fmt.name,) + c)
            data, heads = [], []
            for k, res in enumerate(pool.imap(work, jobs, chunksize=4)):
                if k % 200 == 0:
                    print("%s: %d / %d" % (fmt.name, k, len(jobs)), file=sys.stderr, flush=True)
                if res is None:
                    continue
                fn, k0, k1, d = res
                heads.append('  {"%s", %s, %s, %d},' % (fn, k0, k1, len(data)))
                data += d
            total += len(heads)
            lines.append("static const double mp_data_%s[] = {" % fmt.name)
            for k in range(0, len(data), 12):
                lines.append("  " + ", ".join(data[k:k + 12]) + ",")
            lines.append("};")
            lines.append("static const MpCaseHead mp_cases_%s[] = {" % fmt.name)
            lines += heads
            lines.append("};")
            lines.append("")
            print(fmt.name, len(heads), "cases", file=sys.stderr)
    path = os.path.join(here, "mpmath_reference.inc")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote", path, total, "cases", file=sys.stderr)


if __name__ == "__main__":
    main()
