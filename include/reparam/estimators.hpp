#pragma once
/// \file estimators.hpp  Gradient estimators: score-function surrogates and baselines,
/// conditional Gumbel noise with Gumbel-Rao and REBAR, and the whole zoo behind one interface.

#include <reparam/estimators/conditional_gumbel.hpp>
#include <reparam/estimators/discrete.hpp>
#include <reparam/estimators/score_function.hpp>
