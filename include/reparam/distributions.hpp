#pragma once
/// \file distributions.hpp  All distributions: Normal, Gumbel, Logistic (continuous.hpp);
/// Concrete / RelaxedOneHotCategorical, ExpConcrete, RelaxedBernoulli, gumbel_softmax,
/// soft_argmax (relaxed.hpp); Categorical, Bernoulli (discrete.hpp); kl_divergence (kl.hpp).

#include <reparam/distributions/common.hpp>
#include <reparam/distributions/continuous.hpp>
#include <reparam/distributions/discrete.hpp>
#include <reparam/distributions/kl.hpp>
#include <reparam/distributions/relaxed.hpp>
