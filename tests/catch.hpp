#pragma once
// Catch2 shim: Debian 12 ships v2.13 (single header); v3 splits it. Tests include only this.
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
