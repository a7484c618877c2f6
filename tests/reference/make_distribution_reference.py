#!/usr/bin/env python3
"""Reference values and gradients of every distribution member, computed with PyTorch in
float64 (torch.distributions where it has the member, else the closed form written in torch).

Writes tests/reference/distribution_reference.inc, read by tests/test_dist_reference.cpp. Each
case records the parameters, the argument, the member's value and the gradients of
sum(value * weight) (a fixed random weight) with respect to every parameter and the argument.
Parameters broadcast (e.g. a 2x3 loc with a 1x3 scale) so that gradients are summed back.

Run: python3 tests/reference/make_distribution_reference.py  (needs python3-torch)
"""
import math
import os

import torch
import torch.distributions as D
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20261123)


def rnd(*shape, lo=-1.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen)


def simplex(rows, cols, spread=1.0):
    return torch.softmax(spread * torch.randn(rows, cols, generator=gen), dim=-1)


def one_hot(rows, cols):
    idx = torch.randint(0, cols, (rows,), generator=gen)
    return torch.nn.functional.one_hot(idx, cols).double()


def logistic_dist(loc, scale):
    return D.TransformedDistribution(D.Uniform(torch.zeros_like(loc), torch.ones_like(loc)),
                                     [D.SigmoidTransform().inv, D.AffineTransform(loc, scale)])


# member -> function(params..., arg) -> tensor, written with torch
def normal(name):
    def f(p, x):
        d = D.Normal(p["loc"], p["scale"])
        return {
            "log_prob": lambda: d.log_prob(x),
            "cdf": lambda: d.cdf(x),
            "icdf": lambda: d.icdf(x),
            "entropy": lambda: d.entropy(),
            "mean": lambda: d.mean,
            "stddev": lambda: d.stddev,
            "reparameterize": lambda: p["loc"] + p["scale"] * x,
        }[name]()
    return f


def gumbel(name):
    def f(p, x):
        d = D.Gumbel(p["loc"], p["scale"])
        loc, scale = torch.broadcast_tensors(p["loc"], p["scale"])
        return {
            "log_prob": lambda: d.log_prob(x),
            "cdf": lambda: torch.exp(-torch.exp(-(x - loc) / scale)),
            "icdf": lambda: loc - scale * torch.log(-torch.log(x)),
            "entropy": lambda: d.entropy(),
            "mean": lambda: d.mean,
            "stddev": lambda: d.stddev,
            "reparameterize": lambda: p["loc"] - p["scale"] * torch.log(-torch.log(x)),
        }[name]()
    return f


def logistic(name):
    def f(p, x):
        loc, scale = torch.broadcast_tensors(p["loc"], p["scale"])
        d = logistic_dist(loc, scale)
        return {
            "log_prob": lambda: d.log_prob(x),
            "cdf": lambda: d.cdf(x),
            "icdf": lambda: d.icdf(x),
            "entropy": lambda: torch.log(scale) + 2,
            "mean": lambda: loc * 1.0,
            "stddev": lambda: scale * math.pi / math.sqrt(3),
            "reparameterize": lambda: p["loc"] + p["scale"] * (torch.log(x) - torch.log1p(-x)),
        }[name]()
    return f


def concrete(name):
    def f(p, x):
        tau = p["temperature"].reshape(())
        d = D.RelaxedOneHotCategorical(tau, logits=p["logits"])
        return {
            "log_prob": lambda: d.log_prob(x).unsqueeze(-1),
            "reparameterize": lambda: torch.softmax((p["logits"] - torch.log(-torch.log(x))) / tau, dim=-1),
        }[name]()
    return f


def exp_concrete(name):
    def f(p, x):
        tau = p["temperature"].reshape(())
        d = ExpRelaxedCategorical(tau, logits=p["logits"])
        return {"log_prob": lambda: d.log_prob(x).unsqueeze(-1)}[name]()
    return f


def laplace(name):
    def f(p, x):
        d = D.Laplace(p["loc"], p["scale"])
        return {
            "log_prob": lambda: d.log_prob(x),
            "cdf": lambda: d.cdf(x),
            "icdf": lambda: d.icdf(x),
            "entropy": lambda: d.entropy(),
            "mean": lambda: d.mean,
            "stddev": lambda: d.stddev,
            "reparameterize": lambda: d.icdf(x),  # the sample map is the quantile function
        }[name]()
    return f


def logit_relaxed_bernoulli(name):
    def f(p, x):
        tau = p["temperature"].reshape(())
        d = LogitRelaxedBernoulli(tau, logits=p["logits"])
        l = p["logits"]
        return {
            "log_prob": lambda: d.log_prob(x),
            "reparameterize": lambda: (l + torch.log(x) - torch.log1p(-x)) / tau,
        }[name]()
    return f


