// "Did you mean" for unknown names in configs and profiles: the closest valid word by edit
// distance, when it is close enough to be a typo.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cpb {

size_t edit_distance(std::string_view a, std::string_view b);
// " (did you mean 'heads'?)" when a valid word is within 2 edits of the typo, else "".
std::string suggest(std::string_view typo, const std::vector<std::string>& valid);

}  // namespace cpb
