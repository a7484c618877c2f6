#pragma once
/// \file nn.hpp  Layers and training helpers: `nn::Linear`, `nn::Mlp`, `nn::ParameterList`,
/// `nn::DataParallel` (a step on every core) and checkpoints.

#include <reparam/nn/checkpoint.hpp>
#include <reparam/nn/data_parallel.hpp>
#include <reparam/nn/linear.hpp>
#include <reparam/nn/parameters.hpp>