def relaxed_bernoulli(name):
    def f(p, x):
        tau = p["temperature"].reshape(())
        d = D.RelaxedBernoulli(tau, logits=p["logits"])
        l = p["logits"]
        return {
            "log_prob": lambda: d.log_prob(x),
            "reparameterize": lambda: torch.sigmoid((l + torch.log(x) - torch.log1p(-x)) / tau),
            "cdf": lambda: torch.sigmoid(tau * (torch.log(x) - torch.log1p(-x)) - l),
            "icdf": lambda: torch.sigmoid((l + torch.log(x) - torch.log1p(-x)) / tau),
        }[name]()
    return f


def categorical(name):
    def f(p, x):
        d = D.OneHotCategorical(logits=p["logits"])
        return {
            # linear in the one-hot x (torch's own log_prob gathers and has no gradient in x;
            # its value is asserted equal below)
            "log_prob": lambda: checked((x * torch.log_softmax(p["logits"], -1)).sum(-1, keepdim=True),
                                       d.log_prob(x).unsqueeze(-1)),
            "entropy": lambda: d.entropy().unsqueeze(-1),
            "mean": lambda: d.mean,
            "stddev": lambda: d.stddev,
            "variance": lambda: d.variance,
        }[name]()
    return f


def checked(value, reference):
    assert torch.allclose(value, reference, rtol=1e-14, atol=1e-14)
    return value


def bernoulli(name):
    def f(p, x):
        d = D.Bernoulli(logits=p["logits"])
        return {
            "log_prob": lambda: d.log_prob(x),
            "entropy": lambda: d.entropy(),
            "mean": lambda: d.mean,
            "stddev": lambda: d.stddev,
        }[name]()
    return f


def kl(kind):
    def f(p, x):
        if kind == "Normal":
            a, b = D.Normal(p["loc"], p["scale"]), D.Normal(p["loc2"], p["scale2"])
            return D.kl_divergence(a, b)
        if kind == "Categorical":
            a, b = D.Categorical(logits=p["logits"]), D.Categorical(logits=p["logits2"])
            return D.kl_divergence(a, b).unsqueeze(-1)
        if kind == "Laplace":
            a, b = D.Laplace(p["loc"], p["scale"]), D.Laplace(p["loc2"], p["scale2"])
            return D.kl_divergence(a, b)
        a, b = D.Bernoulli(logits=p["logits"]), D.Bernoulli(logits=p["logits2"])
        return D.kl_divergence(a, b)
    return f


cases = []


def add(dist, member, params, arg, fn):
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    x = arg.clone().requires_grad_(True) if arg is not None else None
    out = fn(params, x)
    w = rnd(*out.shape)
    leaves = list(params.values()) + ([x] if x is not None else [])
    grads = torch.autograd.grad((out * w).sum(), leaves, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(v) for g, v in zip(grads, leaves)]
    cases.append((dist, member, params, x, out.detach(), w, grads))


def loc_scale_cases(dist, fn):
    loc = rnd(2, 3, lo=-2, hi=2)
    scale = rnd(1, 3, lo=0.5, hi=2.0)
    x = rnd(2, 3, lo=-3, hi=3)
    u = rnd(2, 3, lo=0.02, hi=0.98)
    eps = torch.randn(2, 3, generator=gen)
    p = {"loc": loc, "scale": scale}
    add(dist, "log_prob", p, x, fn("log_prob"))
    add(dist, "cdf", p, x, fn("cdf"))
    add(dist, "icdf", p, u, fn("icdf"))
    add(dist, "entropy", p, None, fn("entropy"))
    add(dist, "mean", p, None, fn("mean"))
    add(dist, "stddev", p, None, fn("stddev"))
    add(dist, "reparameterize", p, eps if dist == "Normal" else u, fn("reparameterize"))
    # a column scale broadcasting against a row loc
    p2 = {"loc": rnd(1, 3, lo=-1, hi=1), "scale": rnd(2, 1, lo=0.5, hi=2.0)}
    add(dist, "log_prob", p2, x, fn("log_prob"))
    add(dist, "entropy", p2, None, fn("entropy"))


