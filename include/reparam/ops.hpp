#pragma once
/// \file ops.hpp  Every differentiable operation on Vars; `Operation` (operation.hpp) defines more.

#include <reparam/ops/arithmetic.hpp>
#include <reparam/ops/linalg.hpp>
#include <reparam/ops/loss.hpp>
#include <reparam/ops/reduce.hpp>
#include <reparam/ops/shape.hpp>
#include <reparam/ops/unary.hpp>
