#pragma once
/// \file reparam.hpp  Everything: the tape, its operations, optimizers, layers, random numbers,
/// distributions and estimators (not the data readers, which need zlib: <reparam/data/idx.hpp>).
///
///     #include <reparam/reparam.hpp>
///     reparam::Tape tape;  reparam::Var x = tape.variable(m);  tape.backward(reparam::sum(x * x));

#include <reparam/distributions.hpp>
#include <reparam/dual.hpp>
#include <reparam/errors.hpp>
#include <reparam/estimators.hpp>
#include <reparam/matrix.hpp>
#include <reparam/nn.hpp>
#include <reparam/operation.hpp>
#include <reparam/ops.hpp>
#include <reparam/optim.hpp>
#include <reparam/parallel.hpp>
#include <reparam/random.hpp>
#include <reparam/second_order.hpp>
#include <reparam/tape.hpp>
#include <reparam/version.hpp>
