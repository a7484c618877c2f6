#pragma once
/// \file version.hpp  The library version; CMake reads it from here.

#define REPARAM_VERSION_MAJOR 0
#define REPARAM_VERSION_MINOR 1
#define REPARAM_VERSION_PATCH 0

namespace reparam {
/// The version as a single number: major * 10000 + minor * 100 + patch.
inline constexpr int version = REPARAM_VERSION_MAJOR * 10000 + REPARAM_VERSION_MINOR * 100 + REPARAM_VERSION_PATCH;
}  // namespace reparam
