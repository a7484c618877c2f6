#pragma once
/// \file temperature.hpp  Temperature annealing for the relaxations, as Jang et al. (2017) use it.

#include <cmath>

#include <reparam/errors.hpp>

namespace reparam {

/// tau = max(tau_min, tau0 * exp(-rate * step)), optionally updated only every `every` steps
/// (Jang et al. update every 1000 steps). Negative steps count as step 0.
///     reparam::TemperatureSchedule sched{1.0, 3e-5, 0.5};   double tau = sched(step);
template <class T = double>
struct TemperatureSchedule {
  T tau0 = T(1);
  T rate = T(3e-5);
  T tau_min = T(0.5);
  long long every = 1;

  T operator()(long long step) const {
    using std::exp;
    if (step < 0) step = 0;
    const long long s = every > 1 ? (step / every) * every : step;
    const T tau = tau0 * exp(-rate * T(s));
    return tau < tau_min ? tau_min : tau;
  }
};
template <class T>
TemperatureSchedule(T, T, T) -> TemperatureSchedule<T>;
template <class T>
TemperatureSchedule(T, T, T, long long) -> TemperatureSchedule<T>;

/// The same schedule as a function: max(tau_min, tau0 * exp(-rate * step)).
template <class T>
T anneal_temperature(T tau0, T rate, long long step, T tau_min) {
  return TemperatureSchedule<T>{tau0, rate, tau_min, 1}(step);
}

}  // namespace reparam
