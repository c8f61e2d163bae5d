// Levenshtein distance with one row, and the closest-word hint built on it.
#include "harness/core/suggest.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace cpb {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string suggest(std::string_view typo, const std::vector<std::string>& valid) {
  if (typo.size() > 64) return "";  // a pasted blob is not a typo, and would cost time
  size_t best = 3;
  std::string pick;
  for (const auto& v : valid) {
    size_t d = edit_distance(typo, v);
    if (d < best && d < v.size()) {
      best = d;
      pick = v;
    }
  }
  return pick.empty() ? "" : fmt::format(" (did you mean '{}'?)", pick);
}

}  // namespace cpb
