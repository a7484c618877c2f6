// Integer command-line flags for the example programs and tools: decimal digits only.
//
// CLI11 (Debian's 2.3) reads integers with strtoll(text, &end, 0), so "010" would be 8 and "0x10"
// 16, a negative value given to an unsigned flag would wrap around (--seed -5 became 2^64 - 5)
// and a value past the type's range would be clamped to it. `decimal` is a CLI11 transform
// that runs before that conversion: it drops leading zeros, refuses anything but digits (and a
// leading '-' where negative values get their own message, such as `--steps must be > 0 (got
// -5)`) and values out of range, with one line naming the flag and the text.
//
//     app.add_option("--seed", seed, "...")->transform(flags::decimal(false));   // 0 .. 2^64 - 1
//     app.add_option("--steps", steps, "...")->transform(flags::decimal(true));  // signed
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

namespace flags {

/// A transform for an integer flag: `negative_allowed` for signed flags, false for unsigned ones
/// (their message names the range 0 .. 2^64 - 1); `largest` is the flag's type's largest value
/// for signed flags narrower than 64 bits (an `int`: INT_MAX).
inline CLI::Validator decimal(bool negative_allowed, long long largest = std::numeric_limits<long long>::max()) {
  return CLI::Validator(
      [negative_allowed, largest](std::string& text) -> std::string {
        const std::string what = negative_allowed ? "must be a decimal integer" : "must be a decimal integer from 0 to 18446744073709551615";
        const std::size_t sign = negative_allowed && !text.empty() && text[0] == '-' ? 1 : 0;
        if (text.size() == sign || text.find_first_not_of("0123456789", sign) != std::string::npos)
          return what + " (got " + text + ")";
        const std::size_t digits = std::min(text.find_first_not_of('0', sign), text.size() - 1);
        const std::string got = text;
        text = text.substr(0, sign) + text.substr(digits);
        errno = 0;
        char* end = nullptr;
        bool out = false;
        if (negative_allowed) {
          const long long v = std::strtoll(text.c_str(), &end, 10);
          out = v > largest || v < -largest - 1;
        } else {
          static_cast<void>(std::strtoull(text.c_str(), &end, 10));
        }
        if (errno == ERANGE || out) return what + " (got " + got + ": out of range)";
        return {};
      },
      "");
}

}  // namespace flags