def main():
    loc_scale_cases("Normal", normal)
    loc_scale_cases("Gumbel", gumbel)
    loc_scale_cases("Logistic", logistic)
    loc_scale_cases("Laplace", laplace)

    logits = rnd(3, 4, lo=-2, hi=2)
    tau = torch.tensor([[0.7]])
    p = {"logits": logits, "temperature": tau}
    add("Concrete", "log_prob", p, simplex(3, 4), concrete("log_prob"))
    add("Concrete", "reparameterize", p, rnd(3, 4, lo=0.02, hi=0.98), concrete("reparameterize"))
    add("ExpConcrete", "log_prob", p, torch.log(simplex(3, 4, spread=3.0)), exp_concrete("log_prob"))
    p_low = {"logits": rnd(2, 6, lo=-3, hi=3), "temperature": torch.tensor([[0.05]])}
    add("ExpConcrete", "log_prob", p_low, torch.log_softmax(rnd(2, 6, lo=-40, hi=40), dim=-1), exp_concrete("log_prob"))

    lb = rnd(2, 3, lo=-3, hi=3)
    p = {"logits": lb, "temperature": torch.tensor([[0.6]])}
    xb = rnd(2, 3, lo=0.05, hi=0.95)
    add("RelaxedBernoulli", "log_prob", p, xb, relaxed_bernoulli("log_prob"))
    add("RelaxedBernoulli", "reparameterize", p, rnd(2, 3, lo=0.02, hi=0.98), relaxed_bernoulli("reparameterize"))
    add("RelaxedBernoulli", "cdf", p, xb, relaxed_bernoulli("cdf"))
    add("RelaxedBernoulli", "icdf", p, rnd(2, 3, lo=0.02, hi=0.98), relaxed_bernoulli("icdf"))

    p = {"logits": lb, "temperature": torch.tensor([[0.6]])}
    add("LogitRelaxedBernoulli", "log_prob", p, rnd(2, 3, lo=-8, hi=8), logit_relaxed_bernoulli("log_prob"))
    add("LogitRelaxedBernoulli", "reparameterize", p, rnd(2, 3, lo=0.02, hi=0.98),
        logit_relaxed_bernoulli("reparameterize"))

    lc = rnd(3, 4, lo=-2, hi=2)
    p = {"logits": lc}
    add("Categorical", "log_prob", p, one_hot(3, 4), categorical("log_prob"))
    add("Categorical", "entropy", p, None, categorical("entropy"))
    add("Categorical", "mean", p, None, categorical("mean"))
    add("Categorical", "stddev", p, None, categorical("stddev"))
    add("Categorical", "variance", p, None, categorical("variance"))

    p = {"logits": rnd(2, 3, lo=-3, hi=3)}
    add("Bernoulli", "log_prob", p, torch.bernoulli(torch.full((2, 3), 0.5), generator=gen), bernoulli("log_prob"))
    add("Bernoulli", "entropy", p, None, bernoulli("entropy"))
    add("Bernoulli", "mean", p, None, bernoulli("mean"))
    add("Bernoulli", "stddev", p, None, bernoulli("stddev"))

    add("KL", "Normal", {"loc": rnd(2, 3), "scale": rnd(1, 3, lo=0.5, hi=2), "loc2": rnd(1, 3),
                         "scale2": rnd(2, 3, lo=0.5, hi=2)}, None, kl("Normal"))
    add("KL", "Categorical", {"logits": rnd(3, 4, lo=-2, hi=2), "logits2": rnd(3, 4, lo=-2, hi=2)}, None,
        kl("Categorical"))
    add("KL", "Laplace", {"loc": rnd(2, 3), "scale": rnd(1, 3, lo=0.5, hi=2), "loc2": rnd(1, 3),
                          "scale2": rnd(2, 3, lo=0.5, hi=2)}, None, kl("Laplace"))
    add("KL", "Bernoulli", {"logits": rnd(2, 3, lo=-3, hi=3), "logits2": rnd(2, 3, lo=-3, hi=3)}, None,
        kl("Bernoulli"))

    def mat(t):
        t = t.detach()
        if t.dim() == 0:
            t = t.reshape(1, 1)
        if t.dim() == 1:
            t = t.reshape(1, -1)
        vals = ", ".join(repr(float(v)) for v in t.reshape(-1))
        return f"{{{t.shape[0]}, {t.shape[1]}, {{{vals}}}}}"

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distribution_reference.inc")
    with open(out, "w") as fh:
        fh.write("// Generated by tests/reference/make_distribution_reference.py with PyTorch "
                 f"{torch.__version__} in float64. Do not edit.\n")
        fh.write("// {distribution, member, {{param name, value}...}, has_arg, arg, value, weight, "
                 "{grad per param..., grad of arg}}\n")
        for dist, member, params, x, value, w, grads in cases:
            ps = ", ".join(f'{{"{k}", {mat(v)}}}' for k, v in params.items())
            gs = ", ".join(mat(g) for g in grads)
            arg = mat(x) if x is not None else "{0, 0, {}}"
            fh.write(f'{{"{dist}", "{member}", {{{ps}}}, {"true" if x is not None else "false"}, {arg}, '
                     f"{mat(value)}, {mat(w)}, {{{gs}}}}},\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
