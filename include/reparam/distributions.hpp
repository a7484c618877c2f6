#pragma once
/// \file distributions.hpp  All distributions, one header each under distributions/: Normal,
/// Gumbel, Logistic, Laplace (location-scale families), Concrete / RelaxedOneHotCategorical and
/// ExpConcrete, RelaxedBernoulli and LogitRelaxedBernoulli, Categorical, Bernoulli; kl_divergence
/// (kl.hpp) and the temperature schedule (temperature.hpp).

#include <reparam/distributions/bernoulli.hpp>
#include <reparam/distributions/categorical.hpp>
#include <reparam/distributions/concrete.hpp>
#include <reparam/distributions/exp_concrete.hpp>
#include <reparam/distributions/gumbel.hpp>
#include <reparam/distributions/kl.hpp>
#include <reparam/distributions/laplace.hpp>
#include <reparam/distributions/logistic.hpp>
#include <reparam/distributions/logit_relaxed_bernoulli.hpp>
#include <reparam/distributions/normal.hpp>
#include <reparam/distributions/relaxed_bernoulli.hpp>
#include <reparam/distributions/temperature.hpp>
